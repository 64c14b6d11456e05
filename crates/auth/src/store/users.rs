use crate::{
    domain::{DisplayName, Email, RoleGrant},
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
    /// `user` or `admin` (see `confab_core::tokens::Role`).
    pub role: String,
    /// Set while an administrator has the account disabled.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn role(&self) -> confab_core::tokens::Role {
        confab_core::tokens::Role::from_stored(&self.role)
    }
}

const COLUMNS: &str = "id, email, display_name, password_hash, profile_version, time_zone, \
                       avatar_id, created_at, updated_at, role, disabled_at";

/// Whether the installation has no account yet, decided so that of two
/// concurrent first sign-ups only one sees it: when the table looks empty,
/// a transaction-scoped advisory lock is taken and the question asked
/// again (the other sign-up waits for the first to commit, then sees its
/// row). Call inside the transaction that inserts the account.
pub async fn is_first_account(conn: &mut sqlx::PgConnection) -> Result<bool, Error> {
    let exists = "SELECT EXISTS (SELECT 1 FROM users)";
    if sqlx::query_scalar::<_, bool>(exists)
        .fetch_one(&mut *conn)
        .await?
    {
        return Ok(false);
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('confab.auth.first_account'))")
        .execute(&mut *conn)
        .await?;
    Ok(!sqlx::query_scalar::<_, bool>(exists)
        .fetch_one(&mut *conn)
        .await?)
}

/// Lock the account for a new session (`FOR SHARE`): an administrator
/// disabling it at the same moment either waits for this sign-in to commit
/// (and then ends its session too) or has committed first, and the sign-in
/// is refused. `AccountDisabled` while it is disabled.
pub async fn lock_for_sign_in(conn: &mut sqlx::PgConnection, id: UserId) -> Result<(), Error> {
    let disabled: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT disabled_at FROM users WHERE id = $1 FOR SHARE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    match disabled {
        Some(None) => Ok(()),
        Some(Some(_)) => Err(Error::AccountDisabled),
        None => Err(Error::Internal(
            "a session for an account that does not exist".into(),
        )),
    }
}

/// Fails with `EmailTaken` when the (normalised) address is already used,
/// even if a concurrent sign-up got there first.
pub async fn insert(
    db: impl PgExecutor<'_>,
    email: &Email,
    display_name: &DisplayName,
    password_hash: &str,
    grant: RoleGrant,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (id, email, display_name, password_hash, created_at, updated_at,
                            role, role_granted_by)
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7)
         RETURNING {COLUMNS}"
    ))
    .bind(UserId::new())
    .bind(email.as_str())
    .bind(display_name.as_str())
    .bind(password_hash)
    .bind(now)
    .bind(grant.role().as_str())
    .bind(grant.as_stored())
    .fetch_one(db)
    .await
    .on_constraint("users_email_key", || Error::EmailTaken)
}

/// An account made through an OpenID Connect provider: no password.
pub async fn insert_without_password(
    db: impl PgExecutor<'_>,
    email: &Email,
    display_name: &DisplayName,
    grant: RoleGrant,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (id, email, display_name, password_hash, created_at, updated_at,
                            role, role_granted_by)
         VALUES ($1, $2, $3, NULL, $4, $4, $5, $6)
         RETURNING {COLUMNS}"
    ))
    .bind(UserId::new())
    .bind(email.as_str())
    .bind(display_name.as_str())
    .bind(now)
    .bind(grant.role().as_str())
    .bind(grant.as_stored())
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
/// or kept after publishing — since those carry their email and name; the
/// audit log keeps its entries about them, without their id or email.
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
    super::admin::forget_user(&mut *conn, id).await?;
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
