use crate::error::Error;
use chrono::{DateTime, Utc};
use confab_core::events::Event;
use sqlx::{types::Json, PgExecutor};
use uuid::Uuid;

/// Records `event` to be relayed; call it inside the transaction that makes
/// the change the event describes.
pub async fn insert(db: impl PgExecutor<'_>, event: &Event) -> Result<(), Error> {
    sqlx::query("INSERT INTO outbox (id, type, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(event.id)
        .bind(event.kind.type_name())
        .bind(Json(event))
        .bind(event.occurred_at)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct Pending {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub payload: Json<serde_json::Value>,
}

/// Oldest unpublished events, locked; rows another relay holds are skipped
/// so several auth instances relay in parallel without waiting on each other.
pub async fn lock_pending(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Pending>, Error> {
    Ok(sqlx::query_as::<_, Pending>(
        "SELECT id, type, payload FROM outbox
         WHERE published_at IS NULL
         ORDER BY created_at, id
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Published rows are kept for inspection, except `user.deleted`: it names
/// a user who asked to be forgotten, and once relayed it has done its job.
pub async fn mark_published(
    db: &mut sqlx::PgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1) AND type = 'user.deleted'")
        .bind(ids)
        .execute(&mut *db)
        .await?;
    sqlx::query("UPDATE outbox SET published_at = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(now)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// Published rows are only kept for inspection; the stream is the record
/// consumers read.
pub async fn prune_published(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> Result<u64, Error> {
    Ok(
        sqlx::query("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
            .bind(before)
            .execute(db)
            .await?
            .rows_affected(),
    )
}
