//! The transactional outbox every publishing service shares (auth and the
//! backend use this one module): an event is inserted into the service's own
//! `outbox` table in the same transaction as the change it announces, and a
//! relay task moves committed rows to the Redis events stream.
//!
//! Writing the event with the change means an event exists if and only if
//! the change happened. The relay publishes at least once: it locks a batch,
//! `XADD`s it, then marks the rows published and commits. A crash between the
//! `XADD` and the commit (injectable with [`RelayFault::ExitAfterPublish`])
//! leaves the rows unpublished, so the next relay sends them again; consumers
//! dedupe by event id, so a second copy changes nothing.
//!
//! Order: rows are relayed in insertion order (`seq`). Two changes of one
//! user are serialised by that user's row lock, so their events are inserted,
//! and relayed, in the order they happened. Several relays (instances) may
//! interleave batches; consumers keep per-user order with the version the
//! events carry (`user.updated`), not with stream positions.

use crate::{
    clock::{self, Clock},
    error::InfraError,
    events::Event,
};
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use sqlx::{types::Json, PgExecutor, PgPool};
use std::{sync::Arc, time::Duration};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the relay looks for rows even when nobody nudged it: covers
/// events written by another instance and retries after an error.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const BATCH: i64 = 100;
/// Approximate cap of the stream (`MAXLEN ~`): enough for a consumer that
/// was down for a long while to catch up, bounded so Redis cannot fill up.
pub const STREAM_MAXLEN: u64 = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const KEEP_PUBLISHED: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Records `event` to be relayed; call it inside the transaction that makes
/// the change the event describes.
pub async fn insert(db: impl PgExecutor<'_>, event: &Event) -> Result<(), sqlx::Error> {
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
struct Pending {
    id: Uuid,
    #[sqlx(rename = "type")]
    kind: String,
    payload: Json<serde_json::Value>,
}

/// A fault the relay can be told to have, so a test can prove that the
/// pipeline survives it. Never set in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayFault {
    #[default]
    None,
    /// Exit the process right after a batch was added to the stream and
    /// before it was marked published: the crash at-least-once exists for.
    ExitAfterPublish,
}

impl RelayFault {
    /// `CONFAB_FAULT_RELAY`: unset/empty, or `exit_after_publish`.
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        match env.string("CONFAB_FAULT_RELAY", "").as_str() {
            "" => Ok(RelayFault::None),
            "exit_after_publish" => Ok(RelayFault::ExitAfterPublish),
            _ => Err(env.invalid(
                "CONFAB_FAULT_RELAY",
                "must be empty or exit_after_publish (a test-only fault)",
            )),
        }
    }
}

/// What one service's relay needs.
pub struct RelaySettings {
    /// Names the service in metrics and logs (`auth`, `backend`).
    pub service: &'static str,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    /// The stream the events go to (`Keys::events_stream`).
    pub stream: String,
    pub signal: OutboxSignal,
    pub clock: Clock,
    /// Event types whose rows are deleted instead of kept once published
    /// (`user.deleted` names a user who asked to be forgotten).
    pub erase_when_published: &'static [&'static str],
    pub fault: RelayFault,
}

/// Lets handlers wake the relay right after a commit, so an event reaches
/// the stream in milliseconds instead of waiting for the next poll.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// The running relay task; stopped by cancelling the token it was given.
pub struct Relay {
    handle: JoinHandle<()>,
}

impl Relay {
    pub fn spawn(settings: RelaySettings, shutdown: CancellationToken) -> Self {
        let handle = tokio::spawn(async move {
            let s = settings;
            let mut last_prune = clock::instant();
            loop {
                let drained = match relay_batch(&s).await {
                    Ok(n) => n < BATCH as usize,
                    Err(e) => {
                        tracing::warn!(service = s.service, error = %e, "outbox relay failed; will retry");
                        true
                    }
                };
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = clock::instant();
                    let before = s.clock.now() - KEEP_PUBLISHED;
                    if let Err(e) = prune_published(&s.pool, before).await {
                        tracing::warn!(error = %e, "pruning the outbox failed");
                    }
                }
                if let Err(e) = report_backlog(&s).await {
                    tracing::debug!(error = %e, "could not measure the outbox backlog");
                }
                if !drained {
                    // A full batch: there may be more, go again at once.
                    if shutdown.is_cancelled() {
                        break;
                    }
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = s.signal.0.notified() => {}
                    _ = clock::sleep(POLL_INTERVAL) => {}
                }
            }
            tracing::debug!(service = s.service, "outbox relay stopped");
        });
        Self { handle }
    }

    /// Wait for the task to finish after its token was cancelled. A relay
    /// stuck on a dead connection is abandoned after `timeout`: its
    /// transaction rolls back and another instance (or the next start)
    /// relays those rows.
    pub async fn join(self, timeout: Duration) {
        let abort = self.handle.abort_handle();
        if tokio::time::timeout(timeout, self.handle).await.is_err() {
            abort.abort();
        }
    }
}

/// Relays one batch; returns how many events it published.
async fn relay_batch(s: &RelaySettings) -> Result<usize, InfraError> {
    let mut tx = s.pool.begin().await?;
    // Rows another relay holds are skipped, so several instances relay in
    // parallel without waiting on each other.
    let pending = sqlx::query_as::<_, Pending>(
        "SELECT id, type, payload FROM outbox
         WHERE published_at IS NULL
         ORDER BY seq
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if pending.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for event in &pending {
        pipe.cmd("XADD")
            .arg(&s.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_MAXLEN)
            .arg("*")
            .arg("id")
            .arg(event.id.to_string())
            .arg("type")
            .arg(&event.kind)
            .arg("payload")
            .arg(event.payload.0.to_string())
            .ignore();
    }
    let mut conn = s.redis.clone();
    crate::error::within(
        Duration::from_secs(5),
        "publishing outbox events",
        pipe.query_async::<()>(&mut conn),
    )
    .await?;
    if s.fault == RelayFault::ExitAfterPublish {
        tracing::error!(
            count = pending.len(),
            "fault injected: exiting between publishing and marking the outbox"
        );
        std::process::exit(86);
    }
    let ids: Vec<_> = pending.iter().map(|e| e.id).collect();
    let erase: Vec<String> = s
        .erase_when_published
        .iter()
        .map(|t| t.to_string())
        .collect();
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1) AND type = ANY($2)")
        .bind(&ids)
        .bind(&erase)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE outbox SET published_at = $2 WHERE id = ANY($1)")
        .bind(&ids)
        .bind(s.clock.now())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("outbox_published_total", "service" => s.service).increment(ids.len() as u64);
    tracing::debug!(
        service = s.service,
        count = ids.len(),
        "relayed outbox events"
    );
    Ok(ids.len())
}

/// The number of events written but not yet relayed, as a gauge.
async fn report_backlog(s: &RelaySettings) -> Result<(), InfraError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&s.pool)
        .await?;
    metrics::gauge!("outbox_unpublished", "service" => s.service).set(n as f64);
    Ok(())
}

/// Published rows are only kept for inspection; the stream is the record
/// consumers read.
async fn prune_published(db: &PgPool, before: DateTime<Utc>) -> Result<u64, InfraError> {
    Ok(
        sqlx::query("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1")
            .bind(before)
            .execute(db)
            .await?
            .rows_affected(),
    )
}
