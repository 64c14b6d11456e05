//! Rate limits decided atomically in Redis, right across instances: the
//! Generic Cell Rate Algorithm (GCRA, the leaky bucket as a meter) in a Lua
//! script, so the read, the decision and the write are one step that no
//! other instance can interleave with. Each limited thing keeps one key, its
//! *theoretical arrival time* (TAT), written with `SET … PX` in the same
//! script (never `INCR` then `EXPIRE` as two calls: a crash between them
//! leaves a counter that never expires).
//!
//! A limit of `rate` per `period` with `burst` lets `burst` requests through
//! at once, then one every `period / rate`. Time comes from the caller's
//! [`crate::clock::Clock`] (milliseconds since the epoch), so tests move it
//! instead of waiting; instances' clocks must agree (NTP), as they must for
//! tokens.
//!
//! [`GCRA_LUA`] is the algorithm as a Lua function, shared with scripts that
//! combine it with other checks (the backend's admission of a message);
//! [`Throttle`] is the plain use: several keys (say, per IP and per account)
//! checked together, all admitted or none counted.

use crate::error::InfraError;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// The GCRA as Lua functions over a TAT key:
/// `gcra_check(key, interval_ms, burst, now)` → `ok, new_tat, retry_ms,
/// remaining` changes nothing; `gcra_commit(key, new_tat, now)` stores the
/// new TAT with an expiry at it (`SET … PX`). Callers check every limit
/// first and commit only when all allow, so a refused request costs nothing.
pub const GCRA_LUA: &str = r#"
local function gcra_check(key, interval, burst, now)
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + interval
  local allowed_until = now + interval * burst
  if new_tat > allowed_until then
    return false, tat, new_tat - allowed_until, 0
  end
  return true, new_tat, 0, math.floor((allowed_until - new_tat) / interval)
end
local function gcra_commit(key, new_tat, now)
  local ttl = new_tat - now
  if ttl < 1 then ttl = 1 end
  redis.call('SET', key, new_tat, 'PX', ttl)
end
"#;

/// One limit: `burst` at once, refilled at `per_minute` a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    /// `per_minute` a minute, all of them allowed at once.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute,
            burst: per_minute,
        }
    }

    /// Milliseconds between two requests at the steady rate (at least 1).
    pub fn interval_ms(&self) -> u64 {
        (60_000 / u64::from(self.per_minute.max(1))).max(1)
    }
}

/// What a throttle decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        /// Requests left before the tightest limit refuses.
        remaining: u64,
    },
    Refused {
        /// Which of the checked keys refused (index into the call's list).
        which: usize,
        /// When to try again.
        retry_after: Duration,
    },
}

const THROTTLE_LUA: &str = r#"
local now = tonumber(ARGV[1])
local n = #KEYS
local tats = {}
local remaining = nil
for i = 1, n do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local ok, tat, retry, left = gcra_check(KEYS[i], interval, burst, now)
  if not ok then return {0, i - 1, retry} end
  tats[i] = tat
  if remaining == nil or left < remaining then remaining = left end
end
for i = 1, n do gcra_commit(KEYS[i], tats[i], now) end
return {1, remaining or 0, 0}
"#;

/// GCRA over several keys at once (all allowed and counted, or none).
#[derive(Clone)]
pub struct Throttle {
    redis: ConnectionManager,
    script: std::sync::Arc<redis::Script>,
}

impl Throttle {
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            script: std::sync::Arc::new(redis::Script::new(&format!("{GCRA_LUA}{THROTTLE_LUA}"))),
        }
    }

    /// Check and count one request against every `(key, rate)`, at `now_ms`.
    pub async fn check(
        &self,
        limits: &[(String, Rate)],
        now_ms: i64,
    ) -> Result<Verdict, InfraError> {
        if limits.is_empty() {
            return Ok(Verdict::Allowed {
                remaining: u64::MAX,
            });
        }
        let mut inv = self.script.prepare_invoke();
        inv.arg(now_ms);
        for (key, rate) in limits {
            inv.key(key).arg(rate.interval_ms()).arg(rate.burst.max(1));
        }
        let mut conn = self.redis.clone();
        let (ok, a, b): (i64, i64, i64) = inv.invoke_async(&mut conn).await?;
        Ok(if ok == 1 {
            Verdict::Allowed {
                remaining: a.max(0) as u64,
            }
        } else {
            Verdict::Refused {
                which: a.max(0) as usize,
                retry_after: Duration::from_millis(b.max(1) as u64),
            }
        })
    }
}
