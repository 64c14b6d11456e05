//! All SQL of the auth service. Functions take any executor (`&PgPool` or
//! `&mut *tx`), so handlers decide what shares a transaction and the SQL
//! stays here. Queries are checked at run time: there is no database at
//! build time, so `query!` macros are not used.

pub mod outbox;
pub mod refresh_tokens;
pub mod sessions;
pub mod signing_keys;
pub mod users;

use sqlx::PgPool;

/// Is the newest migration this binary knows applied? (`/readyz`)
pub async fn migrations_applied(pool: &PgPool) -> Result<(), String> {
    let expected = crate::MIGRATOR.iter().map(|m| m.version).max();
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?;
    match (expected, applied) {
        (None, _) => Ok(()),
        (Some(e), Some(a)) if a >= e => Ok(()),
        (Some(e), a) => Err(format!(
            "expected migration {e}, database is at {}",
            a.map_or("none".to_string(), |a| a.to_string())
        )),
    }
}
