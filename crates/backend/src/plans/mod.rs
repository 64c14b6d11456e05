//! Plans: what each one allows (from configuration, not code), which one a
//! user is on (the `profiles.plan` column), the admission of each message
//! against the user's plan ([`limiter`], atomic in Redis across instances),
//! and the one way a plan changes ([`change_plan`], used by the payment
//! provider's webhook and by administrators), which announces
//! `plan.changed` through the outbox in the same transaction.
//!
//! Limits apply at once on every instance: each admission reads the user's
//! plan from the database, and the counters are per user, not per plan, so
//! a switch only changes the limits the next message is measured against.

pub mod limiter;

use crate::{error::Error, store, AppState};
use confab_core::{
    config::{ConfigError, Env},
    events::{Event, EventKind},
    ids::UserId,
    ratelimit::Rate,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One plan's limits; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Stored in `profiles.plan` (`free`, `pro`, …).
    pub id: String,
    /// What pages call it ("Free", "Pro").
    pub label: String,
    /// Messages a minute (GCRA, with a burst of `burst`).
    pub rate: Option<Rate>,
    pub rate_per_minute: Option<u32>,
    /// Messages per quota window (a day by default; sliding).
    pub daily_messages: Option<u32>,
    /// Replies being written at once.
    pub concurrent_generations: Option<u32>,
    /// The payment provider's price (or plan) id that buys it; a plan
    /// without one cannot be bought (the default plan).
    pub price: Option<String>,
}

/// A plan as clients see it (`GET /v1/usage`, the `plan.changed` frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    pub id: String,
    pub label: String,
    pub rate_per_minute: Option<u32>,
    pub daily_messages: Option<u32>,
    pub concurrent_generations: Option<u32>,
    /// Seconds of the quota's sliding window.
    pub window_secs: u64,
    /// The plan "Upgrade" buys from this one, if any.
    pub upgrade_to: Option<String>,
}

/// Where a page starts an upgrade to `plan`.
pub fn upgrade_url(plan: &Plan) -> String {
    format!("/settings?upgrade={}#plan", plan.id)
}

/// Every plan, in ascending order (the first is the default for new users).
#[derive(Debug, Clone)]
pub struct Plans {
    plans: Vec<Plan>,
    /// The sliding window of the message quota (`CONFAB_QUOTA_WINDOW_SECS`,
    /// a day).
    pub quota_window: Duration,
    /// At this share of the quota the user is warned (`CONFAB_QUOTA_WARN_PERCENT`, 80).
    pub warn_percent: u32,
    /// How long a generation slot is held at most if its instance dies
    /// before releasing it (`CONFAB_GENERATION_SLOT_SECS`).
    pub slot_ttl: Duration,
}

/// A limit value: a number, or `unlimited` (also `0`).
fn limit(
    env: &Env,
    var: &str,
    default: Option<u32>,
    known: bool,
) -> Result<Option<u32>, ConfigError> {
    match env.raw(var) {
        None if known => Ok(default),
        None => Err(env.invalid(var, "must be set for a plan that is not free or pro")),
        Some(v) if v.trim().eq_ignore_ascii_case("unlimited") => Ok(None),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(env.invalid(var, "expected a number or \"unlimited\"")),
        },
    }
}

impl Plans {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ids: Vec<String> = env
            .string("CONFAB_PLANS", "free,pro")
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if ids.is_empty() {
            return Err(env.invalid("CONFAB_PLANS", "name at least one plan"));
        }
        let mut plans = Vec::new();
        for id in &ids {
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || id.len() > 32 {
                return Err(env.invalid("CONFAB_PLANS", "plan ids are letters, digits and _"));
            }
            let var = |what: &str| format!("CONFAB_PLAN_{}_{what}", id.to_ascii_uppercase());
            let (rate, daily, concurrent) = match id.as_str() {
                "free" => (Some(20), Some(200), Some(2)),
                "pro" => (None, None, Some(8)),
                _ => (None, None, None),
            };
            let known = matches!(id.as_str(), "free" | "pro");
            let rate_per_minute = limit(env, &var("RATE_PER_MINUTE"), rate, known)?;
            let burst: Option<u32> = match env.raw(&var("BURST")) {
                None => None,
                Some(_) => Some(env.parse(&var("BURST"), 1u32)?.max(1)),
            };
            let mut label: String = id.clone();
            if let Some(first) = label.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            plans.push(Plan {
                id: id.clone(),
                label: env.string(&var("LABEL"), &label),
                rate: rate_per_minute.map(|n| Rate {
                    per_minute: n,
                    burst: burst.unwrap_or(n),
                }),
                rate_per_minute,
                daily_messages: limit(env, &var("DAILY_MESSAGES"), daily, known)?,
                concurrent_generations: limit(env, &var("CONCURRENT"), concurrent, known)?,
                price: env.opt_string(&var("PRICE")),
            });
        }
        let window: u64 = env.parse("CONFAB_QUOTA_WINDOW_SECS", 86_400)?;
        if window == 0 {
            return Err(env.invalid("CONFAB_QUOTA_WINDOW_SECS", "must be at least 1"));
        }
        let warn_percent: u32 = env.parse("CONFAB_QUOTA_WARN_PERCENT", 80)?;
        if !(1..=100).contains(&warn_percent) {
            return Err(env.invalid("CONFAB_QUOTA_WARN_PERCENT", "must be 1 to 100"));
        }
        let slot: u64 = env.parse("CONFAB_GENERATION_SLOT_SECS", 900)?;
        Ok(Self {
            plans,
            quota_window: Duration::from_secs(window),
            warn_percent,
            slot_ttl: Duration::from_secs(slot.max(1)),
        })
    }

    /// The plan new users get.
    pub fn default_plan(&self) -> &Plan {
        &self.plans[0]
    }

    pub fn all(&self) -> &[Plan] {
        &self.plans
    }

    /// The plan with this id; a stored id no longer configured falls back
    /// to the default plan (logged), never to unlimited.
    pub fn get(&self, id: &str) -> &Plan {
        match self.find(id) {
            Some(p) => p,
            None => {
                tracing::warn!(
                    plan = id,
                    "a stored plan is not configured; using the default plan"
                );
                self.default_plan()
            }
        }
    }

    pub fn find(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The plan a price buys.
    pub fn by_price(&self, price: &str) -> Option<&Plan> {
        self.plans
            .iter()
            .find(|p| p.price.as_deref() == Some(price))
    }

    pub fn view(&self, plan: &Plan) -> PlanView {
        PlanView {
            id: plan.id.clone(),
            label: plan.label.clone(),
            rate_per_minute: plan.rate_per_minute,
            daily_messages: plan.daily_messages,
            concurrent_generations: plan.concurrent_generations,
            window_secs: self.quota_window.as_secs(),
            upgrade_to: self.upgrade_from(&plan.id).map(|p| p.id.clone()),
        }
    }

    /// What "Upgrade" offers from `current`: the next plan up that can be
    /// bought, if any.
    pub fn upgrade_from(&self, current: &str) -> Option<&Plan> {
        let at = self.plans.iter().position(|p| p.id == current).unwrap_or(0);
        self.plans[at + 1..].iter().find(|p| p.price.is_some())
    }
}

/// A plan change that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChange {
    pub previous: String,
    pub plan: String,
}

/// Put `user` on `plan` for `reason` (`checkout`, `subscription_updated`,
/// `subscription_canceled`, `admin`, …): the row and the `plan.changed`
/// event in one transaction, then the relay is woken. `None` when the user
/// was already on it (nothing written, no event) or has no profile.
/// Every instance sees the new plan on the user's next message; open pages
/// hear it when the backend's consumer applies the event.
pub async fn change_plan(
    state: &AppState,
    user: UserId,
    plan: &str,
    reason: &str,
) -> Result<Option<PlanChange>, Error> {
    let mut tx = state.db.begin().await?;
    let change = change_plan_in(state, &mut tx, user, plan, reason).await?;
    tx.commit().await?;
    if change.is_some() {
        state.outbox.notify();
    }
    Ok(change)
}

/// [`change_plan`] inside the caller's transaction (the webhook records the
/// provider's event id in the same one); the caller notifies the outbox.
pub async fn change_plan_in(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    user: UserId,
    plan: &str,
    reason: &str,
) -> Result<Option<PlanChange>, Error> {
    if state.plans.find(plan).is_none() {
        return Err(Error::invalid(
            "unknown_plan",
            Some("plan"),
            format!("There is no plan {plan:?}."),
        ));
    }
    let Some(previous) = store::profiles::set_plan(&mut *tx, user, plan).await? else {
        return Ok(None);
    };
    if previous == plan {
        return Ok(None);
    }
    let event = Event::new(
        EventKind::PlanChanged {
            user_id: user,
            plan: plan.to_string(),
            previous: previous.clone(),
            reason: reason.to_string(),
        },
        state.config.clock.now(),
    );
    confab_core::outbox::insert(&mut *tx, &event).await?;
    metrics::counter!("plan_changes_total", "plan" => plan.to_string(), "reason" => reason.to_string())
        .increment(1);
    tracing::info!(%user, plan, previous, reason, "plan changed");
    Ok(Some(PlanChange {
        previous,
        plan: plan.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_limited_free_plan_and_an_unlimited_pro() {
        let plans = Plans::from_env(&Env::new()).unwrap();
        let free = plans.get("free");
        assert_eq!(free.daily_messages, Some(200));
        assert_eq!(free.concurrent_generations, Some(2));
        let pro = plans.get("pro");
        assert_eq!((pro.rate, pro.daily_messages), (None, None));
        assert_eq!(plans.get("gold").id, "free");
        assert!(plans.upgrade_from("free").is_none(), "no price configured");
    }

    #[test]
    fn plans_and_limits_come_from_the_environment() {
        let mut env = Env::new();
        env.set("CONFAB_PLANS", "free,pro,team");
        env.set("CONFAB_PLAN_FREE_DAILY_MESSAGES", "5");
        env.set("CONFAB_PLAN_FREE_RATE_PER_MINUTE", "unlimited");
        env.set("CONFAB_PLAN_PRO_PRICE", "price_pro");
        env.set("CONFAB_PLAN_TEAM_RATE_PER_MINUTE", "100");
        env.set("CONFAB_PLAN_TEAM_DAILY_MESSAGES", "0");
        env.set("CONFAB_PLAN_TEAM_CONCURRENT", "20");
        let plans = Plans::from_env(&env).unwrap();
        assert_eq!(plans.get("free").daily_messages, Some(5));
        assert_eq!(plans.get("free").rate, None);
        assert_eq!(plans.upgrade_from("free").unwrap().id, "pro");
        assert_eq!(plans.by_price("price_pro").unwrap().id, "pro");
        assert_eq!(plans.get("team").daily_messages, None);
        assert_eq!(plans.get("team").rate, Some(Rate::per_minute(100)));
        let mut env = Env::new();
        env.set("CONFAB_PLANS", "free,gold");
        assert!(
            Plans::from_env(&env).is_err(),
            "an unknown plan needs its limits"
        );
    }
}
