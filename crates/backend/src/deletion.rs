//! Deleting threads and accounts from every store the backend writes: its
//! database (rows, and a tombstone for an account), Redis live streams of
//! the replies, and — for an account — the entries of the events stream
//! that carry the user's id or details.

use crate::{error::Error, store, AppState};
use confab_core::{
    events::{Event, EventKind},
    ids::{MessageId, ThreadId, UserId},
    keys::Keys,
};
use redis::aio::ConnectionManager;

/// Keys per `DEL`, entries per `XRANGE` page.
const BATCH: usize = 500;

/// Delete some or all of the user's threads. `None` when a named thread is
/// not the user's (then nothing is deleted). Returns the deleted ids.
pub async fn delete_threads(
    state: &AppState,
    user: UserId,
    which: store::deletion::Which<'_>,
) -> Result<Option<Vec<ThreadId>>, Error> {
    let mut tx = state.db.begin().await?;
    let Some(deleted) = store::deletion::delete_threads(&mut tx, user, which).await? else {
        return Ok(None);
    };
    // Redis first: if it fails the transaction rolls back and the user can
    // retry, rather than keep deltas of a conversation they were told is gone.
    purge_live(&state.redis, &state.keys, &deleted.recent_replies).await?;
    // Announced in the same transaction, through the backend's outbox (by
    // the thread id's hash: the deleted chat leaves no trace).
    let now = state.config.clock.now();
    for thread_id in &deleted.threads {
        let event = Event::new(EventKind::thread_deleted(user, *thread_id), now);
        confab_core::outbox::insert(&mut *tx, &event).await?;
    }
    tx.commit().await?;
    state.outbox.notify();
    // Other tabs and devices drop them at once (best effort: a client that
    // misses it gets 404 for the thread).
    state
        .chat
        .announce_deleted(user, deleted.threads.clone())
        .await;
    metrics::counter!("threads_deleted_total").increment(deleted.threads.len() as u64);
    tracing::info!(%user, threads = deleted.threads.len(), "threads deleted");
    Ok(Some(deleted.threads))
}

/// Remove the live streams of these replies.
pub async fn purge_live(
    redis: &ConnectionManager,
    keys: &Keys,
    replies: &[MessageId],
) -> Result<(), Error> {
    let mut conn = redis.clone();
    for chunk in replies.chunks(BATCH) {
        let names: Vec<String> = chunk.iter().map(|id| keys.live_stream(id)).collect();
        let _: i64 = redis::cmd("DEL").arg(names).query_async(&mut conn).await?;
    }
    Ok(())
}

/// Apply `user.deleted` inside the event's transaction: tombstone, rows,
/// live streams, and every other entry of the events stream that names the
/// user (their `user.registered` carries email and name). The event's own
/// entry is removed by the consumer once this has committed.
pub async fn delete_account(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user: UserId,
    event: &Event,
) -> Result<(), Error> {
    store::deletion::lock_user(&mut *conn, user).await?;
    let replies = store::deletion::delete_user(&mut *conn, user).await?;
    purge_live(&state.redis, &state.keys, &replies).await?;
    purge_events(state, user, event).await?;
    purge_user_keys(state, user).await?;
    Ok(())
}

/// Every other key under our prefix that names the user (per-user caches
/// and counters, whatever adds them later: rate limits, quotas).
async fn purge_user_keys(state: &AppState, user: UserId) -> Result<(), Error> {
    let pattern = state.keys.naming_pattern(user);
    let mut conn = state.redis.clone();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn purge_events(state: &AppState, user: UserId, except: &Event) -> Result<(), Error> {
    let stream = state.keys.events_stream();
    let needle = user.to_string();
    let own = except.id.to_string();
    let mut conn = state.redis.clone();
    let mut start = "-".to_string();
    let mut doomed = Vec::new();
    loop {
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await?;
        let Some(last) = page.ids.last().map(|e| e.id.clone()) else {
            break;
        };
        for entry in &page.ids {
            let payload: Option<String> = entry.get("payload");
            let id: Option<String> = entry.get("id");
            if payload.is_some_and(|p| p.contains(&needle)) && id.as_deref() != Some(&own) {
                doomed.push(entry.id.clone());
            }
        }
        if page.ids.len() < BATCH {
            break;
        }
        start = format!("({last}");
    }
    for chunk in doomed.chunks(BATCH) {
        let _: i64 = redis::cmd("XDEL")
            .arg(&stream)
            .arg(chunk)
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}

/// Is this the event whose stream entry must go once it is applied?
pub fn erases_its_entry(event: &Event) -> bool {
    matches!(event.kind, EventKind::UserDeleted { .. })
}
