//! Writing a reply. It runs in a task owned by the thread (tracked by
//! [`Chat`]), not by the socket that asked for it: a dropped connection
//! neither stops nor loses it. The reply row is inserted `streaming` with
//! the thread's next sequence number when generation starts (so a client
//! resuming mid-reply finds it), as the question's current attempt (for a
//! new question to a thread with no reply being written, in the statement
//! that stores the question: see `send`); each
//! piece goes to the live stream and the user's channel, and the row is
//! completed, failed or stopped in place at the end. Every outcome, our own
//! failures included, ends the row: a reply left `streaming` would spin in
//! every client.

use super::{Chat, ChatEvent, Piece};
use crate::plans::limiter::Slot;
use crate::{
    agent::{ChatMessage, ProviderError},
    error::Error,
    markdown,
    store::{self, messages::NewReply},
};
use confab_core::{
    clock,
    ids::{MessageId, ThreadId, UserId},
    sync::MutexExt,
};
use futures::StreamExt;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How often a streaming reply's pieces carry the rendered reply so far.
const RENDER_EVERY: Duration = Duration::from_millis(150);

/// How a reply's stream ended.
enum Ending {
    Complete,
    Stopped,
    Failed(ProviderError),
    /// The row is no longer ours: another instance found our lease expired
    /// and failed it, or its thread was deleted (see `lease.rs`).
    Taken,
}

/// The reply row being written.
struct Reply {
    id: MessageId,
    seq: i64,
    request_id: uuid::Uuid,
}

impl Chat {
    /// Start writing a reply to `question` in a task owned by the thread.
    /// `slot` is the plan's generation slot it holds, given back when the
    /// reply ends, however it ends.
    pub(super) fn start_reply(
        &self,
        user: UserId,
        thread: ThreadId,
        question: MessageId,
        slot: Option<Slot>,
    ) {
        let this = self.clone();
        self.spawn_reply(thread, slot, async move {
            this.generate(user, thread, question).await
        });
    }

    /// Run `write` (one reply's writing) in a task owned by the thread, not
    /// by the socket that asked for it; `slot` is given back when it ends,
    /// however it ends.
    fn spawn_reply(
        &self,
        thread: ThreadId,
        slot: Option<Slot>,
        write: impl std::future::Future<Output = Result<(), Error>> + Send + 'static,
    ) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = write.await {
                tracing::error!(error = %e, %thread, "reply generation failed");
            }
            if let Some(slot) = slot {
                this.inner.limiter.release(slot).await;
            }
        });
    }

    pub(super) fn thread_lock(&self, thread: ThreadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.thread_locks.locked();
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(thread).or_default().clone()
    }

    /// Stop reply `id` if this process is writing it; false if it is not.
    pub(crate) fn stop_local(&self, id: MessageId) -> bool {
        let running = self.inner.running.locked();
        match running.get(&id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    async fn generate(
        &self,
        user: UserId,
        thread: ThreadId,
        question: MessageId,
    ) -> Result<(), Error> {
        let lock = self.thread_lock(thread);
        let _guard = lock.lock().await;
        if self.inner.shutdown.is_cancelled() {
            // Queued behind another reply while the process stops: leave the
            // question unanswered (retryable) rather than start what cannot finish.
            return Ok(());
        }
        let started = clock::instant();
        // The context does not depend on the reply's row (it ends at the
        // question): both are read at once, on two connections.
        let (reply, context) = tokio::join!(
            self.insert_reply(user, thread, question),
            self.context(thread, question)
        );
        let reply = match reply {
            Ok(v) => v,
            Err(e @ Error::ReplyInProgress) => {
                let message = e.public_message();
                self.publish_failed(user, thread, None, e.code(), &message, false)
                    .await;
                return Ok(());
            }
            Err(e) => {
                let msg = "Confab could not start a reply. Retry in a moment.";
                self.publish_failed(user, thread, Some(question), "internal", msg, true)
                    .await;
                return Err(e);
            }
        };
        let stop = self.stoppable(reply.id);
        self.run_reply(user, thread, reply, context, started, stop)
            .await
    }

    /// Write a reply whose row `send` started together with its question
    /// (`store::messages::send_question`), in a task owned by the thread,
    /// holding the thread's lock (`guard`, taken before the row was) so that
    /// no other reply of the thread is written meanwhile. `slot` as for
    /// [`Chat::start_reply`].
    pub(super) fn write_started_reply(
        &self,
        user: UserId,
        started: super::send::Started,
        slot: Option<Slot>,
    ) {
        let this = self.clone();
        let thread = started.reply.thread_id;
        self.spawn_reply(thread, slot, async move {
            let super::send::Started {
                reply,
                request_id,
                context,
                guard,
                started,
            } = started;
            let _guard = guard;
            let written = Reply {
                id: reply.id,
                seq: reply.seq,
                request_id,
            };
            // Stoppable before any client hears of it.
            let stop = this.stoppable(reply.id);
            this.publish(user, &ChatEvent::Stored { message: reply })
                .await;
            let context = Ok(this.context_from(context));
            this.run_reply(user, thread, written, context, started, stop)
                .await
        });
    }

    /// The Stop switch of reply `id`, which this process now writes.
    fn stoppable(&self, id: MessageId) -> CancellationToken {
        let stop = CancellationToken::new();
        self.inner.running.locked().insert(id, stop.clone());
        stop
    }

    /// Write reply `reply`, whose row is started, to its end.
    async fn run_reply(
        &self,
        user: UserId,
        thread: ThreadId,
        reply: Reply,
        context: Result<Vec<ChatMessage>, Error>,
        started: std::time::Instant,
        stop: CancellationToken,
    ) -> Result<(), Error> {
        let id = reply.id;
        let span = tracing::info_span!(
            "reply",
            request_id = %reply.request_id,
            user = %user,
            %thread,
            message = %id,
        );
        let result = self
            .write_reply(user, thread, &reply, context, started, stop)
            .instrument(span)
            .await;
        self.inner.running.locked().remove(&id);
        result
    }

    async fn write_reply(
        &self,
        user: UserId,
        thread: ThreadId,
        reply: &Reply,
        context: Result<Vec<ChatMessage>, Error>,
        started: std::time::Instant,
        stop: CancellationToken,
    ) -> Result<(), Error> {
        let (id, seq) = (reply.id, reply.seq);
        let mut text = String::new();
        let mut vanished = false;
        let outcome = match context {
            Ok(context) => {
                self.stream_reply(user, thread, reply, context, &stop, &mut text)
                    .await
            }
            Err(e) => Err(e),
        };
        let db = &self.inner.db;
        let result = match outcome {
            Ok(Ending::Complete) => match store::messages::complete(db, id, &text).await {
                Ok(false) => {
                    // The thread was deleted while the reply was written, or
                    // another instance failed it (our lease had lapsed).
                    vanished = true;
                    Ok(())
                }
                Ok(true) => {
                    let done = ChatEvent::Completed {
                        thread_id: thread,
                        message_id: id,
                        seq,
                        content: text.clone(),
                    };
                    self.publish(user, &done).await;
                    metrics::counter!("chat_messages_total", "role" => "assistant").increment(1);
                    metrics::histogram!("chat_reply_seconds")
                        .record(started.elapsed().as_secs_f64());
                    Ok(())
                }
                Err(e) => Err(Error::from(e)),
            },
            Ok(Ending::Taken) => {
                tracing::warn!("reply was ended elsewhere while being written");
                vanished = true;
                Ok(())
            }
            Ok(Ending::Stopped) => {
                tracing::info!(chars = text.chars().count(), "reply stopped by its user");
                metrics::counter!("chat_replies_stopped_total").increment(1);
                let stored = store::messages::stop(db, id, &text).await;
                let stopped = ChatEvent::Stopped {
                    thread_id: thread,
                    message_id: id,
                    seq,
                    content: text.clone(),
                };
                self.publish(user, &stopped).await;
                stored.map_err(Error::from)
            }
            Ok(Ending::Failed(provider)) => {
                let kind = provider.kind().as_str();
                let (code, message) = (provider.code(), provider.user_message());
                let retryable = provider.is_retryable();
                // The one line an operator needs for this failure.
                tracing::warn!(
                    request_id = %reply.request_id,
                    user_id = %user,
                    thread_id = %thread,
                    message_id = %id,
                    provider = self.inner.provider.info().kind,
                    kind,
                    code,
                    retryable,
                    latency_ms = started.elapsed().as_millis() as u64,
                    partial_chars = text.chars().count(),
                    error = %provider,
                    "reply failed"
                );
                metrics::counter!("chat_reply_failures_total", "code" => code).increment(1);
                metrics::counter!(
                    "llm_failures_total",
                    "provider" => self.inner.provider.info().kind,
                    "kind" => kind
                )
                .increment(1);
                match store::messages::fail(db, id, &text, code, &message).await {
                    Ok(true) => {
                        let failed = ChatEvent::Failed {
                            thread_id: thread,
                            message_id: Some(id),
                            code: code.into(),
                            message,
                            retryable,
                            partial: text.clone(),
                            request_id: Some(reply.request_id),
                        };
                        self.publish(user, &failed).await;
                        Ok(())
                    }
                    // Ended elsewhere meanwhile: nothing more to say.
                    Ok(false) => {
                        vanished = true;
                        Ok(())
                    }
                    Err(e) => Err(Error::from(e)),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            // Our side failed (database, Redis): best effort to end the reply.
            let message =
                "Something went wrong on our side while writing this reply. Retry to try again.";
            if let Ok(true) = store::messages::fail(db, id, &text, "internal", message).await {
                let failed = ChatEvent::Failed {
                    thread_id: thread,
                    message_id: Some(id),
                    code: "internal".into(),
                    message: message.into(),
                    retryable: true,
                    partial: text.clone(),
                    request_id: Some(reply.request_id),
                };
                self.publish(user, &failed).await;
            }
            tracing::error!(error = %e, "reply aborted");
        }
        if vanished {
            // Nothing may keep the pieces of a deleted conversation; a reply
            // failed elsewhere was ended there.
            self.drop_live(id);
        } else {
            self.end_live(id);
        }
        result
    }

    /// Insert the `streaming` reply row with the thread's next seq, as the
    /// question's current attempt, and announce it (so clients put it in
    /// place of an attempt it replaces). A question already being answered
    /// (a second Retry racing the first) is refused by a unique index. The
    /// question was checked to be the user's by `send` or `retry`.
    async fn insert_reply(
        &self,
        user: UserId,
        thread: ThreadId,
        question: MessageId,
    ) -> Result<Reply, Error> {
        let info = self.inner.provider.info();
        let request_id = uuid::Uuid::new_v4();
        let new = NewReply {
            id: MessageId::new(),
            thread_id: thread,
            user_id: user,
            question,
            model: &info.model,
            provider: info.kind,
            request_id,
        };
        match store::messages::start_reply(&self.inner.db, new, self.inner.lease).await {
            Ok(Some(reply)) => {
                let (id, seq) = (reply.id, reply.seq);
                self.publish(user, &ChatEvent::Stored { message: reply })
                    .await;
                Ok(Reply {
                    id,
                    seq,
                    request_id,
                })
            }
            Ok(None) => Err(Error::NotFound(
                "That conversation does not exist or was deleted.",
            )),
            Err(e) if store::is_unique_violation(&e, "messages_one_attempt_streaming") => {
                Err(Error::ReplyInProgress)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stream the provider's reply to `context` into pieces. The error is
    /// ours (Redis, the database); the provider's failures are an [`Ending`].
    async fn stream_reply(
        &self,
        user: UserId,
        thread: ThreadId,
        reply: &Reply,
        context: Vec<ChatMessage>,
        stop: &CancellationToken,
        text: &mut String,
    ) -> Result<Ending, Error> {
        let shutdown = &self.inner.shutdown;
        // The lease is renewed while the provider is asked (it may take
        // long) and while it streams; see `lease.rs`.
        let mut renew_at = clock::instant() + self.renew_every();
        // Stopping drops the stream, which closes the provider connection.
        let mut stream = tokio::select! {
            s = self.inner.provider.stream(context) => match s {
                Ok(s) => s,
                Err(e) => return Ok(Ending::Failed(e)),
            },
            _ = stop.cancelled() => return Ok(Ending::Stopped),
            _ = shutdown.cancelled() => return Ok(Ending::Failed(ProviderError::Cut)),
            taken = self.hold_lease(reply.id, &mut renew_at) => return taken,
        };
        let mut index = 0u64;
        let mut chars = 0usize;
        let max_chars = self.inner.max_reply_chars;
        let mut rendered_at = clock::instant();
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = stop.cancelled() => return Ok(Ending::Stopped),
                _ = shutdown.cancelled() => Some(Err(ProviderError::Cut)),
                taken = self.hold_lease(reply.id, &mut renew_at) => return taken,
            };
            match next {
                None => return Ok(Ending::Complete),
                Some(Err(e)) => return Ok(Ending::Failed(e)),
                Some(Ok(mut piece)) => {
                    let n = piece.chars().count();
                    let too_long = chars + n > max_chars;
                    if too_long {
                        // Keep exactly the longest reply allowed.
                        piece = piece.chars().take(max_chars - chars).collect();
                    }
                    chars += n;
                    if piece.is_empty() && too_long {
                        return Ok(Ending::Failed(ProviderError::TooLong { max_chars }));
                    }
                    text.push_str(&piece);
                    self.append_live(reply.id, index, &piece);
                    let html = (index == 0 || rendered_at.elapsed() >= RENDER_EVERY).then(|| {
                        rendered_at = clock::instant();
                        markdown::render(text)
                    });
                    let delta = ChatEvent::Delta(Piece {
                        thread_id: thread,
                        message_id: reply.id,
                        seq: reply.seq,
                        index,
                        text: piece,
                        html,
                    });
                    self.publish(user, &delta).await;
                    index += 1;
                    if too_long {
                        // Dropping the stream closes the provider's connection.
                        return Ok(Ending::Failed(ProviderError::TooLong { max_chars }));
                    }
                }
            }
        }
    }

    /// Renew the lease of reply `id` whenever it is due; returns only when
    /// the reply was ended elsewhere. A renewal that fails (database away) is
    /// tried again at the next turn; if the lease lapses meanwhile, another
    /// instance fails the reply and the next renewal says so.
    async fn hold_lease(
        &self,
        id: MessageId,
        renew_at: &mut std::time::Instant,
    ) -> Result<Ending, Error> {
        loop {
            clock::sleep_until(*renew_at).await;
            *renew_at = clock::instant() + self.renew_every();
            match self.renew_lease(id).await {
                Ok(true) => {}
                Ok(false) => return Ok(Ending::Taken),
                Err(e) => {
                    tracing::warn!(error = %e, message = %id, "could not renew a reply lease")
                }
            }
        }
    }

    pub(super) async fn publish_failed(
        &self,
        user: UserId,
        thread: ThreadId,
        message_id: Option<MessageId>,
        code: &str,
        message: &str,
        retryable: bool,
    ) {
        let failed = ChatEvent::Failed {
            thread_id: thread,
            message_id,
            code: code.into(),
            message: message.into(),
            retryable,
            partial: String::new(),
            request_id: None,
        };
        self.publish(user, &failed).await;
    }
}
