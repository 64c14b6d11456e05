use crate::{
    domain::{DisplayName, Email},
    error::{Error, ResultExt},
};
use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use sqlx::PgExecutor;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    /// `None` for an account made through a provider.
    pub password_hash: Option<String>,
    /// Grows by one with every change of the public profile (name, email,
    /// avatar, time zone); `user.updated` carries it.
    pub profile_version: i64,
    pub time_zone: Option<String>,
    pub avatar_id: Option<uuid::Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, display_name, password_hash, profile_version, time_zone, \
                       avatar_id, created_at, updated_at";

/// Fails with `EmailTaken` when the (normalised) address is already used,
/// even if a concurrent sign-up got there first.
pub async fn insert(
    db: impl PgExecutor<'_>,
    email: &Email,
    display_name: &DisplayName,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (id, email, display_name, password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         RETURNING {COLUMNS}"
    ))
    .bind(UserId::new())
    .bind(email.as_str())
    .bind(display_name.as_str())
    .bind(password_hash)
    .bind(now)
    .fetch_one(db)
    .await
    .on_constraint("users_email_key", || Error::EmailTaken)
}

/// An account made through an OpenID Connect provider: no password.
pub async fn insert_without_password(
    db: impl PgExecutor<'_>,
    email: &Email,
    display_name: &DisplayName,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (id, email, display_name, password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, NULL, $4, $4)
         RETURNING {COLUMNS}"
    ))
    .bind(UserId::new())
    .bind(email.as_str())
    .bind(display_name.as_str())
    .bind(now)
    .fetch_one(db)
    .await
    .on_constraint("users_email_key", || Error::EmailTaken)
}

pub async fn find_by_email(db: impl PgExecutor<'_>, email: &Email) -> Result<Option<User>, Error> {
    Ok(sqlx::query_as::<_, User>(&format!(
        "SELECT {COLUMNS} FROM users WHERE lower(email) = $1"
    ))
    .bind(email.as_str())
    .fetch_optional(db)
    .await?)
}

pub async fn find(db: impl PgExecutor<'_>, id: UserId) -> Result<Option<User>, Error> {
    Ok(
        sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// Delete the user, locked first (`FOR UPDATE`), with their sessions and
/// refresh tokens (cascade) and every outbox row that names them — pending
/// or kept after publishing — since those carry their email and name.
/// Returns the ids of the sessions that existed, so the caller can revoke
/// them in Redis; `None` when there is no such user.
pub async fn delete(
    conn: &mut sqlx::PgConnection,
    id: UserId,
) -> Result<Option<Vec<confab_core::ids::SessionId>>, Error> {
    let found: Option<UserId> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Ok(None);
    }
    let sessions = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM outbox WHERE payload -> 'data' ->> 'user_id' = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(sessions))
}

/// A change of the public profile; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileUpdate<'a> {
    pub display_name: Option<&'a DisplayName>,
    /// `Some(None)` clears it (the browser's own zone).
    pub time_zone: Option<Option<&'a str>>,
    /// `Some(None)`: back to the initials.
    pub avatar_id: Option<Option<uuid::Uuid>>,
    pub email: Option<&'a Email>,
}

/// Apply `change` and bump the profile version; the caller writes
/// `user.updated` with the returned row in the same transaction. The row
/// lock this takes orders concurrent changes of one user, and so their
/// events.
pub async fn update_profile(
    db: impl PgExecutor<'_>,
    id: UserId,
    change: &ProfileUpdate<'_>,
    now: DateTime<Utc>,
) -> Result<Option<User>, Error> {
    sqlx::query_as::<_, User>(&format!(
        "UPDATE users SET
           display_name = COALESCE($2, display_name),
           time_zone = CASE WHEN $3 THEN $4 ELSE time_zone END,
           avatar_id = CASE WHEN $5 THEN $6 ELSE avatar_id END,
           email = COALESCE($7, email),
           profile_version = profile_version + 1,
           updated_at = $8
         WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(change.display_name.map(DisplayName::as_str))
    .bind(change.time_zone.is_some())
    .bind(change.time_zone.flatten())
    .bind(change.avatar_id.is_some())
    .bind(change.avatar_id.flatten())
    .bind(change.email.map(Email::as_str))
    .bind(now)
    .fetch_optional(db)
    .await
    .on_constraint("users_email_key", || Error::EmailTaken)
}
