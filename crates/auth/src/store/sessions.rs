use crate::error::Error;
use chrono::{DateTime, Utc};
use confab_core::{
    ids::{SessionId, UserId},
    revocation::RevokeReason,
};
use sqlx::PgExecutor;
use uuid::Uuid;

/// User agents are client-controlled; keep what helps a person recognise a
/// device in a session list and no more.
const MAX_USER_AGENT: usize = 512;

/// Where a new session signs in from, as its owner will see it.
pub struct NewSession<'a> {
    pub user_agent: Option<&'a str>,
    /// Already coarse (see `domain::coarse_ip`).
    pub ip: Option<String>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: UserId,
    device: &NewSession<'_>,
    now: DateTime<Utc>,
) -> Result<SessionId, Error> {
    let id = SessionId::new();
    let user_agent = device
        .user_agent
        .map(|ua| ua.chars().take(MAX_USER_AGENT).collect::<String>());
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip)
         VALUES ($1, $2, $3, $3, $4, $5)",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .bind(user_agent)
    .bind(&device.ip)
    .execute(db)
    .await?;
    Ok(id)
}

/// Marks the session revoked, and why. Returns its user when this call
/// revoked it, `None` when it was already revoked or does not exist, so the
/// caller writes the `session.revoked` event exactly once.
pub async fn revoke(
    db: impl PgExecutor<'_>,
    id: SessionId,
    reason: RevokeReason,
    now: DateTime<Utc>,
) -> Result<Option<UserId>, Error> {
    Ok(sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3
         WHERE id = $1 AND revoked_at IS NULL RETURNING user_id",
    )
    .bind(id)
    .bind(now)
    .bind(reason.as_str())
    .fetch_optional(db)
    .await?)
}

/// Revokes every live session of `user`; returns the ones this call ended.
pub async fn revoke_all(
    db: impl PgExecutor<'_>,
    user: UserId,
    reason: RevokeReason,
    now: DateTime<Utc>,
) -> Result<Vec<SessionId>, Error> {
    Ok(sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
    )
    .bind(user)
    .bind(now)
    .bind(reason.as_str())
    .fetch_all(db)
    .await?)
}

/// One row of a user's session list.
#[derive(Debug, sqlx::FromRow)]
pub struct Listed {
    pub id: SessionId,
    pub handle: Uuid,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

/// Most recent sessions shown; revoked ones only for this long after they
/// ended (the list says why a device was signed out, then forgets it).
pub const LIST_LIMIT: i64 = 50;
pub const REVOKED_SHOWN_FOR_DAYS: i32 = 30;

/// The user's sessions: live ones first (most recently active first), then
/// those that ended in the last [`REVOKED_SHOWN_FOR_DAYS`].
pub async fn list(
    db: impl PgExecutor<'_>,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<Vec<Listed>, Error> {
    Ok(sqlx::query_as::<_, Listed>(
        "SELECT id, handle, user_agent, ip, created_at, last_used_at, revoked_at, revoked_reason
         FROM sessions
         WHERE user_id = $1
           AND (revoked_at IS NULL OR revoked_at > $2 - make_interval(days => $3))
         ORDER BY revoked_at IS NOT NULL, last_used_at DESC, id
         LIMIT $4",
    )
    .bind(user)
    .bind(now)
    .bind(REVOKED_SHOWN_FOR_DAYS)
    .bind(LIST_LIMIT)
    .fetch_all(db)
    .await?)
}

/// The session behind a public handle, only if it is `user`'s: someone
/// else's handle is indistinguishable from one that does not exist.
pub async fn by_handle(
    db: impl PgExecutor<'_>,
    user: UserId,
    handle: Uuid,
) -> Result<Option<SessionId>, Error> {
    Ok(
        sqlx::query_scalar("SELECT id FROM sessions WHERE handle = $1 AND user_id = $2")
            .bind(handle)
            .bind(user)
            .fetch_optional(db)
            .await?,
    )
}

/// Why a revoked session ended (`None` while it is live, or for rows from
/// before reasons were recorded).
pub async fn revoked_reason(
    db: impl PgExecutor<'_>,
    id: SessionId,
) -> Result<Option<RevokeReason>, Error> {
    let reason: Option<Option<String>> =
        sqlx::query_scalar("SELECT revoked_reason FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(reason.flatten().and_then(|r| r.parse().ok()))
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
