use crate::error::Error;
use chrono::{DateTime, Utc};
use confab_core::ids::{SessionId, UserId};
use sqlx::PgExecutor;

/// User agents are client-controlled; keep what helps a person recognise a
/// device in a session list and no more.
const MAX_USER_AGENT: usize = 512;

pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: UserId,
    user_agent: Option<&str>,
    now: DateTime<Utc>,
) -> Result<SessionId, Error> {
    let id = SessionId::new();
    let user_agent = user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT).collect::<String>());
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent)
         VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .bind(user_agent)
    .execute(db)
    .await?;
    Ok(id)
}

/// Marks the session revoked. Returns its user when this call revoked it,
/// `None` when it was already revoked or does not exist, so the caller
/// writes the `session.revoked` event exactly once.
pub async fn revoke(
    db: impl PgExecutor<'_>,
    id: SessionId,
    now: DateTime<Utc>,
) -> Result<Option<UserId>, Error> {
    Ok(sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING user_id",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(db)
    .await?)
}

/// True when the session exists and is not revoked (a deleted user's
/// sessions are gone, which also counts as not active).
pub async fn is_active(db: impl PgExecutor<'_>, id: SessionId) -> Result<bool, Error> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND revoked_at IS NULL)",
    )
    .bind(id)
    .fetch_one(db)
    .await?)
}

pub async fn touch(
    db: impl PgExecutor<'_>,
    id: SessionId,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query("UPDATE sessions SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// When the session signed in (log-in or sign-up; refreshing keeps it).
pub async fn created_at(
    db: impl PgExecutor<'_>,
    id: SessionId,
) -> Result<Option<DateTime<Utc>>, Error> {
    Ok(
        sqlx::query_scalar("SELECT created_at FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}
