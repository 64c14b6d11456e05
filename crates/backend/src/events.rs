//! The consumer of cross-service events.
//!
//! Reads the Redis events stream in the `backend` consumer group (created at
//! the stream's start, so a backend that was down catches up on everything)
//! and, for each entry:
//! - applies it in a transaction that also records its id, so a redelivered
//!   event changes no row; its side effects outside the database (the Redis
//!   revocation entry, the profile cache, the push to open pages) run again
//!   on every delivery, since they are idempotent and a crash may have cut
//!   them short the first time;
//! - acknowledges it (`XACK`) once applied;
//! - leaves it pending when applying failed. Pending entries are retried with
//!   exponential backoff, by whichever instance claims them first (`XCLAIM`
//!   with a minimum idle time, so only one does), which also reclaims the
//!   entries of a consumer that died. Redis counts the deliveries; after
//!   [`ConsumerSettings::max_deliveries`] the entry moves to the dead-letter
//!   stream. A failing event never holds up the ones behind it.
//!
//! Throughput: each read takes up to [`BATCH`] entries (`XREADGROUP COUNT`)
//! and splits them into lanes, one per user the events are about; the lanes
//! run in parallel ([`ConsumerSettings::parallelism`] at a time, each on its
//! own pooled database connection), the entries of one lane one after the
//! other. The next read waits for the whole batch.
//!
//! Order: one user's entries are applied in stream order, except a retried
//! one, which comes later; different users' interleave. Per-user order holds
//! where it matters even for a retry: `user.updated` carries auth's profile
//! version and only a newer version is applied, so a late event can never
//! overwrite a newer one; a deleted user's tombstone outranks every event
//! about them.

use crate::{profile_cache, store, AppState};
use confab_core::{
    events::{Event, EventKind},
    revocation::{self, RevokeReason},
};
use futures::{StreamExt, TryStreamExt};
use redis::{
    aio::MultiplexedConnection,
    streams::{StreamId, StreamReadOptions, StreamReadReply},
    AsyncCommands, Value,
};
use std::{collections::HashMap, time::Duration};

pub const GROUP: &str = "backend";
/// Processed event ids are kept this long (a redelivery comes within
/// seconds; the rest is a generous margin).
const KEEP_PROCESSED_DAYS: i32 = 30;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two deliveries of a failing event.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Entries handled per read or per retry scan.
const BATCH: usize = 100;

/// How failing events are retried (`CONFAB_EVENT_*`).
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// Deliveries before an event is dead-lettered (`CONFAB_EVENT_MAX_DELIVERIES`, 5).
    pub max_deliveries: u64,
    /// Wait before the second delivery, doubled for each next one
    /// (`CONFAB_EVENT_RETRY_BASE_MS`, 500). Also how long an entry must sit
    /// unacknowledged before another instance takes it over.
    pub retry_base: Duration,
    /// Users whose events are applied at the same time
    /// (`CONFAB_EVENT_PARALLELISM`, 8); each takes a database connection.
    pub parallelism: usize,
}

impl ConsumerSettings {
    /// How long an entry delivered `deliveries` times waits before the next.
    pub fn backoff(&self, deliveries: u64) -> Duration {
        let doublings = deliveries.saturating_sub(1).min(16) as u32;
        (self.retry_base * 2u32.pow(doublings)).min(MAX_BACKOFF)
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Applied,
    /// Its id was already recorded: rows unchanged, side effects re-run.
    Duplicate,
    /// A type this build does not handle (another service's fact).
    Ignored,
}

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
    let settings = state.config.events;
    // Reads block at most one retry interval, so due retries are not late.
    let block = settings
        .retry_base
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    // Blocking reads get a connection of their own: on the shared
    // multiplexed one they would hold up every other command.
    let mut conn =
        confab_core::redis_conn::connect_blocking(&state.config.common.redis_url, block).await?;
    let stream = state.keys.events_stream();
    let created: Result<(), redis::RedisError> =
        conn.xgroup_create_mkstream(&stream, GROUP, "0").await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(e.into());
        }
    }
    let mut last_prune = confab_core::clock::instant() - PRUNE_EVERY;
    let mut last_report = confab_core::clock::instant() - REPORT_EVERY;
    loop {
        retry_pending(state, &mut conn, &stream, consumer).await?;
        if last_report.elapsed() >= REPORT_EVERY {
            report(state, &mut conn, &stream).await?;
            last_report = confab_core::clock::instant();
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            store::events::prune_processed(&state.db, KEEP_PROCESSED_DAYS).await?;
            last_prune = confab_core::clock::instant();
        }
        let opts = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(BATCH)
            .block(block.as_millis() as usize);
        let reply: Option<StreamReadReply> = conn.xread_options(&[&stream], &[">"], &opts).await?;
        let entries: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if !entries.is_empty() {
            deliver_batch(state, &conn, &stream, entries).await?;
        }
    }
}

/// Apply one read's entries: each user's lane in stream order, lanes in
/// parallel. No read is blocking on `conn` meanwhile, so the lanes share it
/// (multiplexed) for their acknowledgements.
async fn deliver_batch(
    state: &AppState,
    conn: &MultiplexedConnection,
    stream: &str,
    entries: Vec<StreamId>,
) -> Result<(), crate::Error> {
    metrics::histogram!("events_batch_size").record(entries.len() as f64);
    let mut lanes: Vec<Vec<StreamId>> = Vec::new();
    let mut lane_of: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let i = *lane_of.entry(lane_key(&entry)).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[i].push(entry);
    }
    futures::stream::iter(lanes.into_iter().map(|lane| {
        let mut conn = conn.clone();
        async move {
            for entry in &lane {
                deliver(state, &mut conn, stream, entry, 1).await?;
            }
            Ok::<(), crate::Error>(())
        }
    }))
    .buffer_unordered(state.config.events.parallelism.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// The lane of an entry: the user its event is about. An entry that does
/// not parse goes alone (it is dead-lettered without touching anything).
fn lane_key(entry: &StreamId) -> String {
    entry
        .map
        .get("payload")
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .and_then(|p| serde_json::from_str::<Event>(&p).ok())
        .map(|e| e.kind.user_id().to_string())
        .unwrap_or_else(|| entry.id.clone())
}

/// Retry the pending entries (this consumer's failures and a dead
/// consumer's leftovers) whose backoff has passed; dead-letter those that
/// have had all their deliveries.
async fn retry_pending(
    state: &AppState,
    conn: &mut MultiplexedConnection,
    stream: &str,
    consumer: &str,
) -> Result<(), crate::Error> {
    let settings = state.config.events;
    let min_idle = settings.retry_base.as_millis() as u64;
    // [id, consumer, idle ms, deliveries] of entries idle at least `min_idle`.
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(GROUP)
        .arg("IDLE")
        .arg(min_idle)
        .arg("-")
        .arg("+")
        .arg(BATCH)
        .query_async(conn)
        .await?;
    for (id, _, idle_ms, deliveries) in pending {
        let wait = settings.backoff(deliveries);
        if u128::from(idle_ms) < wait.as_millis() {
            continue;
        }
        // Only one instance wins the claim: it resets the idle time, so the
        // others' `XCLAIM` (same minimum) finds nothing.
        let claimed: redis::streams::StreamClaimReply = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(wait.as_millis() as u64)
            .arg(&id)
            .query_async(conn)
            .await?;
        for entry in claimed.ids {
            // `XCLAIM` counted this delivery.
            let deliveries = deliveries + 1;
            if deliveries > settings.max_deliveries {
                dead_letter(state, conn, stream, &entry, "apply_failed", deliveries - 1).await?;
            } else {
                metrics::counter!("events_retried_total").increment(1);
                deliver(state, conn, stream, &entry, deliveries).await?;
            }
        }
    }
    Ok(())
}

/// Apply one delivered entry: acknowledged when applied (or when it can
/// never be: it does not parse), left pending for a retry when applying
/// failed. Only Redis failures end the read loop.
async fn deliver(
    state: &AppState,
    conn: &mut MultiplexedConnection,
    stream: &str,
    entry: &StreamId,
    deliveries: u64,
) -> Result<(), crate::Error> {
    let text = |name: &str| -> Option<String> {
        entry
            .map
            .get(name)
            .and_then(|v| redis::from_redis_value(v).ok())
    };
    let kind = text("type").unwrap_or_default();
    if !EventKind::TYPES.contains(&kind.as_str()) {
        // Another service's fact (or a newer one): not ours to apply.
        tracing::debug!(entry = %entry.id, kind, "ignoring an event type this backend does not handle");
        metrics::counter!("events_ignored_total").increment(1);
        let _: i64 = conn.xack(stream, GROUP, &[&entry.id]).await?;
        return Ok(());
    }
    let event = match text("payload").map(|p| serde_json::from_str::<Event>(&p)) {
        Some(Ok(event)) => event,
        other => {
            // No retry makes it parse: straight to the dead letters.
            let error = match other {
                Some(Err(e)) => e.to_string(),
                _ => "no payload".to_string(),
            };
            tracing::error!(entry = %entry.id, kind, error, "an event does not parse");
            return dead_letter(state, conn, stream, entry, "malformed", deliveries).await;
        }
    };
    match apply(state, &event).await {
        Ok(outcome) => {
            if crate::deletion::erases_its_entry(&event) {
                // It names the deleted user; applied, it is no longer needed.
                let _: i64 = conn.xdel(stream, &[&entry.id]).await?;
            }
            let _: i64 = conn.xack(stream, GROUP, &[&entry.id]).await?;
            let outcome = match outcome {
                Outcome::Applied => "applied",
                Outcome::Duplicate => "duplicate",
                Outcome::Ignored => "ignored",
            };
            metrics::counter!("events_applied_total", "type" => event.kind.type_name(), "outcome" => outcome)
                .increment(1);
            let lag = state.config.clock.now() - event.occurred_at;
            metrics::histogram!("events_propagation_seconds")
                .record(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
        Err(e) => {
            metrics::counter!("events_failed_total", "type" => event.kind.type_name()).increment(1);
            let settings = state.config.events;
            if deliveries >= settings.max_deliveries {
                tracing::warn!(event = %event.id, deliveries, error = %e, "applying an event failed for the last time");
                return dead_letter(state, conn, stream, entry, "apply_failed", deliveries).await;
            }
            tracing::warn!(
                event = %event.id,
                kind = event.kind.type_name(),
                deliveries,
                max = settings.max_deliveries,
                retry_in_ms = settings.backoff(deliveries).as_millis() as u64,
                error = %e,
                "applying an event failed; it stays pending for a retry"
            );
        }
    }
    Ok(())
}

/// Move an entry to the dead-letter stream (with why, and how often it was
/// delivered) and acknowledge it, so it no longer holds anything up. An
/// operator inspects it there and can re-add it to the events stream.
async fn dead_letter(
    state: &AppState,
    conn: &mut MultiplexedConnection,
    stream: &str,
    entry: &StreamId,
    reason: &str,
    deliveries: u64,
) -> Result<(), crate::Error> {
    let mut add = redis::cmd("XADD");
    add.arg(state.keys.dead_letter_stream())
        .arg("MAXLEN")
        .arg("~")
        .arg(confab_core::outbox::STREAM_MAXLEN)
        .arg("*");
    for (field, value) in &entry.map {
        if let Ok(v) = redis::from_redis_value::<String>(value) {
            add.arg(field).arg(v);
        }
    }
    add.arg("source_entry")
        .arg(&entry.id)
        .arg("group")
        .arg(GROUP)
        .arg("reason")
        .arg(reason)
        .arg("deliveries")
        .arg(deliveries);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .add_command(add)
        .ignore()
        .xack(stream, GROUP, &[&entry.id])
        .ignore();
    pipe.query_async::<()>(conn).await?;
    metrics::counter!("events_dead_lettered_total", "reason" => reason.to_string()).increment(1);
    tracing::error!(entry = %entry.id, reason, deliveries, "event moved to the dead-letter stream");
    Ok(())
}

/// Consumer lag (entries not yet delivered to the group), pending entries
/// and the dead-letter stream's length, as gauges.
async fn report(
    state: &AppState,
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> Result<(), crate::Error> {
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await?;
    if let Some(group) = list(&groups)
        .iter()
        .find(|g| field(g, "name").as_deref() == Some(GROUP))
    {
        for (name, gauge) in [
            ("lag", "events_consumer_lag"),
            ("pending", "events_consumer_pending"),
        ] {
            if let Some(n) = field(group, name).and_then(|v| v.parse::<f64>().ok()) {
                metrics::gauge!(gauge).set(n);
            }
        }
    }
    let dead: u64 = conn.xlen(state.keys.dead_letter_stream()).await?;
    metrics::gauge!("events_dead_letter_length").set(dead as f64);
    Ok(())
}

fn list(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// A field of an `XINFO` reply (a flat array of names and values, or a map).
fn field(v: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    };
    match v {
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| text(&kv[0]).as_deref() == Some(name))
            .and_then(|kv| kv.get(1).and_then(text)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

/// Apply one event: its rows at most once (the processed id is stored in
/// the same transaction as the change), its side effects on every delivery.
pub async fn apply(state: &AppState, event: &Event) -> Result<Outcome, crate::Error> {
    let mut tx = state.db.begin().await?;
    let fresh = store::events::record_processed(&mut *tx, event.id, event.kind.type_name()).await?;
    if fresh {
        apply_rows(state, &mut tx, event).await?;
    }
    tx.commit().await?;
    if fresh {
        tracing::info!(event = %event.id, kind = event.kind.type_name(), "event applied");
    } else {
        tracing::debug!(event = %event.id, "event already applied; re-running its side effects");
    }
    side_effects(state, event).await?;
    Ok(match (&event.kind, fresh) {
        (EventKind::ThreadDeleted { .. }, _) => Outcome::Ignored,
        (_, true) => Outcome::Applied,
        (_, false) => Outcome::Duplicate,
    })
}

async fn apply_rows(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    event: &Event,
) -> Result<(), crate::Error> {
    match &event.kind {
        EventKind::UserRegistered {
            user_id,
            email,
            display_name,
            version,
        } => {
            let change = store::profiles::ProfileChange {
                email,
                display_name,
                avatar_url: None,
                time_zone: None,
                version: (*version).max(1),
            };
            let r = store::profiles::apply_change(tx, *user_id, &change).await?;
            log_skip(event, r);
        }
        EventKind::UserUpdated {
            user_id,
            email,
            display_name,
            avatar_url,
            time_zone,
            version,
        } => {
            let change = store::profiles::ProfileChange {
                email,
                display_name,
                avatar_url: avatar_url.as_deref(),
                time_zone: time_zone.as_deref(),
                version: *version,
            };
            let r = store::profiles::apply_change(tx, *user_id, &change).await?;
            log_skip(event, r);
        }
        EventKind::UserDeleted { user_id } => {
            crate::deletion::delete_account(state, tx, *user_id, event).await?;
        }
        // Its whole effect is outside the database.
        EventKind::SessionRevoked { .. } => {}
        // The backend's own facts: their rows changed with them.
        EventKind::ThreadDeleted { .. } | EventKind::PlanChanged { .. } => {}
    }
    Ok(())
}

fn log_skip(event: &Event, r: store::profiles::Applied) {
    match r {
        store::profiles::Applied::Changed => {}
        store::profiles::Applied::Stale => {
            tracing::info!(event = %event.id, "event older than the profile ignored")
        }
        store::profiles::Applied::Deleted => {
            tracing::info!(event = %event.id, "event about a deleted account ignored")
        }
    }
}

/// What an event changes outside the database. Each step is idempotent and
/// runs on every delivery: a crash after the commit may have skipped it.
async fn side_effects(state: &AppState, event: &Event) -> Result<(), crate::Error> {
    match &event.kind {
        EventKind::SessionRevoked {
            session_id, reason, ..
        } => {
            // Auth already wrote the revocation entry and announced it;
            // doing it again covers the case where its Redis write failed, so
            // a revoked session never outlives the event.
            let ttl = Duration::from_secs(state.config.access_token_ttl_secs);
            let reason = reason.unwrap_or(RevokeReason::SignedOut);
            revocation::announce(&state.redis, &state.keys, *session_id, reason, ttl).await?;
        }
        EventKind::UserDeleted { user_id } => {
            state.known_users.remove(*user_id);
            profile_cache::forget(state, *user_id).await?;
            state.hub.account_deleted(*user_id);
        }
        EventKind::UserRegistered { user_id, .. } | EventKind::UserUpdated { user_id, .. } => {
            // The cache and the open pages get the profile as it is now in
            // the database (whatever event made it so): an older version can
            // never replace a newer one in the cache, and a page always ends
            // on the newest.
            if let Some(profile) = store::profiles::get(&state.db, *user_id).await? {
                profile_cache::put(state, &profile).await?;
                if matches!(event.kind, EventKind::UserUpdated { .. }) {
                    state.chat.profile_updated(&profile).await;
                }
            }
        }
        EventKind::ThreadDeleted { .. } => {}
        EventKind::PlanChanged { user_id, .. } => {
            // The plan as it is now (a later change may already be stored):
            // pages always end on the newest.
            if let Some(id) = store::profiles::plan_of(&state.db, *user_id).await? {
                let view = state.plans.view(state.plans.get(&id));
                state.chat.plan_changed(*user_id, view).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_delivery_and_is_capped() {
        let s = ConsumerSettings {
            max_deliveries: 5,
            retry_base: Duration::from_millis(500),
            parallelism: 8,
        };
        assert_eq!(s.backoff(1), Duration::from_millis(500));
        assert_eq!(s.backoff(2), Duration::from_secs(1));
        assert_eq!(s.backoff(4), Duration::from_secs(4));
        assert_eq!(s.backoff(40), MAX_BACKOFF);
    }
}
