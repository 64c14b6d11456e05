//! The outbox relay: moves committed events from the `outbox` table to the
//! Redis events stream.
//!
//! Writing the event in the same transaction as the change means an event
//! exists if and only if the change happened; the relay then delivers it at
//! least once. A crash between XADD and the commit that marks the rows
//! published re-sends them; consumers dedupe by event id, so that is fine.

use crate::{error::Error, store};
use confab_core::{
    clock::{self, Clock},
    keys::Keys,
};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// How often the relay looks for rows even when nobody nudged it: covers
/// events written by another auth instance and retries after an error.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const BATCH: i64 = 100;
/// Approximate cap of the stream (`MAXLEN ~`): enough for a consumer that
/// was down for a long while to catch up, bounded so Redis cannot fill up.
const STREAM_MAXLEN: u64 = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const KEEP_PUBLISHED: chrono::TimeDelta = chrono::TimeDelta::days(7);

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
    pub fn spawn(
        pool: PgPool,
        redis: ConnectionManager,
        keys: Keys,
        signal: OutboxSignal,
        shutdown: CancellationToken,
        clock: Clock,
    ) -> Self {
        let handle = tokio::spawn(async move {
            let stream = keys.events_stream();
            let mut last_prune = clock::instant();
            loop {
                let drained = match relay_batch(&pool, &redis, &stream, &clock).await {
                    Ok(n) => n < BATCH as usize,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay failed; will retry");
                        true
                    }
                };
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = clock::instant();
                    let before = clock.now() - KEEP_PUBLISHED;
                    if let Err(e) = store::outbox::prune_published(&pool, before).await {
                        tracing::warn!(error = %e, "pruning the outbox failed");
                    }
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
                    _ = signal.0.notified() => {}
                    _ = clock::sleep(POLL_INTERVAL) => {}
                }
            }
            tracing::debug!("outbox relay stopped");
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
pub async fn relay_batch(
    pool: &PgPool,
    redis: &ConnectionManager,
    stream: &str,
    clock: &Clock,
) -> Result<usize, Error> {
    let mut tx = pool.begin().await?;
    let pending = store::outbox::lock_pending(&mut *tx, BATCH).await?;
    if pending.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for event in &pending {
        pipe.cmd("XADD")
            .arg(stream)
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
    let mut conn = redis.clone();
    pipe.query_async::<()>(&mut conn).await?;
    let ids: Vec<_> = pending.iter().map(|e| e.id).collect();
    store::outbox::mark_published(&mut tx, &ids, clock.now()).await?;
    tx.commit().await?;
    metrics::counter!("auth_outbox_published_total").increment(ids.len() as u64);
    tracing::debug!(count = ids.len(), "relayed outbox events");
    Ok(ids.len())
}
