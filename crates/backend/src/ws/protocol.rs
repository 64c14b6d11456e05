//! The chat socket's frames (documented in docs/websocket-protocol.md). Both
//! directions are JSON objects with a `type`.

use crate::plans::{
    limiter::{LimitKind, Usage},
    PlanView,
};
use crate::{
    agent::AgentInfo,
    chat::{ChatEvent, Piece},
    error::Error,
    markdown,
    view::MessageView,
};
use confab_core::ids::{MessageId, ThreadId, UserId};
use serde::{Deserialize, Serialize};

/// Close codes the server uses (4000–4999 are application-defined).
pub mod close {
    /// The first frame was not `auth`, or it did not arrive in time.
    pub const AUTH_REQUIRED: u16 = 4000;
    /// The access token expired and no `reauth` arrived in time.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The token presented was not valid.
    pub const INVALID_TOKEN: u16 = 4002;
    /// The session was revoked (logout).
    pub const SESSION_REVOKED: u16 = 4003;
    /// The client could not keep up with its frames; reconnect and resume.
    pub const TOO_SLOW: u16 = 4008;
    /// The server lost its fan-out subscription and may have missed frames;
    /// reconnect and resume.
    pub const RESYNC: u16 = 4009;
    /// The user already holds `CONFAB_WS_MAX_SOCKETS_PER_USER` sockets on
    /// this instance.
    pub const TOO_MANY_SOCKETS: u16 = 4029;
    /// Standard: a frame exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// Standard: the server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Standard: the server could not check the credentials right now
    /// (a dependency is down); reconnect with backoff.
    pub const UNAVAILABLE: u16 = 1011;
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Auth {
        token: String,
    },
    Reauth {
        token: String,
    },
    Send {
        client_msg_id: String,
        #[serde(default)]
        thread_id: Option<ThreadId>,
        text: String,
    },
    Resume {
        thread_id: ThreadId,
        after_seq: i64,
    },
    /// Retry a failed reply or regenerate any finished one.
    Retry {
        message_id: MessageId,
    },
    /// Stop generating a reply (what it has is kept).
    Stop {
        message_id: MessageId,
    },
    Ping,
}

pub const CLIENT_TYPES: &[&str] = &["auth", "reauth", "send", "resume", "retry", "stop", "ping"];

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_message_chars: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Ready {
        user_id: UserId,
        agent: AgentInfo,
        limits: Limits,
        expires_at: i64,
    },
    Ack {
        client_msg_id: String,
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        /// True when this resend matched a message already stored.
        duplicate: bool,
    },
    Delta(Piece),
    Done {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        /// `complete`, or `stopped` when the user stopped it.
        status: &'static str,
        html: String,
    },
    Message {
        message: MessageView,
    },
    /// The end of one page of a resume.
    Resumed {
        thread_id: ThreadId,
        /// Where this page stopped: resume again after it when `more`.
        through_seq: i64,
        more: bool,
    },
    Reauthed {
        expires_at: i64,
    },
    /// Threads of the user were deleted (here or on another device).
    ThreadsDeleted {
        thread_ids: Vec<ThreadId>,
    },
    Error {
        code: String,
        message: String,
        retryable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        thread_id: Option<ThreadId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message_id: Option<MessageId>,
        /// A failed reply's partial text, rendered (kept, shown incomplete).
        #[serde(skip_serializing_if = "Option::is_none")]
        html: Option<String>,
        /// A failed reply's generation id, as in the server log.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<uuid::Uuid>,
        /// `quota_exceeded`: which limit (`quota`, `rate`, `concurrency`).
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<LimitKind>,
        /// `quota_exceeded`: seconds until it would be admitted.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        /// `quota_exceeded`: where the page starts an upgrade (`null` on the
        /// top plan).
        #[serde(skip_serializing_if = "Option::is_none")]
        upgrade_url: Option<Option<String>>,
        /// `quota_exceeded`: the usage that refused it.
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    Pong,
    /// Something about the user changed elsewhere; `kind` says what
    /// (`profile.updated`).
    Event {
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<ProfileView>,
        /// `plan.changed`: the plan now.
        #[serde(skip_serializing_if = "Option::is_none")]
        plan: Option<PlanView>,
        /// `quota.warning`: the usage after the message just admitted.
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
}

/// The public profile as pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileView {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub time_zone: Option<String>,
    /// Auth's profile version: a page ignores a frame older than what it shows.
    pub version: i64,
}

impl From<crate::store::profiles::Profile> for ProfileView {
    fn from(p: crate::store::profiles::Profile) -> Self {
        Self {
            user_id: p.user_id,
            email: p.email,
            display_name: p.display_name,
            avatar_url: p.avatar_url,
            time_zone: p.time_zone,
            version: p.version,
        }
    }
}

impl ServerFrame {
    pub fn error(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        ServerFrame::Error {
            code: code.into(),
            message: message.into(),
            retryable,
            client_msg_id: None,
            thread_id: None,
            message_id: None,
            html: None,
            request_id: None,
            limit: None,
            retry_after: None,
            upgrade_url: None,
            usage: None,
        }
    }

    /// `{"type":"event","kind":"quota.warning","usage":…}`.
    pub fn quota_warning(usage: Usage) -> Self {
        ServerFrame::Event {
            kind: "quota.warning",
            profile: None,
            plan: None,
            usage: Some(usage),
        }
    }

    /// An error frame naming the client message it answers.
    pub fn about(mut self, id: String) -> Self {
        if let ServerFrame::Error { client_msg_id, .. } = &mut self {
            *client_msg_id = Some(id);
        }
        self
    }

    #[expect(
        clippy::expect_used,
        reason = "a derived Serialize of strings, numbers and string-keyed maps cannot fail"
    )]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }
}

/// The frame an error becomes on the socket: the same code and message as
/// over HTTP (`Error::code`, `Error::public_message`); our own failures are
/// logged here and are worth retrying, the client's are not.
impl From<&Error> for ServerFrame {
    fn from(e: &Error) -> Self {
        if e.is_internal() {
            tracing::error!(error = %e, "socket request failed");
        }
        let mut frame = ServerFrame::error(e.code(), e.public_message(), e.is_internal());
        if let (
            Error::QuotaExceeded(q),
            ServerFrame::Error {
                limit,
                retry_after,
                upgrade_url,
                usage,
                ..
            },
        ) = (e, &mut frame)
        {
            *limit = Some(q.refusal.kind);
            *retry_after = Some(q.retry_after_secs());
            *upgrade_url = Some(q.upgrade_url.clone());
            *usage = Some(q.refusal.usage.clone());
        }
        frame
    }
}

/// The frame a chat event becomes on the wire.
impl From<ChatEvent> for ServerFrame {
    fn from(event: ChatEvent) -> Self {
        match event {
            ChatEvent::Stored { message } => ServerFrame::Message {
                message: MessageView::from(message),
            },
            ChatEvent::Delta(piece) => ServerFrame::Delta(piece),
            ChatEvent::ThreadsDeleted { thread_ids } => ServerFrame::ThreadsDeleted { thread_ids },
            // The hub closes the user's sockets instead (4009); a frame
            // saying the same is what a direct conversion can do.
            ChatEvent::Resync => ServerFrame::error(
                "resync",
                "Some updates were lost on the way; reconnect and resume.",
                true,
            ),
            ChatEvent::Completed {
                thread_id,
                message_id,
                seq,
                content,
            } => ServerFrame::Done {
                thread_id,
                message_id,
                seq,
                status: "complete",
                html: markdown::render(&content),
            },
            ChatEvent::Stopped {
                thread_id,
                message_id,
                seq,
                content,
            } => ServerFrame::Done {
                thread_id,
                message_id,
                seq,
                status: "stopped",
                html: markdown::render(&content),
            },
            ChatEvent::Failed {
                thread_id,
                message_id,
                code,
                message,
                retryable,
                partial,
                request_id,
            } => ServerFrame::Error {
                code,
                message,
                retryable,
                client_msg_id: None,
                thread_id: Some(thread_id),
                message_id,
                html: (!partial.is_empty()).then(|| markdown::render(&partial)),
                request_id,
                limit: None,
                retry_after: None,
                upgrade_url: None,
                usage: None,
            },
            ChatEvent::ProfileUpdated { profile } => ServerFrame::Event {
                kind: "profile.updated",
                profile: Some(profile.into()),
                plan: None,
                usage: None,
            },
            ChatEvent::PlanChanged { plan } => ServerFrame::Event {
                kind: "plan.changed",
                profile: None,
                plan: Some(plan),
                usage: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, Status};
    use serde_json::{json, Value};

    fn frame_of(event: ChatEvent) -> Value {
        serde_json::from_str(&ServerFrame::from(event).to_json()).unwrap()
    }

    #[test]
    fn deleted_threads_are_one_frame_naming_them() {
        let ids = vec![ThreadId::new(), ThreadId::new()];
        let v = frame_of(ChatEvent::ThreadsDeleted {
            thread_ids: ids.clone(),
        });
        assert_eq!(
            v,
            json!({"type": "threads_deleted", "thread_ids": [ids[0].to_string(), ids[1].to_string()]})
        );
    }

    #[test]
    fn a_completed_reply_is_a_done_frame_with_sanitised_html() {
        let (thread_id, message_id) = (ThreadId::new(), MessageId::new());
        let v = frame_of(ChatEvent::Completed {
            thread_id,
            message_id,
            seq: 4,
            content: "**hi** <script>x()</script>".into(),
        });
        assert_eq!(v["type"], "done");
        assert_eq!(v["status"], "complete");
        assert_eq!(v["thread_id"], thread_id.to_string());
        assert_eq!(v["message_id"], message_id.to_string());
        assert_eq!(v["seq"], 4);
        let html = v["html"].as_str().unwrap();
        assert!(html.contains("<strong>hi</strong>") && !html.contains("<script"));
    }

    #[test]
    fn a_failed_reply_is_an_error_frame_naming_its_thread_and_message() {
        let (thread_id, message_id) = (ThreadId::new(), MessageId::new());
        let v = frame_of(ChatEvent::Failed {
            thread_id,
            message_id: Some(message_id),
            code: "agent_timeout".into(),
            message: "Too slow.".into(),
            retryable: true,
            partial: String::new(),
            request_id: None,
        });
        assert_eq!(
            v,
            json!({
                "type": "error", "code": "agent_timeout", "message": "Too slow.",
                "retryable": true, "thread_id": thread_id.to_string(),
                "message_id": message_id.to_string(),
            })
        );
    }

    #[test]
    fn deltas_and_stored_messages_keep_their_frames() {
        let m = crate::chat::tests::message(Role::User, Status::Complete, "hello");
        let v = frame_of(ChatEvent::Stored { message: m.clone() });
        assert_eq!(v["type"], "message");
        assert_eq!(v["message"]["id"], m.id.to_string());
        assert_eq!(v["message"]["content"], "hello");
        assert!(v["message"].get("html").is_none());
        let v = frame_of(ChatEvent::Delta(Piece {
            thread_id: m.thread_id,
            message_id: m.id,
            seq: 2,
            index: 0,
            text: "Hel".into(),
            html: None,
        }));
        assert_eq!(
            v,
            json!({
                "type": "delta", "thread_id": m.thread_id.to_string(),
                "message_id": m.id.to_string(), "seq": 2, "index": 0, "text": "Hel",
            })
        );
    }

    #[test]
    fn chat_events_survive_the_trip_between_instances() {
        let m = crate::chat::tests::message(Role::Assistant, Status::Streaming, "");
        let event = ChatEvent::Stored { message: m };
        let wire = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<ChatEvent>(&wire).unwrap(), event);
    }
}
