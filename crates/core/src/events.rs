//! Cross-service events. A service writes them to its outbox
//! ([`crate::outbox`]) in the same transaction as the change; a relay appends
//! them to a Redis Stream (`Keys::events_stream`) where consumers read them
//! in a consumer group and apply each one at most once (they record
//! processed event ids). Consumers ignore types they do not know, so a
//! producer can add a type before every consumer handles it.

use crate::{
    ids::{EventId, SessionId, ThreadId, UserId},
    revocation::RevokeReason,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    #[serde(rename = "user.registered")]
    UserRegistered {
        user_id: UserId,
        email: String,
        display_name: String,
        /// The profile's version in auth (1 at sign-up); see `UserUpdated`.
        #[serde(default)]
        version: i64,
    },
    /// The whole public profile after a change, not a diff: applying the
    /// newest one is enough, whatever came before it.
    #[serde(rename = "user.updated")]
    UserUpdated {
        user_id: UserId,
        email: String,
        display_name: String,
        /// Path of the uploaded avatar (served by auth), `None` for the
        /// initial-based default.
        #[serde(default)]
        avatar_url: Option<String>,
        /// IANA time zone name, `None` for the browser's own.
        #[serde(default)]
        time_zone: Option<String>,
        /// Increases by one with every change of the profile in auth. A
        /// consumer applies an event only if it is newer than what it holds,
        /// so a late or redelivered older event can never win.
        #[serde(default)]
        version: i64,
    },
    #[serde(rename = "user.deleted")]
    UserDeleted { user_id: UserId },
    #[serde(rename = "session.revoked")]
    SessionRevoked {
        user_id: UserId,
        session_id: SessionId,
        /// Absent in events written before reasons were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<RevokeReason>,
    },
    /// Published by the backend when a conversation is deleted. It names
    /// the thread by SHA-256 of its id (hex), not the id: a deleted chat
    /// leaves no trace in any store, while a consumer that kept something
    /// under the id can still recognise it.
    #[serde(rename = "thread.deleted")]
    ThreadDeleted {
        user_id: UserId,
        thread_hash: String,
    },
    /// Published by the backend when a user's plan changes (a payment
    /// provider's webhook, a cancellation, an administrator). Every
    /// instance reads the plan from the database on each message, so the new
    /// limits apply at once; the event tells open pages.
    #[serde(rename = "plan.changed")]
    PlanChanged {
        user_id: UserId,
        plan: String,
        previous: String,
        /// Why: `checkout`, `subscription_updated`, `subscription_canceled`,
        /// `admin`, …
        reason: String,
    },
}

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::UserRegistered { .. } => "user.registered",
            EventKind::UserUpdated { .. } => "user.updated",
            EventKind::UserDeleted { .. } => "user.deleted",
            EventKind::SessionRevoked { .. } => "session.revoked",
            EventKind::ThreadDeleted { .. } => "thread.deleted",
            EventKind::PlanChanged { .. } => "plan.changed",
        }
    }

    /// `thread.deleted` for this thread.
    pub fn thread_deleted(user_id: UserId, thread: ThreadId) -> Self {
        let digest = Sha256::digest(thread.to_string().as_bytes());
        let thread_hash = digest.iter().map(|b| format!("{b:02x}")).collect();
        EventKind::ThreadDeleted {
            user_id,
            thread_hash,
        }
    }

    /// The user the event is about.
    pub fn user_id(&self) -> UserId {
        match self {
            EventKind::UserRegistered { user_id, .. }
            | EventKind::UserUpdated { user_id, .. }
            | EventKind::UserDeleted { user_id }
            | EventKind::SessionRevoked { user_id, .. }
            | EventKind::ThreadDeleted { user_id, .. }
            | EventKind::PlanChanged { user_id, .. } => *user_id,
        }
    }

    /// Every type this build knows; a consumer acknowledges and skips others.
    pub const TYPES: &'static [&'static str] = &[
        "user.registered",
        "user.updated",
        "user.deleted",
        "session.revoked",
        "thread.deleted",
        "plan.changed",
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// A new event that happened `at` (the caller's clock, so the event and
    /// the change it announces carry the same time).
    pub fn new(kind: EventKind, at: DateTime<Utc>) -> Self {
        Self {
            id: EventId::new(),
            occurred_at: at,
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_stable() {
        let e = Event::new(
            EventKind::UserDeleted {
                user_id: UserId::new(),
            },
            crate::clock::Clock::system().now(),
        );
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "user.deleted");
        assert!(v["data"]["user_id"].is_string());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
