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
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, display_name, password_hash, created_at, updated_at";

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
