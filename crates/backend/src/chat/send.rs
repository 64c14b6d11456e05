//! Sending: a user message is stored (deduplicated on its client id) with
//! the thread's next sequence number, in one statement (one transaction
//! with the thread when none is given, which creates it). Only then is it
//! acknowledged, announced to the user's other clients, and answered.

use super::{Chat, ChatEvent};
use crate::plans::limiter::Usage;
use crate::{
    domain::{ClientMsgId, MessageText, ThreadTitle},
    error::Error,
    store::{
        self,
        messages::{FirstCopy, NewQuestion},
    },
};
use confab_core::ids::{MessageId, ThreadId, UserId};

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

enum Stored {
    New(store::messages::Message),
    Duplicate(Sent),
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
        // One query: a resend is found before the plan counts it.
        let (first_copy, stored_plan) =
            store::messages::first_copy_and_plan(&self.inner.db, user, client_msg_id).await?;
        if let Some(m) = first_copy {
            return Ok(Sent::duplicate_of(m));
        }
        let (slot, usage) = self.admit(user, stored_plan).await?;
        match self
            .store_question(user, client_msg_id, thread_id, text)
            .await
        {
            Ok(Stored::New(stored)) => {
                let sent = Sent {
                    thread_id: stored.thread_id,
                    message_id: stored.id,
                    seq: stored.seq,
                    duplicate: false,
                    usage,
                };
                // Published, so it reaches the sender's socket only after the ack
                // (which the gateway writes before it reads the hub again) and the
                // user's other sockets right away; the reply's pieces follow it.
                self.publish(user, &ChatEvent::Stored { message: stored })
                    .await;
                self.start_reply(user, sent.thread_id, sent.message_id, slot);
                Ok(sent)
            }
            Ok(Stored::Duplicate(sent)) => {
                self.give_back(slot).await;
                Ok(sent)
            }
            Err(e) => {
                self.give_back(slot).await;
                Err(e)
            }
        }
    }

    /// One statement for a message to an existing thread (the common case:
    /// the sequence number and the row together); a new thread's first
    /// message is one transaction with the thread.
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
            Some(id) => store::messages::insert_question(db, question(id)).await,
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
                let inserted =
                    store::messages::insert_question(&mut *tx, question(thread.id)).await;
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
        Ok(Stored::New(stored))
    }
}
