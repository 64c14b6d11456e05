//! Shared pieces of the Confab services: configuration parsing, ids, token
//! verification, event types, Redis key layout, telemetry, HTTP plumbing,
//! Markdown rendering and the private PostgreSQL/Redis instances `confab up`
//! and the test harness start.

pub mod config;
pub mod db;
pub mod events;
pub mod http;
pub mod ids;
pub mod infra;
pub mod keys;
pub mod markdown;
pub mod telemetry;
pub mod tokens;

/// Name of the header that carries the request id between services.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
