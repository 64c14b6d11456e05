//! Profiles and default workspaces. A profile is created from verified token
//! claims on a user's first request (the backend never waits for the
//! `user.registered` event) and reconciled when the event arrives.

use chrono::{DateTime, Utc};
use confab_core::ids::{UserId, WorkspaceId};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Profile {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    /// Auth's path of the uploaded avatar; `None`: the initials.
    pub avatar_url: Option<String>,
    /// IANA name; `None`: the browser's own zone.
    pub time_zone: Option<String>,
    pub plan: String,
    /// Auth's profile version of the newest event applied (0: made from
    /// token claims before any event arrived).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "user_id, email, display_name, avatar_url, time_zone, plan, version, created_at, updated_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub is_default: bool,
    /// True once the owner renamed it: a new display name leaves it alone.
    pub custom_name: bool,
}

/// The default workspace's name while its owner has not renamed it.
pub fn derived_workspace_name(display_name: &str) -> String {
    format!("{display_name}'s workspace")
}

/// What `upsert` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The profile and default workspace exist (now).
    Present,
    /// The account was deleted: nothing was (or ever will be) created.
    Deleted,
}

/// Create the profile and default workspace from token claims if missing;
/// an existing profile is left as it is (events are the authority, claims
/// only fill a gap). A deleted account is never re-created.
pub async fn upsert(
    pool: &PgPool,
    user: UserId,
    email: &str,
    display_name: &str,
) -> Result<Upsert, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Under the same lock as account deletion: once the tombstone is
    // committed this sees it, and a deletion waits for this to finish.
    super::deletion::lock_user(&mut tx, user).await?;
    if super::deletion::is_deleted(&mut tx, user).await? {
        return Ok(Upsert::Deleted);
    }
    sqlx::query(
        "INSERT INTO profiles (user_id, email, display_name) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user)
    .bind(email)
    .bind(display_name)
    .execute(&mut *tx)
    .await?;
    ensure_default_workspace(&mut *tx, user, display_name).await?;
    tx.commit().await?;
    Ok(Upsert::Present)
}

/// A profile as an event announces it.
#[derive(Debug, Clone, Copy)]
pub struct ProfileChange<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub avatar_url: Option<&'a str>,
    pub time_zone: Option<&'a str>,
    pub version: i64,
}

/// What `apply_change` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// The profile already holds this version or a newer one.
    Stale,
    /// The account was deleted.
    Deleted,
}

/// Apply an announced profile if it is newer than the stored one (creating
/// the profile if this is the first the backend hears of the user), and
/// rename the default workspace after it unless the owner renamed it.
pub async fn apply_change(
    conn: &mut PgConnection,
    user: UserId,
    change: &ProfileChange<'_>,
) -> Result<Applied, sqlx::Error> {
    super::deletion::lock_user(&mut *conn, user).await?;
    if super::deletion::is_deleted(&mut *conn, user).await? {
        return Ok(Applied::Deleted);
    }
    let changed = sqlx::query(
        "INSERT INTO profiles (user_id, email, display_name, avatar_url, time_zone, version)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id) DO UPDATE
           SET email = EXCLUDED.email, display_name = EXCLUDED.display_name,
               avatar_url = EXCLUDED.avatar_url, time_zone = EXCLUDED.time_zone,
               version = EXCLUDED.version, updated_at = now()
           WHERE profiles.version < EXCLUDED.version",
    )
    .bind(user)
    .bind(change.email)
    .bind(change.display_name)
    .bind(change.avatar_url)
    .bind(change.time_zone)
    .bind(change.version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    ensure_default_workspace(&mut *conn, user, change.display_name).await?;
    if changed == 0 {
        return Ok(Applied::Stale);
    }
    sqlx::query(
        "UPDATE workspaces SET name = $2 WHERE owner_id = $1 AND is_default AND NOT custom_name",
    )
    .bind(user)
    .bind(derived_workspace_name(change.display_name))
    .execute(&mut *conn)
    .await?;
    Ok(Applied::Changed)
}

pub async fn ensure_default_workspace<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    display_name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO workspaces (id, owner_id, name, is_default) VALUES ($1, $2, $3, true)
         ON CONFLICT (owner_id) WHERE is_default DO NOTHING",
    )
    .bind(WorkspaceId::new())
    .bind(user)
    .bind(derived_workspace_name(display_name))
    .execute(db)
    .await?;
    Ok(())
}

/// The owner names the default workspace; from now on it keeps that name.
pub async fn rename_default_workspace(
    pool: &PgPool,
    user: UserId,
    name: &str,
) -> Result<Option<Workspace>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE workspaces SET name = $2, custom_name = true
         WHERE owner_id = $1 AND is_default
         RETURNING id, name, is_default, custom_name",
    )
    .bind(user)
    .bind(name)
    .fetch_optional(pool)
    .await
}

pub async fn get(pool: &PgPool, user: UserId) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM profiles WHERE user_id = $1"
    ))
    .bind(user)
    .fetch_optional(pool)
    .await
}

/// The user's plan id (`None`: no profile).
pub async fn plan_of<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT plan FROM profiles WHERE user_id = $1")
        .bind(user)
        .fetch_optional(db)
        .await
}

/// Put the user on `plan` (row-locked, in the caller's transaction);
/// returns the plan before, `None` when there is no profile.
pub async fn set_plan(
    tx: &mut PgConnection,
    user: UserId,
    plan: &str,
) -> Result<Option<String>, sqlx::Error> {
    let previous: Option<String> =
        sqlx::query_scalar("SELECT plan FROM profiles WHERE user_id = $1 FOR UPDATE")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    if previous.as_deref().is_some_and(|p| p != plan) {
        sqlx::query("UPDATE profiles SET plan = $2, updated_at = now() WHERE user_id = $1")
            .bind(user)
            .bind(plan)
            .execute(&mut *tx)
            .await?;
    }
    Ok(previous)
}

pub async fn default_workspace<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
) -> Result<Option<Workspace>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, is_default, custom_name FROM workspaces WHERE owner_id = $1 AND is_default",
    )
        .bind(user)
        .fetch_optional(db)
        .await
}
