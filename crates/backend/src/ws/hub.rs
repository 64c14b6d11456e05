//! Fan-out between backend instances. Each instance keeps one Redis pub/sub
//! connection, pattern-subscribed to every user channel and to the
//! revocation channel, and forwards what arrives to the sockets of that user
//! (or session) it holds. Any instance can therefore serve any socket. A
//! chat event is turned into its frame once per instance, here, and the same
//! text goes to each of the user's sockets. The hub also hears Stop
//! requests for replies this instance is writing (the stop channel) and
//! hands them to the chat domain.
//!
//! This instance's own events reach its sockets without Redis: the chat
//! domain hands each to the hub ([`LocalSockets`]) as it publishes it, and
//! the copy that comes back on the subscription, tagged with this
//! instance's id, is skipped. Redis carries an event only to the other
//! instances, and a reply streams to a socket on the instance writing it
//! even while Redis is away.

use super::protocol::{close, ServerFrame};
use crate::chat::{Chat, ChatEvent, LocalSockets};
use confab_core::sync::MutexExt;
use confab_core::{
    ids::{MessageId, SessionId, UserId},
    keys::Keys,
    revocation::{self, RevokeReason},
};
use futures::StreamExt;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the hub hands a socket.
#[derive(Debug)]
pub enum Outbound {
    Frame(String),
    Close(u16, &'static str),
}

/// Frames buffered per socket before it counts as too slow and is dropped
/// (it reconnects and resumes; nothing is lost).
pub const SOCKET_BUFFER: usize = 1024;

/// How often the hub publishes its heartbeat, through the same queue as
/// every chat event, and expects to hear it back on its subscription.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    chat: Chat,
    next_id: AtomicU64,
    /// True while the pub/sub subscription is live (part of `/readyz`).
    subscribed: AtomicBool,
    users: Mutex<HashMap<UserId, HashMap<u64, Conn>>>,
    /// A subscription that has not heard its own heartbeat for this long
    /// counts as lost (a Redis that stalls without closing the connection):
    /// the hub reconnects and has its sockets resync.
    silence: Duration,
}

struct Conn {
    sid: SessionId,
    tx: mpsc::Sender<Outbound>,
}

/// Unregisters its socket when dropped.
pub struct Registration {
    inner: Arc<Inner>,
    user: UserId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut users = self.inner.users.locked();
        if let Some(conns) = users.get_mut(&self.user) {
            conns.remove(&self.id);
            if conns.is_empty() {
                users.remove(&self.user);
            }
        }
        metrics::gauge!("ws_connections").decrement(1.0);
    }
}

impl Hub {
    /// `silence`: see `Config::pubsub_silence`.
    pub fn new(keys: Keys, chat: Chat, silence: Duration) -> Self {
        let inner = Arc::new(Inner {
            keys,
            silence,
            chat: chat.clone(),
            next_id: AtomicU64::new(1),
            subscribed: AtomicBool::new(false),
            users: Mutex::new(HashMap::new()),
        });
        // Weak: the hub holds the chat domain, not the other way round.
        let local: std::sync::Weak<dyn LocalSockets> = Arc::downgrade(&inner) as _;
        chat.deliver_locally_to(local);
        Self { inner }
    }

    /// Register a socket of `user`; `None` when the user already holds
    /// `max_per_user` sockets here.
    pub fn register(
        &self,
        user: UserId,
        sid: SessionId,
        max_per_user: usize,
    ) -> Option<(Registration, mpsc::Receiver<Outbound>)> {
        let (tx, rx) = mpsc::channel(SOCKET_BUFFER);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut users = self.inner.users.locked();
            let conns = users.entry(user).or_default();
            if conns.len() >= max_per_user {
                return None;
            }
            conns.insert(id, Conn { sid, tx });
        }
        metrics::gauge!("ws_connections").increment(1.0);
        Some((
            Registration {
                inner: self.inner.clone(),
                user,
                id,
            },
            rx,
        ))
    }

    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::Acquire)
    }

    /// An event another instance published (its JSON, untagged).
    fn deliver(&self, user: UserId, payload: &str) {
        // Every instance hears every user's events: only those with a socket
        // of that user here are worth decoding and rendering.
        if !self.inner.holds(user) {
            return;
        }
        match serde_json::from_str::<ChatEvent>(payload) {
            Ok(event) => self.inner.deliver_event(user, event),
            Err(e) => tracing::error!(error = %e, "skipping a chat event that does not parse"),
        }
    }

    /// Close the session's sockets with 4003 and the reason's code as the
    /// close reason, so each page can say why it was signed out.
    fn revoke(&self, sid: SessionId, reason: RevokeReason) {
        self.inner
            .close_where(|_, c| c.sid == sid, close::SESSION_REVOKED, reason.as_str());
    }

    /// Close every socket of a user whose account was deleted.
    pub fn account_deleted(&self, user: UserId) {
        self.inner.close_where(
            |u, _| u == user,
            close::SESSION_REVOKED,
            RevokeReason::AccountDeleted.as_str(),
        );
    }

    /// Listen on Redis until shutdown, reconnecting with backoff.
    pub async fn run(self, redis_url: String, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = tokio::select! {
                r = self.listen(&redis_url) => r,
                _ = shutdown.cancelled() => return,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "pub/sub connection lost; reconnecting");
            }
            // Frames published while we were not subscribed are lost to our
            // sockets: close them so their clients reconnect and resume.
            self.inner
                .close_where(|_, _| true, close::RESYNC, "reconnect and resume");
            tokio::select! {
                _ = confab_core::clock::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn listen(&self, redis_url: &str) -> Result<(), redis::RedisError> {
        let keys = &self.inner.keys;
        let heartbeats = keys.heartbeat_channel();
        // Subscribing waits for Redis's answers: bounded, like every wait.
        let subscribe = async {
            let mut pubsub = confab_core::redis_conn::pubsub(redis_url).await?;
            pubsub.psubscribe(keys.user_channel_pattern()).await?;
            pubsub.subscribe(keys.revocations_channel()).await?;
            pubsub.subscribe(keys.stops_channel()).await?;
            pubsub.subscribe(&heartbeats).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = tokio::time::timeout(confab_core::redis_conn::CONNECT_TIMEOUT, subscribe)
            .await
            .map_err(|_| lost("timed out subscribing"))??;
        let user_prefix = keys
            .user_channel_pattern()
            .trim_end_matches('*')
            .to_string();
        let revocations = keys.revocations_channel();
        let stops = keys.stops_channel();
        self.inner.subscribed.store(true, Ordering::Release);
        let mut messages = pubsub.on_message();
        let mut heard = confab_core::clock::instant();
        let mut next_beat = confab_core::clock::instant();
        let ended = loop {
            let msg = tokio::select! {
                m = messages.next() => match m {
                    Some(m) => m,
                    None => break lost("pub/sub stream ended"),
                },
                _ = confab_core::clock::sleep_until(next_beat) => {
                    next_beat = confab_core::clock::instant() + HEARTBEAT_EVERY;
                    if heard.elapsed() > self.inner.silence {
                        break lost("missed its own heartbeats");
                    }
                    self.inner.chat.heartbeat();
                    continue;
                }
            };
            let channel = msg.get_channel_name();
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if channel == heartbeats {
                if payload == self.inner.chat.instance() {
                    heard = confab_core::clock::instant();
                }
            } else if channel == revocations {
                if let Some((sid, reason)) = revocation::parse_announcement(&payload) {
                    self.revoke(sid, reason);
                }
            } else if channel == stops {
                if let Ok(id) = payload.parse::<MessageId>() {
                    self.inner.chat.stop_local(id);
                }
            } else if let Some(user) = channel
                .strip_prefix(&user_prefix)
                .and_then(|u| u.parse::<UserId>().ok())
            {
                match crate::chat::untag(&payload) {
                    // Ours: its sockets here had it when it was published.
                    (Some(from), _) if from == self.inner.chat.instance() => {}
                    (_, event) => self.deliver(user, event),
                }
            }
        };
        self.inner.subscribed.store(false, Ordering::Release);
        Err(ended)
    }
}

impl Inner {
    fn holds(&self, user: UserId) -> bool {
        self.users.locked().contains_key(&user)
    }

    /// Hand `event` to every socket of `user` here, as one frame rendered once.
    fn deliver_event(&self, user: UserId, event: ChatEvent) {
        let frame = match event {
            ChatEvent::Resync => {
                return self.close_where(|u, _| u == user, close::RESYNC, "reconnect and resume")
            }
            event => ServerFrame::from(event).to_json(),
        };
        let mut users = self.users.locked();
        if let Some(conns) = users.get_mut(&user) {
            // A socket whose buffer is full is dropped from the hub: its
            // channel closes and the socket ends with "too slow".
            conns.retain(|_, c| c.tx.try_send(Outbound::Frame(frame.clone())).is_ok());
        }
    }

    /// Close the sockets matching `which`. A socket whose queue is full is
    /// dropped from the hub instead, which ends it too: a close is never lost.
    fn close_where(&self, which: impl Fn(UserId, &Conn) -> bool, code: u16, reason: &'static str) {
        let mut users = self.users.locked();
        for (user, conns) in users.iter_mut() {
            conns.retain(|_, c| {
                !which(*user, c) || c.tx.try_send(Outbound::Close(code, reason)).is_ok()
            });
        }
    }
}

impl LocalSockets for Inner {
    fn deliver(&self, user: UserId, event: &ChatEvent) {
        if self.holds(user) {
            self.deliver_event(user, event.clone());
        }
    }
}

fn lost(why: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::IoError, why))
}
