//! How the backend's values look to clients, the same over the HTTP API and
//! the chat socket: `http/` and `ws/` both serialise these.

use crate::{
    domain::{ClientMsgId, Role, Status},
    markdown,
    store::messages::Message,
};
use chrono::{DateTime, Utc};
use confab_core::ids::{MessageId, ThreadId};
use serde::Serialize;

/// A message as clients see it, over the socket and the HTTP API.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub role: Role,
    pub content: String,
    /// Sanitised HTML of an assistant reply (absent while streaming).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub status: Status,
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<ClientMsgId>,
    /// A reply's question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// False for a reply that a later attempt at its question replaced
    /// (kept in the history; clients show the current one).
    pub current: bool,
    /// A reply's generation id, as in the server's log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<uuid::Uuid>,
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
        let html = (m.role == Role::Assistant && m.status != Status::Streaming)
            .then(|| markdown::render(&m.content));
        let error = m.error_code.map(|code| ErrorView {
            retryable: crate::agent::retryable_code(&code),
            code,
            message: m.error_message.unwrap_or_default(),
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
            reply_to: m.reply_to,
            current: m.current,
            request_id: m.request_id,
            error,
            created_at: m.created_at,
        }
    }
}
