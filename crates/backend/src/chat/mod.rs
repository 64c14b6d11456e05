//! The chat domain: what happens when a user sends a message, when a reply is
//! written, when a failed reply is retried and when a client comes back for
//! what it missed. It decides and returns domain values ([`Sent`],
//! [`ChatEvent`]) and knows nothing of sockets or HTTP: `ws/` and `http/`
//! turn those values into frames and JSON (domain ← transport, never back).
//!
//! One module per idea:
//! - [`send`](send.rs): store a user message, deduplicated on its client id,
//!   with the thread's next sequence number; announce it; start its reply.
//! - [`generate`](generate.rs): write a reply, in a task owned by the thread
//!   (not the socket that asked), as its question's current attempt; every
//!   outcome (complete, failed, stopped) ends the reply row. (Retries before
//!   the first token and the circuit breaker are the provider's, see
//!   `agent::resilience`.)
//! - [`context`](context.rs): which earlier messages the model sees.
//! - [`retry`](retry.rs): Retry and Regenerate (a fresh attempt at a
//!   question) and Stop generating.
//! - [`resume`](resume.rs): everything after a sequence number.
//! - [`lease`](lease.rs): the claim an instance holds on a reply it writes,
//!   and how every instance fails the replies of one that died.
//! - [`live`](live.rs): the per-reply live stream in Redis (deltas kept for
//!   resuming clients).
//! - [`fanout`](fanout.rs): events handed to this instance's sockets at once
//!   and published on the user's Redis channel, which every other instance
//!   forwards to the sockets of that user it holds.
//! - [`event`](event.rs): the events themselves.

mod admit;
mod context;
mod event;
mod fanout;
mod generate;
mod lease;
mod live;
mod resume;
mod retry;
mod send;

pub use event::{ChatEvent, Piece};
pub(crate) use fanout::untag;
pub use fanout::LocalSockets;
pub use resume::Resumed;
pub use send::Sent;

use crate::{agent::Provider, plans::limiter::Limiter};
use confab_core::{
    clock::Clock,
    ids::{MessageId, ThreadId, UserId},
    keys::Keys,
};
use sqlx::PgPool;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How the chat domain is tuned, and what it admits messages with.
pub struct ChatSettings {
    /// Budget of earlier messages sent as context (`CONFAB_LLM_CONTEXT_CHARS`).
    pub context_chars: usize,
    /// The longest reply kept (`CONFAB_MAX_REPLY_CHARS`).
    pub max_reply_chars: usize,
    /// How long a reply's row stays claimed without renewal.
    pub lease: Duration,
    /// Admits each message against the user's plan.
    pub limiter: Limiter,
    /// The wall clock admissions are decided on.
    pub clock: Clock,
}

/// The chat domain's handle, cheap to clone.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    redis: redis::aio::ConnectionManager,
    /// Where events and live pieces are queued for Redis (see `fanout`).
    fanout: fanout::Publisher,
    /// This process's sockets, which get its events without Redis.
    local: std::sync::OnceLock<std::sync::Weak<dyn fanout::LocalSockets>>,
    /// This process's id, tagging what it publishes.
    instance: String,
    keys: Keys,
    provider: Arc<dyn Provider>,
    shutdown: CancellationToken,
    /// Running generations, waited for (bounded) at shutdown.
    tasks: TaskTracker,
    /// One generation at a time per thread (in this process), so replies to
    /// quick successive messages come in order.
    thread_locks: Mutex<HashMap<ThreadId, Arc<tokio::sync::Mutex<()>>>>,
    /// The replies this process is writing, each with its Stop switch.
    running: Mutex<HashMap<MessageId, CancellationToken>>,
    context_chars: usize,
    /// The longest reply kept (`CONFAB_MAX_REPLY_CHARS`): a reply that
    /// reaches it is stopped there and failed `agent_reply_too_long`. Also
    /// the `MAXLEN` of its live stream (each piece has at least one).
    max_reply_chars: usize,
    /// How long a reply's row stays claimed without a renewal (see `lease`).
    lease: Duration,
    /// Admits each message against the user's plan.
    limiter: Limiter,
    /// The plan each user's latest message here was admitted on: the next
    /// one is admitted on it while the plan is read (see `send`). Only a
    /// guess, checked against the database every time.
    plan_hints: Mutex<HashMap<UserId, Option<String>>>,
    clock: Clock,
}

impl Chat {
    pub fn new(
        db: PgPool,
        redis: redis::aio::ConnectionManager,
        keys: Keys,
        provider: Arc<dyn Provider>,
        shutdown: CancellationToken,
        settings: ChatSettings,
    ) -> Self {
        let ChatSettings {
            context_chars,
            max_reply_chars,
            lease,
            limiter,
            clock,
        } = settings;
        let instance = uuid::Uuid::new_v4().to_string();
        Self {
            inner: Arc::new(Inner {
                db,
                fanout: fanout::Publisher::start(
                    redis.clone(),
                    keys.clone(),
                    max_reply_chars,
                    instance.clone(),
                ),
                local: std::sync::OnceLock::new(),
                instance,
                redis,
                keys,
                provider,
                shutdown,
                tasks: TaskTracker::new(),
                thread_locks: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                context_chars,
                max_reply_chars,
                lease,
                limiter,
                plan_hints: Mutex::new(HashMap::new()),
                clock,
            }),
        }
    }

    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.inner.provider
    }

    /// Wait (bounded) for running generations to finish during shutdown.
    pub async fn wait_idle(&self, timeout: Duration) {
        self.inner.tasks.close();
        let _ = tokio::time::timeout(timeout, self.inner.tasks.wait()).await;
        // Their last events (done, failed) are still queued for Redis.
        self.flush_fanout(timeout).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::{
        domain::{Role, Status},
        store::messages::Message,
    };
    use confab_core::ids::{MessageId, ThreadId};

    /// A stored message with the given role, status and content.
    pub(crate) fn message(role: Role, status: Status, content: &str) -> Message {
        Message {
            id: MessageId::new(),
            thread_id: ThreadId::new(),
            role,
            content: content.into(),
            status,
            seq: 1,
            client_msg_id: None,
            reply_to: None,
            error_code: None,
            error_message: None,
            current: true,
            request_id: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
        }
    }
}
