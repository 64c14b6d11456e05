use crate::{domain::RefreshSecret, error::Error};
use chrono::{DateTime, Utc};
use confab_core::ids::{SessionId, UserId};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Stores a new token (by hash) for `session_id`; returns its row id.
pub async fn insert(
    db: impl PgExecutor<'_>,
    session_id: SessionId,
    secret: &RefreshSecret,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<Uuid, Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(session_id)
    .bind(secret.hash())
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(id)
}

/// A presented refresh token with everything the rotation decision needs.
#[derive(Debug, sqlx::FromRow)]
pub struct Presented {
    pub id: Uuid,
    pub session_id: SessionId,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub session_revoked_at: Option<DateTime<Utc>>,
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
}

/// Looks the token up and locks it and its session until the transaction
/// ends. Two concurrent refreshes with one token therefore run one after
/// the other, and the second sees the first one's `used_at`.
pub async fn lock_presented(
    db: impl PgExecutor<'_>,
    secret: &RefreshSecret,
) -> Result<Option<Presented>, Error> {
    Ok(sqlx::query_as::<_, Presented>(
        "SELECT rt.id, rt.session_id, rt.expires_at, rt.used_at,
                s.revoked_at AS session_revoked_at, s.user_id, u.email, u.display_name
         FROM refresh_tokens rt
         JOIN sessions s ON s.id = rt.session_id
         JOIN users u ON u.id = s.user_id
         WHERE rt.token_hash = $1
         FOR UPDATE OF rt, s",
    )
    .bind(secret.hash())
    .fetch_optional(db)
    .await?)
}

pub async fn mark_used(
    db: impl PgExecutor<'_>,
    id: Uuid,
    replaced_by: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query("UPDATE refresh_tokens SET used_at = $2, replaced_by = $3 WHERE id = $1")
        .bind(id)
        .bind(now)
        .bind(replaced_by)
        .execute(db)
        .await?;
    Ok(())
}

/// The session a token belongs to, whatever its state (used for logout by
/// cookie: holding any of a session's tokens is enough to end it).
pub async fn session_of(
    db: impl PgExecutor<'_>,
    secret: &RefreshSecret,
) -> Result<Option<SessionId>, Error> {
    Ok(
        sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(secret.hash())
            .fetch_optional(db)
            .await?,
    )
}
