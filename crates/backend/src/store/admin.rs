//! The admin console's SQL in the backend: what it knows of each account
//! (plan, last message).

use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use sqlx::PgExecutor;

#[derive(Debug, sqlx::FromRow)]
pub struct ProfileSummary {
    pub user_id: UserId,
    pub plan: String,
    /// The newest message the user sent.
    pub last_message_at: Option<DateTime<Utc>>,
}

/// The profiles among `ids` (ids without a profile are left out).
pub async fn profile_summaries(
    db: impl PgExecutor<'_>,
    ids: &[UserId],
) -> Result<Vec<ProfileSummary>, sqlx::Error> {
    sqlx::query_as::<_, ProfileSummary>(
        "SELECT p.user_id, p.plan,
                (SELECT max(m.created_at) FROM messages m
                 WHERE m.user_id = p.user_id AND m.role = 'user') AS last_message_at
         FROM profiles p
         WHERE p.user_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

/// One audit entry to write (the backend's actions: plan changes).
pub struct NewEntry<'a> {
    pub actor: (UserId, &'a str),
    pub action: &'a str,
    pub target: (UserId, Option<&'a str>),
    pub ip: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub detail: serde_json::Value,
}

pub async fn insert_entry(
    conn: &mut sqlx::PgConnection,
    e: &NewEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit
             (id, actor_id, actor_email, action, target_id, target_email, ip, request_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(e.actor.0)
    .bind(e.actor.1)
    .bind(e.action)
    .bind(e.target.0)
    .bind(e.target.1)
    .bind(e.ip)
    .bind(e.request_id)
    .bind(&e.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct Entry {
    pub id: uuid::Uuid,
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
pub async fn list_entries(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as::<_, Entry>(
        "SELECT id, at, actor_id, actor_email, action, target_id, target_email, ip, request_id,
                detail
         FROM admin_audit ORDER BY at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A deleted account leaves the audit log: what happened stays, not who.
pub async fn forget_user(conn: &mut sqlx::PgConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE admin_audit SET target_id = NULL, target_email = NULL WHERE target_id = $1",
    )
    .bind(user)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE admin_audit SET actor_id = NULL, actor_email = NULL WHERE actor_id = $1")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The account's email as the backend knows it (for the audit entry).
pub async fn email_of(
    db: impl PgExecutor<'_>,
    user: UserId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM profiles WHERE user_id = $1")
        .bind(user)
        .fetch_optional(db)
        .await
}
