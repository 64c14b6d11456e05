//! Pending email changes (`email_changes`): one row per link sent, keyed by
//! the SHA-256 of the link's secret.

use crate::error::Error;
use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use sqlx::PgExecutor;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmailChange {
    pub user_id: UserId,
    pub new_email: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// Record a requested change; an unused earlier request of the same user is
/// dropped first, so only the newest link works.
pub async fn replace(
    conn: &mut sqlx::PgConnection,
    token_hash: &[u8],
    user_id: UserId,
    new_email: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), Error> {
    discard_pending(&mut *conn, user_id).await?;
    sqlx::query(
        "INSERT INTO email_changes (token_hash, user_id, new_email, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(new_email)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The change a link names, locked until the transaction ends, so two
/// clicks of one link cannot both use it.
pub async fn lock(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> Result<Option<EmailChange>, Error> {
    Ok(sqlx::query_as::<_, EmailChange>(
        "SELECT user_id, new_email, expires_at, used_at FROM email_changes
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await?)
}

pub async fn mark_used(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query("UPDATE email_changes SET used_at = $2 WHERE token_hash = $1")
        .bind(token_hash)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Drop a user's unused links (a newer request, or a confirmed change,
/// makes them void). Used ones are kept, so a reused link is told apart
/// from a forged one.
pub async fn discard_pending(db: impl PgExecutor<'_>, user_id: UserId) -> Result<u64, Error> {
    Ok(
        sqlx::query("DELETE FROM email_changes WHERE user_id = $1 AND used_at IS NULL")
            .bind(user_id)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// A link whose sending failed never reached anyone: forget it.
pub async fn delete(db: impl PgExecutor<'_>, token_hash: &[u8]) -> Result<(), Error> {
    sqlx::query("DELETE FROM email_changes WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Expired and used links are only kept a while for telling a reused link
/// from a forged one.
pub async fn prune(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, Error> {
    Ok(
        sqlx::query("DELETE FROM email_changes WHERE expires_at < $1")
            .bind(before)
            .execute(db)
            .await?
            .rows_affected(),
    )
}
