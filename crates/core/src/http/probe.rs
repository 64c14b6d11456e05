//! The dependency probe: pings PostgreSQL and Redis every few seconds and
//! exports the answers as `dependency_up{dependency="database"|"redis"}`
//! (1 reachable, 0 not), so Prometheus can alert on an unreachable
//! dependency without anyone polling `/readyz`.

use std::time::Duration;

/// How often the dependencies are pinged (each ping is bounded by its own
/// time-out, 2 s for the database and the Redis response time-out).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Ping both dependencies now and set their gauges; returns what was found.
pub async fn probe_once(
    pool: &sqlx::PgPool,
    redis: &redis::aio::ConnectionManager,
) -> [(&'static str, bool); 2] {
    let (database, redis) = tokio::join!(crate::db::ping(pool), crate::redis_conn::ping(redis));
    let found = [("database", database), ("redis", redis)];
    found.map(|(name, r)| {
        if let Err(e) = &r {
            tracing::warn!(dependency = name, error = %e, "dependency unreachable");
        }
        metrics::gauge!("dependency_up", "dependency" => name).set(if r.is_ok() {
            1.0
        } else {
            0.0
        });
        (name, r.is_ok())
    })
}

/// Probe forever, every [`PROBE_INTERVAL`]; the caller stops it by dropping
/// or aborting the future.
pub async fn watch(pool: sqlx::PgPool, redis: redis::aio::ConnectionManager) {
    loop {
        probe_once(&pool, &redis).await;
        crate::clock::sleep(PROBE_INTERVAL).await;
    }
}
