//! The export format, version 1 (`docs/architecture.md#export-format`).
//!
//! One JSON document: a header naming the format and its version, the owner,
//! and the threads, each with its messages in sequence order. The same
//! types parse an import, so what Confab writes it can read back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `format` field of every export.
pub const FORMAT: &str = "confab.export";
/// The schema version this code writes and reads. A reader refuses a newer
/// one with a clear error rather than guessing.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
}

/// Everything of a thread except its messages (written before them, so the
/// document can be streamed).
#[derive(Debug, Clone, Serialize)]
pub struct ThreadHead<'a> {
    pub id: Uuid,
    pub title: &'a str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// One message as exported and imported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub id: Uuid,
    pub seq: i64,
    /// `user` or `assistant`.
    pub role: String,
    /// `complete`, `failed`, `stopped` (by its user) or `streaming` (a reply
    /// still being written when the export was taken).
    pub status: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
    /// For a reply, the id of the question it answers.
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    /// For a reply: whether it is the attempt the conversation shows (a
    /// question can have several — failed, stopped, regenerated). Absent
    /// means true. An import makes each question's newest attempt current.
    #[serde(default = "yes")]
    pub current: bool,
    /// The model and provider that wrote a reply (`null` for the user's own
    /// messages and for replies stored before Confab recorded them).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    /// Why a failed reply failed.
    #[serde(default)]
    pub error: Option<ErrorInfo>,
}

fn yes() -> bool {
    true
}

/// A whole export as an importer reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub format: String,
    pub version: u32,
    #[serde(default)]
    pub exported_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub user: Option<Owner>,
    pub threads: Vec<Thread>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thread {
    pub id: Uuid,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub messages: Vec<Message>,
}
