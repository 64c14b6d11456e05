//! The chat socket's frames (documented in docs/websocket-protocol.md). Both
//! directions are JSON objects with a `type`.

use crate::{agent::AgentInfo, store::messages::Message};
use chrono::{DateTime, Utc};
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
    Retry {
        message_id: MessageId,
    },
    Ping,
}

pub const CLIENT_TYPES: &[&str] = &["auth", "reauth", "send", "resume", "retry", "ping"];

/// A message as clients see it, over the socket and the HTTP API.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub role: String,
    pub content: String,
    /// Sanitised HTML of an assistant reply (absent while streaming).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub status: String,
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        let html = (m.role == "assistant" && m.status != "streaming")
            .then(|| crate::markdown::render(&m.content));
        let error = m.error_code.map(|code| ErrorView {
            code,
            message: m.error_message.unwrap_or_default(),
            retryable: true,
        });
        Self {
            id: m.id,
            thread_id: m.thread_id,
            role: m.role,
            content: m.content,
            html,
            status: m.status,
            seq: m.seq,
            client_msg_id: m.client_msg_id,
            error,
            created_at: m.created_at,
        }
    }
}

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
    Delta {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        /// Position of this delta in the reply (0, 1, …): lets a client that
        /// hears a delta twice (live and on resume) apply it once.
        index: u64,
        text: String,
    },
    Done {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        html: String,
    },
    Message {
        message: MessageView,
    },
    Reauthed {
        expires_at: i64,
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
    },
    Pong,
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
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }
}
