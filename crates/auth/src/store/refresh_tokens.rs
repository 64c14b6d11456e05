use crate::{
    domain::{RefreshSecret, SuccessorKey},
    error::Error,
};
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
    /// The key its successor was derived with (set when it was rotated).
    pub successor_key: Option<Vec<u8>>,
    /// Whether its successor (if any) is unrotated: the session's newest.
    pub successor_is_newest: bool,
    pub session_revoked_at: Option<DateTime<Utc>>,
    pub session_revoked_reason: Option<String>,
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    /// The account's role (`users.role`): the new access token carries it.
    pub role: String,
}

/// Looks the token up and locks it and its session until the transaction
/// ends. Two concurrent refreshes with one token therefore run one after
/// the other, and the second sees the first one's `used_at`.
pub async fn lock_presented(
    db: impl PgExecutor<'_>,
    secret: &RefreshSecret,
) -> Result<Option<Presented>, Error> {
    Ok(sqlx::query_as::<_, Presented>(
        "SELECT rt.id, rt.session_id, rt.expires_at, rt.used_at, rt.successor_key,
                COALESCE(next.used_at IS NULL, false) AS successor_is_newest,
                s.revoked_at AS session_revoked_at, s.revoked_reason AS session_revoked_reason,
                s.user_id, u.email, u.display_name, u.role
         FROM refresh_tokens rt
         JOIN sessions s ON s.id = rt.session_id
         JOIN users u ON u.id = s.user_id
         LEFT JOIN refresh_tokens next ON next.id = rt.replaced_by
         WHERE rt.token_hash = $1
         FOR UPDATE OF rt, s",
    )
    .bind(secret.hash())
    .fetch_optional(db)
    .await?)
}

/// Records the rotation: when, to which successor, and the key the
/// successor was derived with (so a retry within the grace gets it again).
pub async fn mark_used(
    db: impl PgExecutor<'_>,
    id: Uuid,
    replaced_by: Uuid,
    key: &SuccessorKey,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET used_at = $2, replaced_by = $3, successor_key = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(replaced_by)
    .bind(key.as_bytes())
    .execute(db)
    .await?;
    Ok(())
}

/// How many tokens a session has ever had (one per rotation plus the first).
pub async fn count_for_session(
    db: impl PgExecutor<'_>,
    session_id: SessionId,
) -> Result<i64, Error> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE session_id = $1")
            .bind(session_id)
            .fetch_one(db)
            .await?,
    )
}

/// The session (and its user) a token belongs to, whatever its state (used
/// for logout by cookie: holding any of a session's tokens is enough to end
/// it).
pub async fn owner_of(
    db: impl PgExecutor<'_>,
    secret: &RefreshSecret,
) -> Result<Option<(SessionId, UserId)>, Error> {
    Ok(sqlx::query_as(
        "SELECT rt.session_id, s.user_id FROM refresh_tokens rt
         JOIN sessions s ON s.id = rt.session_id
         WHERE rt.token_hash = $1",
    )
    .bind(secret.hash())
    .fetch_optional(db)
    .await?)
}
