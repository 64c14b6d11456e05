//! Writing a reply. It runs in a task owned by the thread (tracked by
//! [`Chat`]), not by the socket that asked for it: a dropped connection
//! neither stops nor loses it. The reply row is inserted `streaming` with
//! the thread's next sequence number when generation starts (so a client
//! resuming mid-reply finds it), each piece goes to the live stream and the
//! user's channel, and the row is completed or failed in place at the end.
//! Every outcome, our own failures included, ends the row: a reply left
//! `streaming` would spin in every client.

use super::{Chat, ChatEvent, Piece};
use crate::{
    agent::{ChatMessage, ProviderError, TokenStream},
    domain::{Role, Status},
    error::Error,
    store::{self, messages::NewMessage},
};
use confab_core::ids::{MessageId, ThreadId, UserId};
use confab_core::sync::MutexExt;
use futures::StreamExt;
use std::{sync::Arc, time::Duration};

/// Waits before automatic retries of a transient failure before the first token.
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_millis(1000)];

impl Chat {
    /// Start writing the reply to `question` in a task owned by the thread.
    pub(super) fn start_reply(&self, user: UserId, thread: ThreadId, question: MessageId) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.generate(user, thread, question).await {
                tracing::error!(error = %e, %thread, "reply generation failed");
            }
        });
    }

    fn thread_lock(&self, thread: ThreadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.thread_locks.locked();
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(thread).or_default().clone()
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
        let started = confab_core::clock::instant();
        let (id, seq) = match self.insert_reply(user, thread, question).await {
            Ok(v) => v,
            Err(e @ Error::NotRetryable) => {
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

        let mut text = String::new();
        let mut vanished = false;
        let outcome = self.stream_reply(user, thread, id, seq, &mut text).await;
        let db = &self.inner.db;
        let result = match outcome {
            Ok(Ok(())) => match store::messages::complete(db, id, &text).await {
                Ok(false) => {
                    // The thread was deleted while the reply was written.
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
            Ok(Err(provider)) => {
                tracing::warn!(error = %provider, %thread, message = %id, "reply failed");
                metrics::counter!("chat_reply_failures_total", "code" => provider.code())
                    .increment(1);
                let (code, message) = (provider.code(), provider.user_message());
                let stored = store::messages::fail(db, id, &text, code, &message).await;
                self.publish_failed(user, thread, Some(id), code, &message, true)
                    .await;
                stored.map_err(Error::from)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            // Our side failed (database, Redis): best effort to end the reply.
            let message =
                "Something went wrong on our side while writing this reply. Retry to try again.";
            let _ = store::messages::fail(db, id, &text, "internal", message).await;
            self.publish_failed(user, thread, Some(id), "internal", message, true)
                .await;
            tracing::error!(error = %e, %thread, message = %id, "reply aborted");
        }
        if vanished {
            // Nothing may keep the pieces of a deleted conversation.
            self.drop_live(id).await;
        } else {
            self.end_live(id).await;
        }
        result
    }

    /// Insert the `streaming` reply row with the thread's next seq. A
    /// question that already has a good reply (a second retry racing the
    /// first) is refused by a unique index.
    async fn insert_reply(
        &self,
        user: UserId,
        thread: ThreadId,
        question: MessageId,
    ) -> Result<(MessageId, i64), Error> {
        let info = self.inner.provider.info();
        let mut tx = self.inner.db.begin().await?;
        let seq = store::threads::next_seq(&mut tx, thread).await?;
        let inserted = store::messages::insert(
            &mut *tx,
            NewMessage {
                id: MessageId::new(),
                thread_id: thread,
                user_id: user,
                role: Role::Assistant,
                content: "",
                status: Status::Streaming,
                seq,
                client_msg_id: None,
                reply_to: Some(question),
                model: Some(&info.model),
                provider: Some(info.kind),
            },
        )
        .await;
        match inserted {
            Ok(reply) => {
                tx.commit().await?;
                Ok((reply.id, seq))
            }
            Err(e) if store::is_unique_violation(&e, "messages_one_good_reply") => {
                Err(Error::NotRetryable)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stream the provider's reply into pieces. The outer error is ours
    /// (context query); the inner one the provider's.
    async fn stream_reply(
        &self,
        user: UserId,
        thread: ThreadId,
        id: MessageId,
        seq: i64,
        text: &mut String,
    ) -> Result<Result<(), ProviderError>, Error> {
        let context = self.context(thread, seq).await?;
        let mut stream = match self.open_stream(context).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let mut index = 0u64;
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = self.inner.shutdown.cancelled() => Some(Err(ProviderError::Cut)),
            };
            match next {
                None => return Ok(Ok(())),
                Some(Err(e)) => return Ok(Err(e)),
                Some(Ok(piece)) => {
                    text.push_str(&piece);
                    self.append_live(id, index, &piece).await;
                    let delta = ChatEvent::Delta(Piece {
                        thread_id: thread,
                        message_id: id,
                        seq,
                        index,
                        text: piece,
                    });
                    self.publish(user, &delta).await;
                    index += 1;
                }
            }
        }
    }

    /// Open the provider's stream, retrying transient failures that happen
    /// before the first token (after it, a retry would repeat text).
    async fn open_stream(&self, context: Vec<ChatMessage>) -> Result<TokenStream, ProviderError> {
        let mut attempt = 0;
        loop {
            let result = match self.inner.provider.stream(context.clone()).await {
                Ok(mut s) => match s.next().await {
                    Some(Ok(first)) => {
                        Ok(futures::stream::once(async { Ok(first) }).chain(s).boxed())
                    }
                    Some(Err(e)) => Err(e),
                    None => Ok(futures::stream::empty().boxed()),
                },
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_transient() && attempt < RETRY_BACKOFF.len() => {
                    tracing::info!(error = %e, attempt, "transient provider failure, retrying");
                    tokio::select! {
                        _ = confab_core::clock::sleep(RETRY_BACKOFF[attempt]) => {}
                        _ = self.inner.shutdown.cancelled() => return Err(ProviderError::Cut),
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn publish_failed(
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
        };
        self.publish(user, &failed).await;
    }
}
