//! Publishing chat events on the user's Redis channel, and the live streams'
//! writes, off the critical path. Every backend instance's hub is subscribed
//! to all user channels and forwards each event to the sockets of that user
//! it holds, so other tabs and devices see a message or a reply wherever
//! they are connected.
//!
//! Nothing durable waits for Redis: a message is acknowledged once Postgres
//! committed it, and a reply is written and stored whether or not Redis
//! answers. Callers hand their commands to [`Publisher`], a queue drained by
//! one task per process that sends whatever has queued up as one pipeline,
//! in order (so a user's events keep their order, and a burst of deltas
//! costs one round trip). While Redis is slow or away the queue absorbs the
//! gap, up to [`QUEUE`] commands; a command that fails or does not fit is
//! dropped and counted (`fanout_dropped_total`), and every user who lost an
//! event that way is sent a `resync` once Redis answers again: each
//! instance closes that user's sockets with 4009, and the clients reconnect
//! and resume from Postgres (see docs/websocket-protocol.md).
//!
//! This instance's sockets do not wait for that round trip: [`Chat::publish`]
//! hands the event to the hub first ([`LocalSockets`]), and tags what it
//! publishes with the instance's id (`<id> <json>`, see [`untag`]) so that
//! the hub skips its own copy when Redis brings it back. A lost event
//! therefore only costs the other instances' sockets a resync.

use super::{Chat, ChatEvent};
use confab_core::{ids::UserId, keys::Keys, sync::MutexExt};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

/// Commands waiting for Redis, at most. At ~20 deltas per reply this holds
/// the pieces of a few thousand replies.
pub const QUEUE: usize = 65_536;
/// Commands sent in one pipeline, at most.
const BATCH: usize = 512;
/// The longest a pipeline may take before its commands count as lost (the
/// connection's own response timeout bounds it too).
const BATCH_TIMEOUT: Duration = confab_core::redis_conn::RESPONSE_TIMEOUT;

/// The sockets this process holds (the hub), handed each event this
/// process publishes as it is published.
pub trait LocalSockets: Send + Sync {
    /// Send `event` to `user`'s sockets here, if any.
    fn deliver(&self, user: UserId, event: &ChatEvent);
}

/// What goes on a user channel: the publishing instance, then the event.
fn tag(instance: &str, event_json: &str) -> String {
    format!("{instance} {event_json}")
}

/// Split what arrived on a user channel into the instance that published it
/// and the event's JSON. A payload without the tag (from a version before
/// it) is all event.
pub(crate) fn untag(payload: &str) -> (Option<&str>, &str) {
    if payload.starts_with('{') {
        return (None, payload);
    }
    match payload.split_once(' ') {
        Some((from, event)) => (Some(from), event),
        None => (None, payload),
    }
}

/// One Redis command of the fan-out.
#[derive(Debug)]
pub(crate) enum Op {
    /// `PUBLISH` a user's event; `user` is told to resync if it is lost.
    Publish {
        user: Option<UserId>,
        channel: String,
        payload: String,
    },
    /// `XADD` a piece to a live stream; `ttl` (seconds) with the first.
    Append {
        key: String,
        index: u64,
        text: String,
        ttl: Option<i64>,
    },
    /// `EXPIRE` a key.
    Expire { key: String, secs: i64 },
    /// `DEL` a key.
    Del { key: String },
    /// Answered once everything queued before it was sent (or dropped).
    Flush(oneshot::Sender<()>),
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub(crate) struct Publisher {
    tx: mpsc::Sender<Op>,
    lost: Arc<Mutex<HashSet<UserId>>>,
}

impl Publisher {
    /// Start the process's publishing task on `redis`.
    /// `live_maxlen` caps each live stream (`XADD … MAXLEN ~`).
    /// `instance` tags the resyncs it publishes, like every event.
    pub(crate) fn start(
        redis: redis::aio::ConnectionManager,
        keys: Keys,
        live_maxlen: usize,
        instance: String,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let lost = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(run(redis, keys, rx, lost.clone(), live_maxlen, instance));
        Self { tx, lost }
    }

    /// Queue `op` without waiting; a full queue drops it (counted, and its
    /// user told to resync later).
    pub(crate) fn queue(&self, op: Op) {
        if let Err(e) = self.tx.try_send(op) {
            let op = match e {
                mpsc::error::TrySendError::Full(op) | mpsc::error::TrySendError::Closed(op) => op,
            };
            metrics::counter!("fanout_dropped_total", "why" => "queue_full").increment(1);
            if let Op::Publish { user: Some(u), .. } = op {
                self.lost.locked().insert(u);
            }
        } else {
            metrics::gauge!("fanout_queued").increment(1.0);
        }
    }

    /// Wait (at most `limit`) until what is queued now has been sent.
    pub(crate) async fn flush(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        metrics::gauge!("fanout_queued").increment(1.0);
        if self.tx.send(Op::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

async fn run(
    mut redis: redis::aio::ConnectionManager,
    keys: Keys,
    mut rx: mpsc::Receiver<Op>,
    lost: Arc<Mutex<HashSet<UserId>>>,
    live_maxlen: usize,
    instance: String,
) {
    // Only the other instances missed it: this one's sockets had it.
    let resync = tag(
        &instance,
        &serde_json::to_string(&ChatEvent::Resync).unwrap_or_default(),
    );
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        metrics::gauge!("fanout_queued").decrement(batch.len() as f64);
        let mut pipe = redis::pipe();
        let mut flushes = Vec::new();
        let mut users = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Publish {
                    user,
                    channel,
                    payload,
                } => {
                    users.extend(user);
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                }
                Op::Append {
                    key,
                    index,
                    text,
                    ttl,
                } => {
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(live_maxlen)
                        .arg("*")
                        .arg("i")
                        .arg(index)
                        .arg("t")
                        .arg(text)
                        .ignore();
                    if let Some(secs) = ttl {
                        pipe.cmd("EXPIRE").arg(key).arg(secs).ignore();
                    }
                }
                Op::Expire { key, secs } => {
                    pipe.cmd("EXPIRE").arg(key).arg(secs).ignore();
                }
                Op::Del { key } => {
                    pipe.cmd("DEL").arg(key).ignore();
                }
                Op::Flush(done) => flushes.push(done),
            }
        }
        // Users who lost an event earlier are told to resync, after the
        // events queued since (which they may have received).
        let owed: Vec<UserId> = lost.locked().drain().collect();
        for u in &owed {
            pipe.cmd("PUBLISH")
                .arg(keys.user_channel(*u))
                .arg(&resync)
                .ignore();
        }
        let n = pipe.cmd_iter().count();
        if n == 0 {
            for f in flushes {
                let _ = f.send(());
            }
            continue;
        }
        let sent = tokio::time::timeout(BATCH_TIMEOUT, pipe.query_async::<()>(&mut redis)).await;
        match sent {
            Ok(Ok(())) => {
                metrics::counter!("fanout_sent_total").increment(n as u64);
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(%error, commands = n, "Redis fan-out failed; those live frames are dropped");
                metrics::counter!("fanout_dropped_total", "why" => "redis").increment(n as u64);
                let mut l = lost.locked();
                l.extend(users);
                l.extend(owed);
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

impl Chat {
    /// Tell every open page of the user, on every instance, their profile
    /// as it now is.
    pub async fn profile_updated(&self, profile: &crate::store::profiles::Profile) {
        let event = ChatEvent::ProfileUpdated {
            profile: profile.clone(),
        };
        self.publish(profile.user_id, &event).await;
    }

    /// Tell every socket of the user on every instance its plan now.
    pub async fn plan_changed(&self, user: UserId, plan: crate::plans::PlanView) {
        self.publish(user, &ChatEvent::PlanChanged { plan }).await;
    }

    /// To this instance's sockets at once, to the others' through Redis:
    /// best effort and never waiting on Redis (a client that missed an event
    /// is told to resync and catches up with `resume`).
    pub(super) async fn publish(&self, user: UserId, event: &ChatEvent) {
        if let Some(local) = self.inner.local.get().and_then(Weak::upgrade) {
            local.deliver(user, event);
        }
        let payload = match serde_json::to_string(event) {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "could not encode a chat event"),
        };
        self.inner.fanout.queue(Op::Publish {
            user: Some(user),
            channel: self.inner.keys.user_channel(user),
            payload: tag(&self.inner.instance, &payload),
        });
    }

    /// Where this process's events go before Redis (set once, by the hub).
    pub fn deliver_locally_to(&self, sockets: Weak<dyn LocalSockets>) {
        let _ = self.inner.local.set(sockets);
    }

    /// This process's id among the instances (tags its events and heartbeats).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Tell every socket of the user that these threads are gone.
    pub async fn announce_deleted(
        &self,
        user: UserId,
        thread_ids: Vec<confab_core::ids::ThreadId>,
    ) {
        self.publish(user, &ChatEvent::ThreadsDeleted { thread_ids })
            .await;
    }

    /// Queue this instance's heartbeat on the heartbeat channel (see the hub).
    pub(crate) fn heartbeat(&self) {
        self.inner.fanout.queue(Op::Publish {
            user: None,
            channel: self.inner.keys.heartbeat_channel(),
            payload: self.inner.instance.clone(),
        });
    }

    /// Wait (at most `limit`) until every event queued so far was sent.
    pub async fn flush_fanout(&self, limit: Duration) {
        self.inner.fanout.flush(limit).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{tag, untag};

    #[test]
    fn a_payload_names_the_instance_that_published_it() {
        let id = "5f0c7a3e-8d1b-4c52-9a57-0d8f3f1c2b6a";
        let event = r#"{"kind":"resync"}"#;
        assert_eq!(untag(&tag(id, event)), (Some(id), event));
        // From a version that did not tag: all of it is the event, even
        // when the event's text holds spaces.
        let old = r#"{"kind":"delta","text":"a b"}"#;
        assert_eq!(untag(old), (None, old));
        assert_eq!(untag("garbage"), (None, "garbage"));
    }
}
