//! Cross-service events. The auth service writes them to its outbox in the
//! same transaction as the change; a relay appends them to a Redis Stream
//! (`Keys::events_stream`) where the backend reads them in a consumer group
//! and applies each one at most once (it records processed event ids).

use crate::ids::{EventId, SessionId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    #[serde(rename = "user.registered")]
    UserRegistered {
        user_id: UserId,
        email: String,
        display_name: String,
    },
    #[serde(rename = "user.updated")]
    UserUpdated {
        user_id: UserId,
        email: String,
        display_name: String,
    },
    #[serde(rename = "user.deleted")]
    UserDeleted { user_id: UserId },
    #[serde(rename = "session.revoked")]
    SessionRevoked {
        user_id: UserId,
        session_id: SessionId,
    },
}

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::UserRegistered { .. } => "user.registered",
            EventKind::UserUpdated { .. } => "user.updated",
            EventKind::UserDeleted { .. } => "user.deleted",
            EventKind::SessionRevoked { .. } => "session.revoked",
        }
    }
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
