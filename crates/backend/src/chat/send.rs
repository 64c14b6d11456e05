//! Sending: a user message is stored (deduplicated on its client id) with
//! the thread's next sequence number, in one statement (one transaction
//! with the thread when none is given, which creates it). Only then is it
//! acknowledged, announced to the user's other clients, and answered.
//!
//! When no reply of the thread is being written in this process (the
//! common case: the thread's lock is free, and is taken before the
//! statement), the same statement also starts the reply's row and reads its
//! context (`store::messages::send_question`), so the model is called right
//! after the ack. Otherwise the question alone is stored and its reply
//! waits for the thread's lock in `generate`, as retries do.

use super::{admit::Admission, context::MAX_MESSAGES, Chat, ChatEvent};
use crate::plans::limiter::Usage;
use crate::{
    domain::{ClientMsgId, MessageText, ThreadTitle},
    error::Error,
    store::{
        self,
        messages::{FirstCopy, Message, NewQuestion, NewReply},
    },
};
use confab_core::{
    ids::{MessageId, ThreadId, UserId},
    sync::MutexExt,
};
use sqlx::PgExecutor;
use tokio::sync::OwnedMutexGuard;

/// The outcome of `send`: what the acknowledgement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub thread_id: ThreadId,
    pub message_id: MessageId,
    pub seq: i64,
    /// A resend of a message already stored: nothing new happened.
    pub duplicate: bool,
    /// Where the user stands on their plan after this message (`None` for
    /// a duplicate, which was not counted again).
    pub usage: Option<Usage>,
}

impl Sent {
    fn new(stored: &Message, usage: Option<Usage>) -> Self {
        Sent {
            thread_id: stored.thread_id,
            message_id: stored.id,
            seq: stored.seq,
            duplicate: false,
            usage,
        }
    }

    fn duplicate_of(m: FirstCopy) -> Self {
        Sent {
            thread_id: m.thread_id,
            message_id: m.id,
            seq: m.seq,
            duplicate: true,
            usage: None,
        }
    }
}

/// The users whose plan is remembered (see [`Chat::check`]), at most.
const PLAN_HINTS: usize = 100_000;

/// What [`Chat::check`] found.
enum Checked {
    /// A resend: its first copy.
    Resend(FirstCopy),
    /// A new message, admitted.
    New(Admission),
}

enum Stored {
    /// The question alone: its reply is started behind the thread's lock.
    Question(Message),
    /// The question with its reply's row started and its context read.
    Started(Message, Box<Started>),
    Duplicate(Sent),
}

/// A reply whose row was started with its question, to be written.
pub(super) struct Started {
    /// The `streaming` row.
    pub reply: Message,
    pub request_id: uuid::Uuid,
    /// The thread's messages up to the question, newest first.
    pub context: Vec<Message>,
    /// The thread's lock, taken before the row was inserted.
    pub guard: OwnedMutexGuard<()>,
    /// When the reply was started (for its duration).
    pub started: std::time::Instant,
}

impl Chat {
    /// Store a user message and start its reply. A resend (same client id)
    /// finds the first copy and changes nothing. The message is admitted
    /// against the user's plan first: a refused one
    /// ([`Error::QuotaExceeded`]) leaves no row.
    pub async fn send(
        &self,
        user: UserId,
        client_msg_id: &ClientMsgId,
        thread_id: Option<ThreadId>,
        text: &MessageText,
    ) -> Result<Sent, Error> {
        let admission = match self.check(user, client_msg_id).await? {
            Checked::Resend(m) => return Ok(Sent::duplicate_of(m)),
            Checked::New(admission) => admission,
        };
        let usage = admission.usage.clone();
        match self
            .store_question(user, client_msg_id, thread_id, text)
            .await
        {
            Ok(Stored::Question(stored)) => {
                let sent = Sent::new(&stored, usage);
                // Published, so it reaches the sender's socket only after the ack
                // (which the gateway writes before it reads the hub again) and the
                // user's other sockets right away; the reply's pieces follow it.
                self.publish(user, &ChatEvent::Stored { message: stored })
                    .await;
                self.start_reply(user, sent.thread_id, sent.message_id, admission.slot);
                Ok(sent)
            }
            Ok(Stored::Started(stored, started)) => {
                let sent = Sent::new(&stored, usage);
                // As above; the reply's row is announced after it.
                self.publish(user, &ChatEvent::Stored { message: stored })
                    .await;
                self.write_started_reply(user, *started, admission.slot);
                Ok(sent)
            }
            Ok(Stored::Duplicate(sent)) => {
                self.give_back(admission).await;
                Ok(sent)
            }
            Err(e) => {
                self.give_back(admission).await;
                Err(e)
            }
        }
    }

    /// Is this a resend (the first copy), or a new message (admitted)? A
    /// resend is found before the plan counts it; that takes one query (the
    /// first copy and the user's stored plan), and the admission needs the
    /// plan. So the admission does not wait for the query: it is made at the
    /// same time on the plan the user's previous message here had, and
    /// given back whole when the query finds a resend, or a plan other than
    /// the one guessed (then the message is admitted again, on the plan
    /// read). What decides is therefore always the plan read now, as when
    /// the two ran one after the other. (While a resend's admission is out,
    /// for the length of the query, it counts: a new message of the same
    /// user admitted in that instant sees one unit fewer.) A resend is
    /// answered as soon as the query is, whether or not Redis has. A user's
    /// first message here has nothing to guess from and waits for the query.
    async fn check(&self, user: UserId, client_msg_id: &ClientMsgId) -> Result<Checked, Error> {
        let db = &self.inner.db;
        let hint = self.inner.plan_hints.locked().get(&user).cloned();
        let Some(guess) = hint else {
            let (first_copy, stored_plan) =
                store::messages::first_copy_and_plan(db, user, client_msg_id).await?;
            if let Some(m) = first_copy {
                return Ok(Checked::Resend(m));
            }
            self.hint_plan(user, &stored_plan);
            return Ok(Checked::New(
                self.admit(user, stored_plan.as_deref()).await?,
            ));
        };
        let mut admitting = {
            let (this, guess) = (self.clone(), guess.clone());
            Box::pin(async move { this.admit(user, guess.as_deref()).await })
        };
        let read = store::messages::first_copy_and_plan(db, user, client_msg_id);
        tokio::pin!(read);
        let mut admitted = None;
        let read = loop {
            tokio::select! {
                read = &mut read => break read,
                a = &mut admitting, if admitted.is_none() => admitted = Some(a),
            }
        };
        let resend = match read {
            Ok((Some(m), _)) => Ok(m),
            Err(e) => Err(Error::from(e)),
            Ok((None, stored_plan)) => {
                let admitted = match admitted {
                    Some(a) => a,
                    None => admitting.await,
                };
                if stored_plan == guess {
                    return admitted.map(Checked::New);
                }
                self.hint_plan(user, &stored_plan);
                return match admitted {
                    // Redis did not answer: no plan was checked, nor would be now.
                    Ok(a) if a.unchecked() => Ok(Checked::New(a)),
                    Ok(a) => {
                        self.give_back(a).await;
                        Ok(Checked::New(
                            self.admit(user, stored_plan.as_deref()).await?,
                        ))
                    }
                    // Refused on a plan that is not the user's: nothing was counted.
                    Err(_) => Ok(Checked::New(
                        self.admit(user, stored_plan.as_deref()).await?,
                    )),
                };
            }
        };
        // Not a new message: what was taken for it goes back.
        match admitted {
            Some(Ok(a)) => self.give_back(a).await,
            Some(Err(_)) => {}
            None => {
                let this = self.clone();
                self.inner.tasks.spawn(async move {
                    if let Ok(a) = admitting.await {
                        this.give_back(a).await;
                    }
                });
            }
        }
        resend.map(Checked::Resend)
    }

    /// Remember `plan` as `user`'s, to admit their next message on.
    fn hint_plan(&self, user: UserId, plan: &Option<String>) {
        let mut hints = self.inner.plan_hints.locked();
        if hints.len() >= PLAN_HINTS && !hints.contains_key(&user) {
            // Only guesses: forgetting them costs the next messages a wait.
            hints.clear();
        }
        hints.insert(user, plan.clone());
    }

    /// One statement for a message to an existing thread (the common case:
    /// the sequence number and the row together, and the reply's row with
    /// them when the thread's lock is free); a new thread's first message is
    /// one transaction with the thread.
    async fn store_question(
        &self,
        user: UserId,
        client_msg_id: &ClientMsgId,
        thread_id: Option<ThreadId>,
        text: &MessageText,
    ) -> Result<Stored, Error> {
        let db = &self.inner.db;
        let question = |thread_id| NewQuestion {
            id: MessageId::new(),
            thread_id,
            user_id: user,
            content: text.as_str(),
            client_msg_id,
        };
        let inserted = match thread_id {
            Some(id) => self.insert(db, question(id)).await,
            None => {
                let mut tx = db.begin().await?;
                let ws = store::profiles::default_workspace(&mut *tx, user)
                    .await?
                    .ok_or(Error::NotFound("Your workspace is missing."))?;
                let thread = store::threads::create(
                    &mut *tx,
                    user,
                    ws.id,
                    &ThreadTitle::from_first_message(text),
                )
                .await?;
                let inserted = self.insert(&mut *tx, question(thread.id)).await;
                // Otherwise dropping the transaction rolls the thread back.
                if let Ok(Some(_)) = inserted {
                    tx.commit().await?;
                }
                inserted
            }
        };
        let stored = match inserted {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(Error::NotFound(
                    "That conversation does not exist or was deleted.",
                ))
            }
            // A resend raced the first copy: the first one wins.
            Err(e) if store::is_unique_violation(&e, "messages_client_msg_id") => {
                let m = store::messages::first_copy_and_plan(db, user, client_msg_id)
                    .await?
                    .0
                    .ok_or(Error::NotFound("message vanished"))?;
                return Ok(Stored::Duplicate(Sent::duplicate_of(m)));
            }
            Err(e) => return Err(e.into()),
        };
        metrics::counter!("chat_messages_total", "role" => "user").increment(1);
        Ok(stored)
    }

    /// Insert question `q`, and start its reply's row and read its context
    /// in the same statement when the thread's lock is free (taking it).
    async fn insert<'e>(
        &self,
        db: impl PgExecutor<'e>,
        q: NewQuestion<'_>,
    ) -> Result<Option<Stored>, sqlx::Error> {
        let Ok(guard) = self.thread_lock(q.thread_id).try_lock_owned() else {
            let stored = store::messages::insert_question(db, q).await?;
            return Ok(stored.map(Stored::Question));
        };
        let started = confab_core::clock::instant();
        let info = self.inner.provider.info();
        let request_id = uuid::Uuid::new_v4();
        let reply = NewReply {
            id: MessageId::new(),
            thread_id: q.thread_id,
            user_id: q.user_id,
            question: q.id,
            model: &info.model,
            provider: info.kind,
            request_id,
        };
        let stored =
            store::messages::send_question(db, q, reply, self.inner.lease, MAX_MESSAGES).await?;
        Ok(stored.map(|s| {
            let started = Started {
                reply: s.reply,
                request_id,
                context: s.context,
                guard,
                started,
            };
            Stored::Started(s.question, Box::new(started))
        }))
    }
}
