//! Sending: a user message is stored (deduplicated on its client id) with
//! the thread's next sequence number, in one transaction that also creates
//! the thread when none is given. Only then is it acknowledged, announced to
//! the user's other clients, and answered.

use super::{Chat, ChatEvent};
use crate::plans::limiter::Usage;
use crate::{
    domain::{ClientMsgId, MessageText, Role, Status, ThreadTitle},
    error::Error,
    store::{self, messages::NewMessage},
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
    fn duplicate_of(m: &store::messages::Message) -> Self {
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
        let db = &self.inner.db;
        if let Some(m) = store::messages::by_client_id(db, user, client_msg_id).await? {
            return Ok(Sent::duplicate_of(&m));
        }
        let (slot, usage) = self.admit(user).await?;
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

    async fn store_question(
        &self,
        user: UserId,
        client_msg_id: &ClientMsgId,
        thread_id: Option<ThreadId>,
        text: &MessageText,
    ) -> Result<Stored, Error> {
        let db = &self.inner.db;
        let mut tx = db.begin().await?;
        let thread = match thread_id {
            Some(id) => store::threads::get(&mut *tx, user, id)
                .await?
                .ok_or(Error::NotFound(
                    "That conversation does not exist or was deleted.",
                ))?,
            None => {
                let ws = store::profiles::default_workspace(&mut *tx, user)
                    .await?
                    .ok_or(Error::NotFound("Your workspace is missing."))?;
                store::threads::create(
                    &mut *tx,
                    user,
                    ws.id,
                    &ThreadTitle::from_first_message(text),
                )
                .await?
            }
        };
        let seq = store::threads::next_seq(&mut tx, thread.id).await?;
        let inserted = store::messages::insert(
            &mut *tx,
            NewMessage {
                id: MessageId::new(),
                thread_id: thread.id,
                user_id: user,
                role: Role::User,
                content: text.as_str(),
                status: Status::Complete,
                seq,
                client_msg_id: Some(client_msg_id),
                reply_to: None,
                model: None,
                provider: None,
                request_id: None,
            },
        )
        .await;
        let stored = match inserted {
            Ok(m) => m,
            // A resend raced the first copy: the first one wins.
            Err(e) if store::is_unique_violation(&e, "messages_client_msg_id") => {
                tx.rollback().await?;
                let m = store::messages::by_client_id(db, user, client_msg_id)
                    .await?
                    .ok_or(Error::NotFound("message vanished"))?;
                return Ok(Stored::Duplicate(Sent::duplicate_of(&m)));
            }
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        metrics::counter!("chat_messages_total", "role" => "user").increment(1);
        Ok(Stored::New(stored))
    }
}
