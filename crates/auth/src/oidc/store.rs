//! SQL for sign-ins through providers: started flows, external identities
//! and links waiting for a password.

use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use sqlx::PgExecutor;
use uuid::Uuid;

pub struct NewFlow<'a> {
    pub state_hash: &'a [u8],
    pub browser_hash: &'a [u8],
    pub provider: &'a str,
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
    pub link_user_id: Option<UserId>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_flow(db: impl PgExecutor<'_>, f: NewFlow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_flows (state_hash, browser_hash, provider, nonce, pkce_verifier,
                                 link_user_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(f.state_hash)
    .bind(f.browser_hash)
    .bind(f.provider)
    .bind(f.nonce)
    .bind(f.pkce_verifier)
    .bind(f.link_user_id)
    .bind(f.now)
    .bind(f.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Rows long past their expiry say nothing useful any more.
pub async fn prune(db: &sqlx::PgPool, before: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_flows WHERE expires_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    sqlx::query("DELETE FROM oidc_pending_links WHERE expires_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct Flow {
    pub browser_hash: Vec<u8>,
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub link_user_id: Option<UserId>,
    pub expires_at: DateTime<Utc>,
    /// The `used_at` before this call: `Some` means a replay.
    pub previously_used: Option<DateTime<Utc>>,
}

/// Marks the flow used and returns it as it was; a second call for the same
/// state sees `previously_used`. One statement, so two callbacks racing
/// with one state cannot both win.
pub async fn consume_flow(
    db: impl PgExecutor<'_>,
    state_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<Flow>, sqlx::Error> {
    sqlx::query_as::<_, Flow>(
        "UPDATE oidc_flows f SET used_at = COALESCE(f.used_at, $2)
         FROM (SELECT state_hash, used_at FROM oidc_flows WHERE state_hash = $1 FOR UPDATE) old
         WHERE f.state_hash = old.state_hash
         RETURNING f.browser_hash, f.provider, f.nonce, f.pkce_verifier, f.link_user_id,
                   f.expires_at, old.used_at AS previously_used",
    )
    .bind(state_hash)
    .bind(now)
    .fetch_optional(db)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Identity {
    pub id: Uuid,
    pub user_id: UserId,
    pub provider: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: DateTime<Utc>,
}

const IDENTITY_COLUMNS: &str = "id, user_id, provider, email, created_at, last_login_at";

pub async fn find_identity(
    db: impl PgExecutor<'_>,
    issuer: &str,
    subject: &str,
) -> Result<Option<Identity>, sqlx::Error> {
    sqlx::query_as::<_, Identity>(&format!(
        "SELECT {IDENTITY_COLUMNS} FROM external_identities WHERE issuer = $1 AND subject = $2 FOR UPDATE"
    ))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db)
    .await
}

pub struct NewIdentity<'a> {
    pub user_id: UserId,
    pub provider: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub now: DateTime<Utc>,
}

pub async fn insert_identity(
    db: impl PgExecutor<'_>,
    i: NewIdentity<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO external_identities (id, user_id, provider, issuer, subject, email, created_at, last_login_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(i.user_id)
    .bind(i.provider)
    .bind(i.issuer)
    .bind(i.subject)
    .bind(i.email)
    .bind(i.now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn touch_identity(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE external_identities SET last_login_at = $2, email = COALESCE($3, email) WHERE id = $1")
        .bind(id)
        .bind(now)
        .bind(email)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn identities_of(
    db: impl PgExecutor<'_>,
    user_id: UserId,
) -> Result<Vec<Identity>, sqlx::Error> {
    sqlx::query_as::<_, Identity>(&format!(
        "SELECT {IDENTITY_COLUMNS} FROM external_identities WHERE user_id = $1 ORDER BY created_at"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await
}

pub async fn delete_identity(
    db: impl PgExecutor<'_>,
    user_id: UserId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM external_identities WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(db)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Locks the user's row so an unlink and another unlink (or a password
/// change) cannot both decide "another way to sign in remains".
pub async fn lock_sign_in_ways(
    db: impl PgExecutor<'_>,
    user_id: UserId,
) -> Result<Option<(bool, i64)>, sqlx::Error> {
    sqlx::query_as::<_, (bool, i64)>(
        "SELECT u.password_hash IS NOT NULL,
                (SELECT count(*) FROM external_identities i WHERE i.user_id = u.id)
         FROM users u WHERE u.id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// The user of a refresh token that can still be used: the browser is
/// signed in (used for linking from settings, where the cookie is the proof).
pub async fn signed_in_user(
    db: impl PgExecutor<'_>,
    refresh_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<UserId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.user_id FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
         WHERE rt.token_hash = $1 AND rt.used_at IS NULL AND rt.expires_at > $2 AND s.revoked_at IS NULL",
    )
    .bind(refresh_hash)
    .bind(now)
    .fetch_optional(db)
    .await
}

pub struct NewPendingLink<'a> {
    pub token_hash: &'a [u8],
    pub browser_hash: &'a [u8],
    pub user_id: UserId,
    pub provider: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_pending_link(
    db: impl PgExecutor<'_>,
    l: NewPendingLink<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_pending_links (token_hash, browser_hash, user_id, provider, issuer, subject,
                                         email, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(l.token_hash)
    .bind(l.browser_hash)
    .bind(l.user_id)
    .bind(l.provider)
    .bind(l.issuer)
    .bind(l.subject)
    .bind(l.email)
    .bind(l.now)
    .bind(l.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct PendingLink {
    pub browser_hash: Vec<u8>,
    pub user_id: UserId,
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub attempts: i32,
    pub expires_at: DateTime<Utc>,
    pub password_hash: Option<String>,
}

pub async fn lock_pending_link(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> Result<Option<PendingLink>, sqlx::Error> {
    sqlx::query_as::<_, PendingLink>(
        "SELECT l.browser_hash, l.user_id, l.provider, l.issuer, l.subject, l.email, l.attempts,
                l.expires_at, u.password_hash
         FROM oidc_pending_links l JOIN users u ON u.id = l.user_id
         WHERE l.token_hash = $1 FOR UPDATE OF l",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

pub async fn count_link_attempt(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oidc_pending_links SET attempts = attempts + 1 WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_pending_link(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oidc_pending_links WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Name and email from the provider, when they differ from the account's.
/// Returns the new profile (email, name, version, time zone), or `None`
/// when nothing changed.
pub async fn update_profile(
    db: impl PgExecutor<'_>,
    user_id: UserId,
    email: &str,
    display_name: &str,
    now: DateTime<Utc>,
) -> Result<Option<(String, String, i64, Option<String>)>, sqlx::Error> {
    sqlx::query_as::<_, (String, String, i64, Option<String>)>(
        "UPDATE users SET email = $2, display_name = $3, updated_at = $4,
                          profile_version = profile_version + 1
         WHERE id = $1 AND (email IS DISTINCT FROM $2 OR display_name IS DISTINCT FROM $3)
         RETURNING email, display_name, profile_version, time_zone",
    )
    .bind(user_id)
    .bind(email)
    .bind(display_name)
    .bind(now)
    .fetch_optional(db)
    .await
}
