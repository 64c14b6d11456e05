//! Reading a user's history for export, one row at a time: threads joined
//! with their messages in thread and sequence order, streamed from the
//! database so an export of any size runs in constant memory.

use crate::domain::{Role, Status};
use chrono::{DateTime, Utc};
use confab_core::ids::{MessageId, ThreadId, UserId};
use futures::stream::BoxStream;
use sqlx::PgConnection;

/// One thread and one of its messages (`message` is `None` for a thread
/// without messages, which is exported too).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub thread_id: ThreadId,
    pub title: String,
    pub thread_created_at: DateTime<Utc>,
    pub thread_updated_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub message: MaybeMessage,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MaybeMessage {
    pub id: Option<MessageId>,
    pub seq: Option<i64>,
    pub role: Option<Role>,
    pub status: Option<Status>,
    pub content: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub reply_to: Option<MessageId>,
    pub current: Option<bool>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// Every thread of `user` (or just `thread`), oldest first, each with its
/// messages in sequence order. The rows arrive as the database sends them.
pub fn rows(
    conn: &mut PgConnection,
    user: UserId,
    thread: Option<ThreadId>,
) -> BoxStream<'_, Result<Row, sqlx::Error>> {
    sqlx::query_as(
        "SELECT t.id AS thread_id, t.title, t.created_at AS thread_created_at,
                t.updated_at AS thread_updated_at,
                m.id, m.seq, m.role, m.status, m.content, m.created_at, m.reply_to, m.current,
                m.model, m.provider, m.error_code, m.error_message
         FROM threads t LEFT JOIN messages m ON m.thread_id = t.id
         WHERE t.user_id = $1 AND ($2::uuid IS NULL OR t.id = $2)
         ORDER BY t.created_at, t.id, m.seq",
    )
    .bind(user)
    .bind(thread)
    .fetch(conn)
}

/// The owner's email and display name, for the export's header.
pub async fn owner(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT email, display_name FROM profiles WHERE user_id = $1")
        .bind(user)
        .fetch_optional(conn)
        .await
}

/// A read-only transaction whose queries all see one snapshot (the zip's
/// two passes over the history must agree).
pub async fn snapshot(
    conn: &mut PgConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
