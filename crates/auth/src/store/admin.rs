//! The admin console's SQL: the user list, disabling and enabling, roles
//! from the configuration, and the audit log.

use crate::{domain::UserSearch, error::Error};
use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// One row of the user list.
#[derive(Debug, sqlx::FromRow)]
pub struct ListedUser {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Sessions not revoked and used since `live_since`.
    pub sessions: i64,
    /// The newest sign-in or refresh of any of its sessions.
    pub last_active_at: Option<DateTime<Utc>>,
}

/// Accounts whose email or display name contains `search` (all when it is
/// empty), newest first, at most `limit`. A session counts as open when it
/// is not revoked and was used after `live_since` (older ones can no longer
/// refresh).
pub async fn list_users(
    db: impl PgExecutor<'_>,
    search: &UserSearch,
    live_since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ListedUser>, Error> {
    Ok(sqlx::query_as::<_, ListedUser>(
        "SELECT u.id, u.email, u.display_name, u.role, u.created_at, u.disabled_at,
                COALESCE(s.open, 0) AS sessions, s.last_active_at
         FROM users u
         LEFT JOIN LATERAL (
             SELECT count(*) FILTER (WHERE revoked_at IS NULL AND last_used_at > $2) AS open,
                    max(last_used_at) AS last_active_at
             FROM sessions WHERE user_id = u.id
         ) s ON true
         WHERE $1 = '%%'
            OR u.email ILIKE $1 ESCAPE '\\'
            OR u.display_name ILIKE $1 ESCAPE '\\'
         ORDER BY u.created_at DESC, u.id DESC
         LIMIT $3",
    )
    .bind(search.like_pattern())
    .bind(live_since)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The account a console action is about, locked (`FOR UPDATE`) until the
/// transaction ends, so a sign-in racing the action waits for it (see
/// `users::lock_for_sign_in`).
#[derive(Debug, sqlx::FromRow)]
pub struct Target {
    pub id: UserId,
    pub email: String,
    pub disabled_at: Option<DateTime<Utc>>,
}

pub async fn lock_target(conn: &mut PgConnection, id: UserId) -> Result<Option<Target>, Error> {
    Ok(sqlx::query_as::<_, Target>(
        "SELECT id, email, disabled_at FROM users WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Disable (`Some(now)`) or enable (`None`) an account.
pub async fn set_disabled(
    conn: &mut PgConnection,
    id: UserId,
    at: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The caller of an admin route, as the database knows it now: an admin
/// whose account is not disabled, or `None`.
#[derive(Debug, sqlx::FromRow)]
pub struct Actor {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
}

pub async fn active_admin(db: impl PgExecutor<'_>, id: UserId) -> Result<Option<Actor>, Error> {
    Ok(sqlx::query_as::<_, Actor>(
        "SELECT id, email, display_name FROM users
         WHERE id = $1 AND role = 'admin' AND disabled_at IS NULL",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// An account whose role the configuration changed.
#[derive(Debug, sqlx::FromRow)]
pub struct RoleChange {
    pub id: UserId,
    pub email: String,
}

/// Apply `CONFAB_ADMIN_EMAILS`: accounts with a listed email become admins
/// (granted by the configuration); admins the configuration made whose
/// email is no longer listed lose the role. The first account's role is
/// never taken away here. Returns (granted, revoked).
pub async fn apply_admin_emails(
    conn: &mut PgConnection,
    emails: &[String],
) -> Result<(Vec<RoleChange>, Vec<RoleChange>), Error> {
    let granted = sqlx::query_as::<_, RoleChange>(
        "UPDATE users SET role = 'admin', role_granted_by = 'config'
         WHERE lower(email) = ANY($1) AND role <> 'admin'
         RETURNING id, email",
    )
    .bind(emails)
    .fetch_all(&mut *conn)
    .await?;
    let revoked = sqlx::query_as::<_, RoleChange>(
        "UPDATE users SET role = 'user', role_granted_by = NULL
         WHERE role_granted_by = 'config' AND NOT (lower(email) = ANY($1))
         RETURNING id, email",
    )
    .bind(emails)
    .fetch_all(&mut *conn)
    .await?;
    Ok((granted, revoked))
}

/// One audit entry to write.
pub struct NewEntry<'a> {
    /// `None`: the service itself.
    pub actor: Option<(UserId, &'a str)>,
    pub action: &'a str,
    pub target: Option<(UserId, &'a str)>,
    pub ip: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

pub async fn insert_entry(conn: &mut PgConnection, e: &NewEntry<'_>) -> Result<Uuid, Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO admin_audit
             (id, at, actor_id, actor_email, action, target_id, target_email, ip, request_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(e.at)
    .bind(e.actor.map(|a| a.0))
    .bind(e.actor.map(|a| a.1))
    .bind(e.action)
    .bind(e.target.map(|t| t.0))
    .bind(e.target.map(|t| t.1))
    .bind(e.ip)
    .bind(e.request_id)
    .bind(&e.detail)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

#[derive(Debug, sqlx::FromRow)]
pub struct Entry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_id: Option<UserId>,
    pub actor_email: Option<String>,
    pub action: String,
    pub target_id: Option<UserId>,
    pub target_email: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: serde_json::Value,
}

/// The newest entries first.
pub async fn list_entries(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Entry>, Error> {
    Ok(sqlx::query_as::<_, Entry>(
        "SELECT id, at, actor_id, actor_email, action, target_id, target_email, ip, request_id,
                detail
         FROM admin_audit ORDER BY at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A deleted account leaves the audit log: entries about it or by it keep
/// what happened and when, not who.
pub async fn forget_user(conn: &mut PgConnection, id: UserId) -> Result<(), Error> {
    sqlx::query(
        "UPDATE admin_audit SET target_id = NULL, target_email = NULL WHERE target_id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE admin_audit SET actor_id = NULL, actor_email = NULL WHERE actor_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
