//! Profiles and default workspaces. A profile is created from verified token
//! claims on a user's first request (the backend never waits for the
//! `user.registered` event) and reconciled when the event arrives.

use chrono::{DateTime, Utc};
use confab_core::ids::{UserId, WorkspaceId};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Profile {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub is_default: bool,
}

/// What `upsert` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The profile and default workspace exist (now).
    Present,
    /// The account was deleted: nothing was (or ever will be) created.
    Deleted,
}

/// Create the profile and default workspace if missing. With `overwrite`, an
/// existing profile takes the given email and name (the event is the
/// authority; token claims only fill a gap). A deleted account is never
/// re-created.
pub async fn upsert(
    pool: &PgPool,
    user: UserId,
    email: &str,
    display_name: &str,
    overwrite: bool,
) -> Result<Upsert, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let r = upsert_in(&mut tx, user, email, display_name, overwrite).await?;
    tx.commit().await?;
    Ok(r)
}

/// `upsert` inside the caller's transaction.
pub async fn upsert_in(
    conn: &mut PgConnection,
    user: UserId,
    email: &str,
    display_name: &str,
    overwrite: bool,
) -> Result<Upsert, sqlx::Error> {
    // Under the same lock as account deletion: once the tombstone is
    // committed this sees it, and a deletion waits for this to finish.
    super::deletion::lock_user(&mut *conn, user).await?;
    if super::deletion::is_deleted(&mut *conn, user).await? {
        return Ok(Upsert::Deleted);
    }
    let sql = if overwrite {
        "INSERT INTO profiles (user_id, email, display_name) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
           SET email = EXCLUDED.email, display_name = EXCLUDED.display_name, updated_at = now()"
    } else {
        "INSERT INTO profiles (user_id, email, display_name) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO NOTHING"
    };
    sqlx::query(sql)
        .bind(user)
        .bind(email)
        .bind(display_name)
        .execute(&mut *conn)
        .await?;
    ensure_default_workspace(&mut *conn, user).await?;
    Ok(Upsert::Present)
}

pub async fn ensure_default_workspace<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO workspaces (id, owner_id, name, is_default) VALUES ($1, $2, 'Personal', true)
         ON CONFLICT (owner_id) WHERE is_default DO NOTHING",
    )
    .bind(WorkspaceId::new())
    .bind(user)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, user: UserId) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, email, display_name, plan, created_at, updated_at FROM profiles WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await
}

pub async fn default_workspace<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
) -> Result<Option<Workspace>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, is_default FROM workspaces WHERE owner_id = $1 AND is_default")
        .bind(user)
        .fetch_optional(db)
        .await
}
