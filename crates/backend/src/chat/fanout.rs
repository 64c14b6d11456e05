//! Publishing chat events on the user's Redis channel. Every backend
//! instance's hub is subscribed to all user channels and forwards each event
//! to the sockets of that user it holds, so other tabs and devices see a
//! message or a reply wherever they are connected.

use super::{Chat, ChatEvent};
use confab_core::ids::UserId;
use redis::AsyncCommands;

impl Chat {
    /// Tell every open page of the user, on every instance, their profile
    /// as it now is.
    pub async fn profile_updated(&self, profile: &crate::store::profiles::Profile) {
        let event = ChatEvent::ProfileUpdated {
            profile: profile.clone(),
        };
        self.publish(profile.user_id, &event).await;
    }

    /// Tell every socket of the user on every instance its plan now.
    pub async fn plan_changed(&self, user: UserId, plan: crate::plans::PlanView) {
        self.publish(user, &ChatEvent::PlanChanged { plan }).await;
    }

    /// Best effort: Redis is not on a message's critical path. A client that
    /// missed an event catches up with `resume`.
    pub(super) async fn publish(&self, user: UserId, event: &ChatEvent) {
        let payload = match serde_json::to_string(event) {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "could not encode a chat event"),
        };
        let mut redis = self.inner.redis.clone();
        let r: Result<(), _> = redis
            .publish(self.inner.keys.user_channel(user), payload)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not publish a chat event");
        }
    }

    /// Tell every socket of the user that these threads are gone.
    pub async fn announce_deleted(
        &self,
        user: UserId,
        thread_ids: Vec<confab_core::ids::ThreadId>,
    ) {
        self.publish(user, &ChatEvent::ThreadsDeleted { thread_ids })
            .await;
    }
}
