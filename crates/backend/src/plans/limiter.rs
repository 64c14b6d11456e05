//! The admission of one message against the user's plan, in one Lua script
//! so that every backend instance shares one count and no two can both take
//! the last unit:
//! - **rate**: GCRA over `limit:{user}:rate` ([`confab_core::ratelimit`]);
//! - **quota**: a sliding-window log, `limit:{user}:quota`, a sorted set of
//!   the admitted messages scored by time; entries older than the window are
//!   dropped first, so "N in the last 24 hours" is exact (the set never holds
//!   more than the quota);
//! - **concurrency**: `limit:{user}:running`, a sorted set of the replies
//!   being written scored by when their slot lapses (a slot whose instance
//!   died frees itself); released when the reply ends.
//!
//! All three are checked first and written only if all admit, each with an
//! expiry set in the same script, so a refused message counts nowhere.

use super::{Plan, Plans};
use confab_core::{error::InfraError, ids::UserId, keys::Keys, ratelimit::GCRA_LUA};
use redis::aio::ConnectionManager;
use serde::Serialize;
use std::{sync::Arc, time::Duration};

const ADMIT_LUA: &str = r#"
local now = tonumber(ARGV[1])
local interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local quota, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local conc, slot_ttl, member = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local used = 0
if quota > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  used = redis.call('ZCARD', KEYS[2])
  if used >= quota then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local retry = window
    if oldest[2] then retry = tonumber(oldest[2]) + window - now end
    return {0, 1, retry, used, -1}
  end
end
local tat, rate_left = nil, -1
if interval > 0 then
  local ok, t, retry, left = gcra_check(KEYS[1], interval, burst, now)
  if not ok then return {0, 2, retry, used, 0} end
  tat, rate_left = t, left
end
local running = 0
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  running = redis.call('ZCARD', KEYS[3])
  if running >= conc then
    return {0, 3, 1000, used, rate_left}
  end
end
if tat then gcra_commit(KEYS[1], tat, now) end
if quota > 0 then
  redis.call('ZADD', KEYS[2], now, member)
  redis.call('PEXPIRE', KEYS[2], window)
  used = used + 1
end
if conc > 0 then
  redis.call('ZADD', KEYS[3], now + slot_ttl, member)
  redis.call('PEXPIRE', KEYS[3], slot_ttl)
end
return {1, 0, 0, used, rate_left}
"#;

/// Gives one admission back whole: its quota entry, its rate interval, its
/// slot. The quota entry and the slot are removed by their member; the
/// rate's TAT moves back by the interval the admission added (deleted when
/// that leaves it in the past, which the GCRA reads the same as now).
const REFUND_LUA: &str = r#"
local now, interval, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]))
  if tat then
    local back = tat - interval
    if back <= now then
      redis.call('DEL', KEYS[1])
    else
      redis.call('SET', KEYS[1], back, 'PX', back - now)
    end
  end
end
redis.call('ZREM', KEYS[2], member)
redis.call('ZREM', KEYS[3], member)
return 1
"#;

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// The messages of the quota window (a day) are used up.
    Quota,
    /// Too many messages this minute.
    Rate,
    /// Too many replies being written at once.
    Concurrency,
}

/// Where the user stands after an admission (or now, for settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub plan: String,
    /// Messages in the current window, counting this one.
    pub used: u64,
    /// The plan's quota; `None`: unlimited.
    pub quota: Option<u32>,
    /// Seconds of the sliding window.
    pub window_secs: u64,
    /// Messages left this minute (`None`: no rate limit).
    pub rate_remaining: Option<u64>,
    /// At or past the warning share of the quota.
    pub warning: bool,
}

impl Usage {
    pub fn remaining(&self) -> Option<u64> {
        self.quota.map(|q| u64::from(q).saturating_sub(self.used))
    }
}

/// A refusal: which limit, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: LimitKind,
    pub retry_after: Duration,
    pub usage: Usage,
}

/// A generation slot: released when the reply ends.
#[derive(Debug)]
pub struct Slot {
    key: String,
    member: String,
}

/// What one admission counted, so that it can be given back whole
/// ([`Limiter::refund`]): for a message found afterwards to be a resend, or
/// admitted on a plan that turned out not to be the user's.
#[derive(Debug)]
pub struct Taken {
    user: UserId,
    member: String,
    /// The rate interval it added to the TAT (0: no rate limit).
    interval_ms: u64,
}

pub enum Decision {
    Admitted {
        usage: Usage,
        slot: Option<Slot>,
        taken: Taken,
    },
    Refused(Refusal),
}

/// The admission of messages, cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    redis: ConnectionManager,
    keys: Keys,
    plans: Arc<Plans>,
    script: Arc<redis::Script>,
    refund: Arc<redis::Script>,
}

impl Limiter {
    pub fn new(redis: ConnectionManager, keys: Keys, plans: Arc<Plans>) -> Self {
        Self {
            redis,
            keys,
            plans,
            script: Arc::new(redis::Script::new(&format!("{GCRA_LUA}{ADMIT_LUA}"))),
            refund: Arc::new(redis::Script::new(REFUND_LUA)),
        }
    }

    pub fn plans(&self) -> &Plans {
        &self.plans
    }

    fn warning(&self, used: u64, quota: Option<u32>) -> bool {
        quota.is_some_and(|q| used * 100 >= u64::from(q) * u64::from(self.plans.warn_percent))
    }

    /// Admit one message of `user` on `plan` at `now_ms` (ms since the
    /// epoch), or say which limit refuses it.
    pub async fn admit(
        &self,
        user: UserId,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<Decision, InfraError> {
        let member = uuid::Uuid::now_v7().to_string();
        let (interval, burst) = match plan.rate {
            Some(r) => (r.interval_ms(), r.burst.max(1)),
            None => (0, 0),
        };
        let window_ms = self.plans.quota_window.as_millis() as u64;
        let running_key = self.keys.plan_limit(user, "running");
        let mut conn = self.redis.clone();
        let (ok, kind, retry_ms, used, rate_left): (i64, i64, i64, i64, i64) = self
            .script
            .key(self.keys.plan_limit(user, "rate"))
            .key(self.keys.plan_limit(user, "quota"))
            .key(&running_key)
            .arg(now_ms)
            .arg(interval)
            .arg(burst)
            .arg(plan.daily_messages.unwrap_or(0))
            .arg(window_ms)
            .arg(plan.concurrent_generations.unwrap_or(0))
            .arg(self.plans.slot_ttl.as_millis() as u64)
            .arg(&member)
            .invoke_async(&mut conn)
            .await?;
        let used = used.max(0) as u64;
        let usage = Usage {
            plan: plan.id.clone(),
            used,
            quota: plan.daily_messages,
            window_secs: self.plans.quota_window.as_secs(),
            rate_remaining: plan.rate.map(|_| rate_left.max(0) as u64),
            warning: self.warning(used, plan.daily_messages),
        };
        if ok == 1 {
            metrics::counter!("plan_admissions_total", "outcome" => "admitted").increment(1);
            let taken = Taken {
                user,
                member: member.clone(),
                interval_ms: interval,
            };
            let slot = plan.concurrent_generations.map(|_| Slot {
                key: running_key,
                member,
            });
            return Ok(Decision::Admitted { usage, slot, taken });
        }
        let kind = match kind {
            1 => LimitKind::Quota,
            2 => LimitKind::Rate,
            _ => LimitKind::Concurrency,
        };
        let outcome = match kind {
            LimitKind::Quota => "quota",
            LimitKind::Rate => "rate",
            LimitKind::Concurrency => "concurrency",
        };
        metrics::counter!("plan_admissions_total", "outcome" => outcome).increment(1);
        Ok(Decision::Refused(Refusal {
            kind,
            retry_after: Duration::from_millis(retry_ms.max(1) as u64),
            usage,
        }))
    }

    /// Give a generation slot back (best effort: a lost release lapses on
    /// its own after `CONFAB_GENERATION_SLOT_SECS`).
    pub async fn release(&self, slot: Slot) {
        let mut conn = self.redis.clone();
        let r: Result<i64, _> = redis::cmd("ZREM")
            .arg(&slot.key)
            .arg(&slot.member)
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not release a generation slot; it lapses on its own");
        }
    }

    /// Give an admission back whole, as if it had not been made (its slot
    /// too, if it holds one). Best effort: a lost refund leaves the message
    /// counted, and its slot lapses on its own.
    pub async fn refund(&self, taken: Taken, now_ms: i64) {
        let mut conn = self.redis.clone();
        let r: Result<i64, _> = self
            .refund
            .key(self.keys.plan_limit(taken.user, "rate"))
            .key(self.keys.plan_limit(taken.user, "quota"))
            .key(self.keys.plan_limit(taken.user, "running"))
            .arg(now_ms)
            .arg(taken.interval_ms)
            .arg(&taken.member)
            .invoke_async(&mut conn)
            .await;
        match r {
            Ok(_) => metrics::counter!("plan_refunds_total").increment(1),
            Err(e) => {
                tracing::warn!(error = %e, "could not give an admission back; it stays counted")
            }
        }
    }

    /// Where `user` on `plan` stands at `now_ms`, changing nothing.
    pub async fn usage(
        &self,
        user: UserId,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<(Usage, u64), InfraError> {
        let window_ms = self.plans.quota_window.as_millis() as i64;
        let mut conn = self.redis.clone();
        let (used, running, tat): (u64, u64, Option<i64>) = redis::pipe()
            .cmd("ZCOUNT")
            .arg(self.keys.plan_limit(user, "quota"))
            .arg(format!("({}", now_ms - window_ms))
            .arg("+inf")
            .cmd("ZCOUNT")
            .arg(self.keys.plan_limit(user, "running"))
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .cmd("GET")
            .arg(self.keys.plan_limit(user, "rate"))
            .query_async(&mut conn)
            .await?;
        let rate_remaining = plan.rate.map(|r| {
            let interval = r.interval_ms() as i64;
            let tat = tat.unwrap_or(now_ms).max(now_ms);
            let allowed_until = now_ms + interval * i64::from(r.burst.max(1));
            ((allowed_until - tat) / interval).max(0) as u64
        });
        let used = if plan.daily_messages.is_some() {
            used
        } else {
            0
        };
        Ok((
            Usage {
                plan: plan.id.clone(),
                used,
                quota: plan.daily_messages,
                window_secs: self.plans.quota_window.as_secs(),
                rate_remaining,
                warning: self.warning(used, plan.daily_messages),
            },
            running,
        ))
    }
}
