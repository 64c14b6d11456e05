//! Threads: listing, creation and renaming (their sequence numbers are
//! handed out by the statements that insert messages, `store::messages`).

use crate::domain::ThreadTitle;
use chrono::{DateTime, Utc};
use confab_core::ids::{ThreadId, UserId, WorkspaceId};
use serde::Serialize;
use sqlx::PgExecutor;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Thread {
    pub id: ThreadId,
    pub title: String,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, title, last_seq, created_at, updated_at";

pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    limit: i64,
) -> Result<Vec<Thread>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM threads WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
    ))
    .bind(user)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    id: ThreadId,
) -> Result<Option<Thread>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM threads WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user)
    .fetch_optional(db)
    .await
}

pub async fn create<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    workspace: WorkspaceId,
    title: &ThreadTitle,
) -> Result<Thread, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO threads (id, workspace_id, user_id, title) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(ThreadId::new())
    .bind(workspace)
    .bind(user)
    .bind(title.as_str())
    .fetch_one(db)
    .await
}

/// Rename one of the user's threads; `None` when it is not theirs.
pub async fn rename<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    id: ThreadId,
    title: &ThreadTitle,
) -> Result<Option<Thread>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE threads SET title = $3, updated_at = now() WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(user)
    .bind(title.as_str())
    .fetch_optional(db)
    .await
}
