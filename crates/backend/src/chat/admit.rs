//! Each message (and each Retry or Regenerate: every reply costs the same)
//! is admitted against the user's plan before anything is stored; see
//! `plans::limiter`. The plan is read from the database every time, so a
//! plan change applies to the next message on every instance. (A send does
//! not wait for that read: it is admitted on the plan its user's previous
//! message had here while the plan is read, and admitted again, the first
//! admission given back, when the plan read is another; see `send`.)
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
        limiter::{Decision, LimitKind, Slot, Taken, Usage},
    },
};
use confab_core::ids::UserId;
use std::time::Duration;

/// How long a message waits for the plan's counts before it goes unchecked.
pub const ADMIT_TIMEOUT: Duration = Duration::from_millis(500);

/// An admitted generation.
pub(super) struct Admission {
    /// The plan's generation slot it holds (when the plan caps concurrent
    /// replies), given back when the reply ends.
    pub slot: Option<Slot>,
    /// The usage after it (`None`: Redis did not answer, admitted unchecked).
    pub usage: Option<Usage>,
    /// What it counted, to give back whole if the message is not stored
    /// (`None`: unchecked, nothing counted).
    taken: Option<Taken>,
}

impl Admission {
    /// Admitted unchecked (Redis did not answer): nothing was counted, and
    /// no plan would have been checked either.
    pub fn unchecked(&self) -> bool {
        self.taken.is_none()
    }
}

impl Chat {
    /// Admit one generation for `user`, whose stored plan is `stored_plan`
    /// (read by the caller in the query it needs anyway: a send's
    /// `store::messages::first_copy_and_plan`, a retry's
    /// `store::profiles::plan_of`), or [`Error::QuotaExceeded`].
    pub(super) async fn admit(
        &self,
        user: UserId,
        stored_plan: Option<&str>,
    ) -> Result<Admission, Error> {
        let limiter = &self.inner.limiter;
        let plans = limiter.plans();
        let plan = match stored_plan {
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
                return Ok(unchecked());
            }
            Err(_) => {
                tracing::warn!(%user, "plan counts did not answer in time; message admitted unchecked");
                metrics::counter!("plan_admissions_total", "outcome" => "unchecked").increment(1);
                return Ok(unchecked());
            }
        };
        match decision {
            Decision::Admitted { usage, slot, taken } => Ok(Admission {
                slot,
                usage: Some(usage),
                taken: Some(taken),
            }),
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

    /// Give back an admission whole (its count and its slot) for a message
    /// that was not stored after all: a resend, or a failure to store it.
    pub(super) async fn give_back(&self, admission: Admission) {
        if let Some(taken) = admission.taken {
            let now_ms = self.inner.clock.now().timestamp_millis();
            self.inner.limiter.refund(taken, now_ms).await;
        }
    }
}

fn unchecked() -> Admission {
    Admission {
        slot: None,
        usage: None,
        taken: None,
    }
}
