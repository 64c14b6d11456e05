//! What several Confab services share, and nothing else: configuration
//! parsing, ids, token verification, event types, the Redis key layout,
//! telemetry, HTTP plumbing and database helpers. Something only one service
//! needs lives in that service's crate (Markdown rendering in the backend);
//! the private PostgreSQL/Redis processes of `confab up` and the harness live
//! in `confab-infra`.

pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
pub mod ids;
pub mod keys;
pub mod outbox;
pub mod ratelimit;
pub mod redis_conn;
pub mod revocation;
pub mod sync;
pub mod telemetry;
pub mod tokens;

/// Name of the header that carries the request id between services.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
