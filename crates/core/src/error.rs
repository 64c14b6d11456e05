//! The infrastructure failures every service can meet (database, migrations,
//! Redis, I/O, a dependency that did not answer in time). Each service's own
//! error type wraps [`InfraError`] in one variant and maps it to a bare 500:
//! the details go to the logs, never to the client.

/// A failure of something a service depends on, not of the request.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An HTTP client could not be set up (its TLS backend failed to load).
    #[error("HTTP client set-up failed: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// A dependency did not answer within its bound (the operation is named).
    #[error("{0} timed out")]
    Timeout(&'static str),
}

impl InfraError {
    /// What a client is told about any infrastructure failure.
    pub const PUBLIC_MESSAGE: &'static str = "Something went wrong on our side. Please try again.";

    /// What a client is told when a store Confab depends on is not
    /// answering ([`InfraError::is_unavailable`]).
    pub const UNAVAILABLE_MESSAGE: &'static str =
        "Confab's storage is not answering right now, so nothing was saved. Please try again in a moment.";

    /// The database or Redis is unreachable, restarting or too slow — a
    /// passing condition the client should retry after a moment (code
    /// `unavailable`, HTTP 503) — rather than a bug or a bad request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            InfraError::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // admin_shutdown, crash_shutdown, cannot_connect_now,
                // too_many_connections: PostgreSQL going away or full.
                sqlx::Error::Database(db) => matches!(
                    db.code().as_deref(),
                    Some("57P01" | "57P02" | "57P03" | "53300")
                ),
                _ => false,
            },
            InfraError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            InfraError::Timeout(_) => true,
            InfraError::Migrate(_) | InfraError::Io(_) | InfraError::HttpClient(_) => false,
        }
    }

    /// The database error, when this is one (for constraint checks).
    pub fn as_database(&self) -> Option<&sqlx::Error> {
        match self {
            InfraError::Database(e) => Some(e),
            _ => None,
        }
    }
}

/// Run `fut`, failing with [`InfraError::Timeout`] naming `what` after `limit`.
pub async fn within<T, E: Into<InfraError>>(
    limit: std::time::Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, InfraError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(InfraError::Timeout(what)),
    }
}

/// `From` conversions from each infrastructure error into a service's error
/// type, through its `Infra(InfraError)` variant, so `?` works on sqlx and
/// redis results without each service repeating them.
#[macro_export]
macro_rules! infra_error_conversions {
    ($error:ty) => {
        impl From<$crate::error::InfraError> for $error {
            fn from(e: $crate::error::InfraError) -> Self {
                Self::Infra(e)
            }
        }
        impl From<sqlx::Error> for $error {
            fn from(e: sqlx::Error) -> Self {
                Self::Infra(e.into())
            }
        }
        impl From<sqlx::migrate::MigrateError> for $error {
            fn from(e: sqlx::migrate::MigrateError) -> Self {
                Self::Infra(e.into())
            }
        }
        impl From<redis::RedisError> for $error {
            fn from(e: redis::RedisError) -> Self {
                Self::Infra(e.into())
            }
        }
        impl From<std::io::Error> for $error {
            fn from(e: std::io::Error) -> Self {
                Self::Infra(e.into())
            }
        }
    };
}
