//! Each message (and each Retry or Regenerate: every reply costs the same)
//! is admitted against the user's plan before anything is stored; see
//! `plans::limiter`. The plan is read from the database every time, so a
//! plan change applies to the next message on every instance.
//!
//! The counts live in Redis, which is not on a message's critical path: when
//! Redis does not answer within [`ADMIT_TIMEOUT`] the message is admitted
//! unchecked (logged, counted as `plan_admissions_total{outcome="unchecked"}`)
//! rather than refused or held — a short outage lets a few messages past the
//! plan, and never stops anyone chatting.

use super::Chat;
use crate::{
    error::{Error, QuotaExceeded},
    plans::{
        self,
        limiter::{Decision, LimitKind, Slot, Usage},
    },
};
use confab_core::ids::UserId;
use std::time::Duration;

/// How long a message waits for the plan's counts before it goes unchecked.
pub const ADMIT_TIMEOUT: Duration = Duration::from_millis(500);

impl Chat {
    /// Admit one generation for `user`, whose stored plan is `stored_plan`
    /// (read by the caller in the query it needs anyway: a send's
    /// `store::messages::first_copy_and_plan`, a retry's
    /// `store::profiles::plan_of`): the slot it holds (when the plan caps concurrent replies)
    /// and the usage after it (`None`: Redis did not answer, admitted
    /// unchecked), or [`Error::QuotaExceeded`].
    pub(super) async fn admit(
        &self,
        user: UserId,
        stored_plan: Option<String>,
    ) -> Result<(Option<Slot>, Option<Usage>), Error> {
        let limiter = &self.inner.limiter;
        let plans = limiter.plans();
        let plan = match stored_plan.as_deref() {
            Some(id) => plans.get(id),
            None => plans.default_plan(),
        };
        let now_ms = self.inner.clock.now().timestamp_millis();
        let decision = match tokio::time::timeout(ADMIT_TIMEOUT, limiter.admit(user, plan, now_ms))
            .await
        {
            Ok(Ok(decision)) => decision,
            Ok(Err(e)) => {
                tracing::warn!(%user, error = %e, "plan counts unavailable; message admitted unchecked");
                metrics::counter!("plan_admissions_total", "outcome" => "unchecked").increment(1);
                return Ok((None, None));
            }
            Err(_) => {
                tracing::warn!(%user, "plan counts did not answer in time; message admitted unchecked");
                metrics::counter!("plan_admissions_total", "outcome" => "unchecked").increment(1);
                return Ok((None, None));
            }
        };
        match decision {
            Decision::Admitted { usage, slot } => Ok((slot, Some(usage))),
            Decision::Refused(refusal) => {
                let limit = match refusal.kind {
                    LimitKind::Quota => plan.daily_messages,
                    LimitKind::Rate => plan.rate_per_minute,
                    LimitKind::Concurrency => plan.concurrent_generations,
                };
                tracing::info!(%user, plan = %plan.id, limit = ?refusal.kind, retry_after_ms = refusal.retry_after.as_millis() as u64, "message refused by the plan");
                Err(Error::QuotaExceeded(Box::new(QuotaExceeded {
                    refusal,
                    plan_label: plan.label.clone(),
                    limit,
                    upgrade_url: plans.upgrade_from(&plan.id).map(plans::upgrade_url),
                })))
            }
        }
    }

    /// Give back a slot taken for a message that was not stored after all.
    pub(super) async fn give_back(&self, slot: Option<Slot>) {
        if let Some(slot) = slot {
            self.inner.limiter.release(slot).await;
        }
    }
}
