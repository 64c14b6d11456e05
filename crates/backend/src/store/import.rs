//! Writing an import: threads and their messages, many rows per statement.

use crate::domain::{Role, Status, ThreadTitle};
use chrono::{DateTime, Utc};
use confab_core::ids::{MessageId, ThreadId, UserId, WorkspaceId};
use sqlx::PgConnection;

/// A thread ready to insert: new ids, sequence numbers 1..n, references
/// remapped.
#[derive(Debug, Clone)]
pub struct NewThread {
    pub id: ThreadId,
    pub title: ThreadTitle,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub messages: Vec<NewMessage>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub seq: i64,
    pub role: Role,
    pub status: Status,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub reply_to: Option<MessageId>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// Rows per `INSERT … SELECT FROM UNNEST(…)`: large enough to be fast,
/// small enough to keep each statement's arrays modest.
const BATCH: usize = 1000;

/// Insert one planned thread and its messages (inside the caller's
/// transaction). The messages are in sequence order, so a reply's question
/// is always inserted in the same or an earlier statement.
pub async fn insert_thread(
    conn: &mut PgConnection,
    user: UserId,
    workspace: WorkspaceId,
    t: &NewThread,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO threads (id, workspace_id, user_id, title, last_seq, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(t.id)
    .bind(workspace)
    .bind(user)
    .bind(t.title.as_str())
    .bind(t.messages.len() as i64)
    .bind(t.created_at)
    .bind(t.updated_at)
    .execute(&mut *conn)
    .await?;
    for chunk in t.messages.chunks(BATCH) {
        let ids: Vec<MessageId> = chunk.iter().map(|m| m.id).collect();
        let seqs: Vec<i64> = chunk.iter().map(|m| m.seq).collect();
        let roles: Vec<&str> = chunk.iter().map(|m| m.role.as_str()).collect();
        let statuses: Vec<&str> = chunk.iter().map(|m| m.status.as_str()).collect();
        let contents: Vec<&str> = chunk.iter().map(|m| m.content.as_str()).collect();
        let created: Vec<_> = chunk.iter().map(|m| m.created_at).collect();
        let reply_to: Vec<Option<MessageId>> = chunk.iter().map(|m| m.reply_to).collect();
        let models: Vec<Option<&str>> = chunk.iter().map(|m| m.model.as_deref()).collect();
        let providers: Vec<Option<&str>> = chunk.iter().map(|m| m.provider.as_deref()).collect();
        let codes: Vec<Option<&str>> = chunk.iter().map(|m| m.error_code.as_deref()).collect();
        let errors: Vec<Option<&str>> = chunk.iter().map(|m| m.error_message.as_deref()).collect();
        sqlx::query(
            "INSERT INTO messages (id, thread_id, user_id, seq, role, status, content, created_at,
                                   updated_at, reply_to, model, provider, error_code, error_message,
                                   current)
             SELECT u.id, $1, $2, u.seq, u.role, u.status, u.content, u.created_at, u.created_at,
                    u.reply_to, u.model, u.provider, u.error_code, u.error_message,
                    u.reply_to IS NULL
             FROM UNNEST($3::uuid[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                         $8::timestamptz[], $9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[])
               AS u(id, seq, role, status, content, created_at, reply_to, model, provider,
                    error_code, error_message)",
        )
        .bind(t.id)
        .bind(user)
        .bind(ids)
        .bind(seqs)
        .bind(roles)
        .bind(statuses)
        .bind(contents)
        .bind(created)
        .bind(reply_to)
        .bind(models)
        .bind(providers)
        .bind(codes)
        .bind(errors)
        .execute(&mut *conn)
        .await?;
    }
    // Replies go in not current (attempts of one question may span
    // statements); then each question's newest attempt becomes current.
    sqlx::query(
        "UPDATE messages m SET current = true
         WHERE m.thread_id = $1 AND m.reply_to IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM messages n
                           WHERE n.thread_id = $1 AND n.reply_to = m.reply_to AND n.seq > m.seq)",
    )
    .bind(t.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
