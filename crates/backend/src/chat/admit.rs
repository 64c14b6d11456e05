//! Each message (and each Retry or Regenerate: every reply costs the same)
//! is admitted against the user's plan before anything is stored; see
//! `plans::limiter`. The plan is read from the database every time, so a
//! plan change applies to the next message on every instance.

use super::Chat;
use crate::{
    error::{Error, QuotaExceeded},
    plans::{
        self,
        limiter::{Decision, LimitKind, Slot, Usage},
    },
    store,
};
use confab_core::ids::UserId;

impl Chat {
    /// Admit one generation for `user`: the slot it holds (when the plan
    /// caps concurrent replies) and the usage after it, or
    /// [`Error::QuotaExceeded`].
    pub(super) async fn admit(&self, user: UserId) -> Result<(Option<Slot>, Usage), Error> {
        let limiter = &self.inner.limiter;
        let plans = limiter.plans();
        let stored = store::profiles::plan_of(&self.inner.db, user).await?;
        let plan = match stored.as_deref() {
            Some(id) => plans.get(id),
            None => plans.default_plan(),
        };
        let now_ms = self.inner.clock.now().timestamp_millis();
        match limiter.admit(user, plan, now_ms).await? {
            Decision::Admitted { usage, slot } => Ok((slot, usage)),
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
