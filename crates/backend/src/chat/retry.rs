//! Retry, Regenerate and Stop generating.
//!
//! Retry (of a failed reply) and Regenerate (of any finished one) are the
//! same thing: a fresh attempt at the reply's question, in the same thread,
//! which becomes the question's current reply; earlier attempts stay in the
//! history. So is retrying a question itself, the way out when its reply
//! never started (the process stopped right after the ack; a resend is only
//! acknowledged as a duplicate). One attempt per question is written at a
//! time (a unique index makes that atomic).
//!
//! Stop ends a reply being written, keeping what it has. The reply may be
//! written by another backend instance: the request then travels on the
//! Redis stop channel, which every instance's hub hears.

use super::Chat;
use crate::{
    domain::{Role, Status},
    error::Error,
    store,
    store::messages::Message,
};
use confab_core::ids::{MessageId, UserId};
use redis::AsyncCommands;

impl Chat {
    /// Generate a fresh reply to the question of `id` (a finished reply, or
    /// the question itself).
    pub async fn retry(&self, user: UserId, id: MessageId) -> Result<(), Error> {
        let m = store::messages::get(&self.inner.db, user, id)
            .await?
            .ok_or(Error::NotFound("That message does not exist."))?;
        if m.status == Status::Streaming {
            return Err(Error::ReplyInProgress);
        }
        let question = question_to_answer(&m).ok_or(Error::NotRetryable)?;
        if store::messages::has_streaming_reply(&self.inner.db, question).await? {
            return Err(Error::ReplyInProgress);
        }
        let stored_plan = store::profiles::plan_of(&self.inner.db, user).await?;
        let admission = self.admit(user, stored_plan.as_deref()).await?;
        self.start_reply(user, m.thread_id, question, admission.slot);
        Ok(())
    }

    /// Stop reply `id`, which must be still being written.
    pub async fn stop(&self, user: UserId, id: MessageId) -> Result<(), Error> {
        let m = store::messages::get(&self.inner.db, user, id)
            .await?
            .ok_or(Error::NotFound("That message does not exist."))?;
        if m.role != Role::Assistant || m.status != Status::Streaming {
            return Err(Error::NotStoppable);
        }
        if !self.stop_local(id) {
            let mut redis = self.inner.redis.clone();
            let _: () = redis
                .publish(self.inner.keys.stops_channel(), id.to_string())
                .await?;
        }
        Ok(())
    }
}

/// The question a new attempt of `m` answers, unless `m` is a reply still
/// being written.
fn question_to_answer(m: &Message) -> Option<MessageId> {
    match (m.role, m.status, m.reply_to) {
        (Role::Assistant, Status::Streaming, _) => None,
        (Role::Assistant, _, Some(q)) => Some(q),
        (Role::User, _, _) => Some(m.id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::tests::message;

    #[test]
    fn any_finished_reply_retries_its_question() {
        let q = MessageId::new();
        for status in [Status::Failed, Status::Complete, Status::Stopped] {
            let mut reply = message(Role::Assistant, status, "text");
            reply.reply_to = Some(q);
            assert_eq!(question_to_answer(&reply), Some(q), "{status:?}");
        }
    }

    #[test]
    fn a_question_retries_itself_whatever_its_state() {
        let question = message(Role::User, Status::Complete, "hi");
        assert_eq!(question_to_answer(&question), Some(question.id));
    }

    #[test]
    fn a_reply_being_written_is_not_retried() {
        let mut reply = message(Role::Assistant, Status::Streaming, "text");
        reply.reply_to = Some(MessageId::new());
        assert_eq!(question_to_answer(&reply), None);
    }
}
