//! All of the backend's SQL. Handlers and the socket gateway call these
//! functions; nothing else talks to the database.

pub mod admin;
pub mod billing;
pub mod deletion;
pub mod events;
pub mod export;
pub mod import;
pub mod messages;
pub mod profiles;
pub mod threads;

/// Is this error a violation of the named unique constraint or index?
pub fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some("23505") && d.constraint() == Some(constraint))
}
