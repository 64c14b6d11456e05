//! The consumer of cross-service events. Reads the Redis Stream in the
//! `backend` consumer group (created at the stream's start, so a backend that
//! was down catches up on everything), applies each event in a transaction
//! that also records its id (so a redelivered event changes nothing), then
//! acknowledges it. Entries another consumer read but never acknowledged
//! (it crashed) are claimed after a while and applied here.

use crate::{store, AppState};
use confab_core::{
    events::{Event, EventKind},
    revocation,
};
use redis::{
    streams::{StreamReadOptions, StreamReadReply},
    AsyncCommands, Value,
};
use std::time::Duration;

pub const GROUP: &str = "backend";
/// Pending entries idle this long are assumed abandoned and claimed.
const CLAIM_IDLE: Duration = Duration::from_secs(30);
/// How long one blocking read waits for new entries.
const READ_BLOCK: Duration = Duration::from_secs(2);
/// Processed event ids are kept this long (redelivery happens within a
/// minute; the rest is a generous margin).
const KEEP_PROCESSED_DAYS: i32 = 30;

pub async fn consume(state: AppState) {
    let consumer = format!("backend-{}", uuid::Uuid::new_v4());
    let mut backoff = Duration::from_millis(100);
    loop {
        let r = tokio::select! {
            r = run(&state, &consumer) => r,
            _ = state.shutdown.cancelled() => return,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "event consumer error; restarting");
        }
        tokio::select! {
            _ = confab_core::clock::sleep(backoff) => {}
            _ = state.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn run(state: &AppState, consumer: &str) -> Result<(), crate::Error> {
    // Blocking reads get a connection of their own: on the shared
    // multiplexed one they would hold up every other command.
    let mut conn =
        confab_core::redis_conn::connect_blocking(&state.config.common.redis_url, READ_BLOCK)
            .await?;
    let stream = state.keys.events_stream();
    let created: Result<(), redis::RedisError> =
        conn.xgroup_create_mkstream(&stream, GROUP, "0").await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(e.into());
        }
    }
    let mut last_claim = confab_core::clock::instant() - CLAIM_IDLE;
    loop {
        if last_claim.elapsed() >= CLAIM_IDLE {
            claim_abandoned(state, &mut conn, &stream, consumer).await?;
            prune_processed(state).await?;
            last_claim = confab_core::clock::instant();
        }
        let opts = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(100)
            .block(READ_BLOCK.as_millis() as usize);
        let reply: Option<StreamReadReply> = conn.xread_options(&[&stream], &[">"], &opts).await?;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                handle_entry(state, &mut conn, &stream, &entry.id, &entry.map).await?;
            }
        }
    }
}

async fn claim_abandoned(
    state: &AppState,
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    consumer: &str,
) -> Result<(), crate::Error> {
    let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(GROUP)
        .arg(consumer)
        .arg(CLAIM_IDLE.as_millis() as u64)
        .arg("0")
        .arg("COUNT")
        .arg(100)
        .query_async(conn)
        .await?;
    for entry in reply.claimed {
        handle_entry(state, conn, stream, &entry.id, &entry.map).await?;
    }
    Ok(())
}

/// Forget processed event ids long after any redelivery could happen (an
/// entry is acknowledged once applied; abandoned ones are claimed within a
/// minute), so the table does not grow forever.
async fn prune_processed(state: &AppState) -> Result<(), crate::Error> {
    store::events::prune_processed(&state.db, KEEP_PROCESSED_DAYS).await?;
    Ok(())
}

async fn handle_entry(
    state: &AppState,
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    id: &str,
    fields: &std::collections::HashMap<String, Value>,
) -> Result<(), crate::Error> {
    let payload: Option<String> = fields
        .get("payload")
        .and_then(|v| redis::from_redis_value(v).ok());
    match payload.as_deref().map(serde_json::from_str::<Event>) {
        Some(Ok(event)) => {
            apply(state, &event).await?;
            if crate::deletion::erases_its_entry(&event) {
                // It names the deleted user; applied, it is no longer needed.
                let _: i64 = conn.xdel(stream, &[id]).await?;
            }
        }
        Some(Err(e)) => {
            tracing::error!(entry = id, error = %e, "skipping an event that does not parse")
        }
        None => tracing::error!(entry = id, "skipping an event without payload"),
    }
    let _: i64 = conn.xack(stream, GROUP, &[id]).await?;
    Ok(())
}

/// Apply one event exactly once (the processed id is stored in the same
/// transaction as the change).
pub async fn apply(state: &AppState, event: &Event) -> Result<(), crate::Error> {
    let mut tx = state.db.begin().await?;
    if !store::events::record_processed(&mut *tx, event.id, event.kind.type_name()).await? {
        tracing::debug!(event = %event.id, "event already applied");
        return Ok(());
    }
    match &event.kind {
        EventKind::UserRegistered {
            user_id,
            email,
            display_name,
        }
        | EventKind::UserUpdated {
            user_id,
            email,
            display_name,
        } => {
            // A deleted account stays deleted, even if an older event about
            // it arrives late.
            let r =
                store::profiles::upsert_in(&mut tx, *user_id, email, display_name, true).await?;
            if r == store::profiles::Upsert::Deleted {
                tracing::info!(event = %event.id, "event about a deleted account ignored");
            }
        }
        EventKind::UserDeleted { user_id } => {
            crate::deletion::delete_account(state, &mut tx, *user_id, event).await?;
        }
        EventKind::SessionRevoked { .. } => {}
    }
    tx.commit().await?;
    tracing::info!(event = %event.id, kind = event.kind.type_name(), "event applied");
    if let EventKind::SessionRevoked { session_id, .. } = &event.kind {
        // Auth already wrote the revocation entry and announced it; doing it
        // again (idempotent) covers the case where its Redis write failed,
        // so a revoked session never outlives the event.
        let ttl = Duration::from_secs(state.config.access_token_ttl_secs);
        revocation::announce(&state.redis, &state.keys, *session_id, ttl).await?;
    }
    if let EventKind::UserDeleted { user_id } = &event.kind {
        state.known_users.remove(*user_id);
        state.hub.account_deleted(*user_id);
    }
    Ok(())
}
