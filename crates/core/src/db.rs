//! PostgreSQL connection helpers shared by the services and the harness.

use sqlx::{postgres::PgPoolOptions, ConnectOptions, Connection, PgPool};
use std::{str::FromStr, time::Duration};

/// `postgres://h/confab?x` + `auth` → `postgres://h/confab_auth?x`.
pub fn with_database_suffix(url: &str, suffix: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let name = u.path().trim_start_matches('/').to_string();
            let name = if name.is_empty() {
                "confab".to_string()
            } else {
                name
            };
            u.set_path(&format!("/{name}_{suffix}"));
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Replace the database name of a URL.
pub fn with_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// The database name in a URL.
pub fn database_name(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_string())
        .filter(|s| !s.is_empty())
}

/// Create the database named in `url` if it does not exist yet, by connecting
/// to the server's `postgres` database.
pub async fn ensure_database(url: &str) -> Result<(), sqlx::Error> {
    let name = database_name(url).unwrap_or_else(|| "confab".into());
    let admin = with_database(url, "postgres");
    let mut conn = sqlx::postgres::PgConnectOptions::from_str(&admin)?
        .disable_statement_logging()
        .connect()
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE {}", quote_ident(&name));
        if let Err(e) = sqlx::query(&sql).execute(&mut conn).await {
            // Two processes starting at once may race to create it.
            let dup = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04" || c == "23505");
            if !dup {
                return Err(e);
            }
        }
    }
    conn.close().await?;
    Ok(())
}

/// Quote an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The longest a request waits for a database connection: past it, the
/// request fails `unavailable` (503, retryable) instead of hanging while
/// PostgreSQL is away or every connection is busy.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle at least this long is checked (one round trip)
/// before it is handed out; one used more recently is not (see [`connect`]).
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Open a pool with a bounded wait, so a service that cannot reach its
/// database fails at start with a clear error instead of hanging.
///
/// sqlx checks every connection as it goes back to the pool (a `Sync`
/// round trip, off the caller's path) and, by default, again as it is
/// handed out — a second round trip on the path of every query, which was
/// a third of the PostgreSQL time before a chat reply starts (measured with
/// `strace` of the backend under `bench-load ttft`). Only connections idle
/// for [`CHECK_IDLE_AFTER`] are checked here: those are the ones a restart
/// of PostgreSQL may have cut; a dead one is then closed and another opened
/// (and a query on a connection cut in the last second fails once and
/// closes it, like any query cut mid-way).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let opts = sqlx::postgres::PgConnectOptions::from_str(url)?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(opts)
        .await
}

/// Create the database if needed and apply a service's migrations (each
/// service owns its migrations and runs them at start).
pub async fn migrate(
    url: &str,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::migrate::MigrateError;
    ensure_database(url).await.map_err(MigrateError::Execute)?;
    let mut conn = sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(MigrateError::Execute)?
        .disable_statement_logging()
        .connect()
        .await
        .map_err(MigrateError::Execute)?;
    migrator.run(&mut conn).await?;
    conn.close().await.map_err(MigrateError::Execute)?;
    Ok(())
}

/// How long a readiness query may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `SELECT 1`, bounded, for `/readyz`.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Is the newest migration `migrator` knows applied? (`/readyz`; a database
/// migrated by a newer binary is ready too.)
pub async fn migrations_applied(
    pool: &PgPool,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), String> {
    let expected = migrator.iter().map(|m| m.version).max();
    let applied = sqlx::query_scalar::<_, Option<i64>>(
        "SELECT max(version) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(pool);
    let applied = match tokio::time::timeout(CHECK_TIMEOUT, applied).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("timed out".into()),
    };
    match (expected, applied) {
        (None, _) => Ok(()),
        (Some(e), Some(a)) if a >= e => Ok(()),
        (Some(e), a) => Err(format!(
            "expected migration {e}, database is at {}",
            a.map_or("none".to_string(), |a| a.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keeps_query() {
        assert_eq!(
            with_database_suffix("postgres://a@h/db?sslmode=disable", "auth"),
            "postgres://a@h/db_auth?sslmode=disable"
        );
        assert_eq!(
            database_name("postgres://a@h/db_auth").as_deref(),
            Some("db_auth")
        );
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
