//! Processed event ids: what makes applying an event idempotent.

use confab_core::ids::EventId;
use sqlx::{PgExecutor, PgPool};

/// Record that `id` is being applied. False when it was already recorded
/// (a redelivery): the caller then changes nothing. Call it in the
/// transaction that applies the event.
pub async fn record_processed<'e>(
    db: impl PgExecutor<'e>,
    id: EventId,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(event_type)
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Forget processed ids older than `days`.
pub async fn prune_processed(pool: &PgPool, days: i32) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM processed_events WHERE processed_at < now() - make_interval(days => $1)",
    )
    .bind(days)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}
