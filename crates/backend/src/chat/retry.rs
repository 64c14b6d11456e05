//! Retrying: a failed reply's question gets a fresh reply in the same
//! thread. So does a question whose reply never started (the process
//! stopped right after the ack; a resend is only acknowledged as a
//! duplicate). One good reply per question: no retry while one is being
//! written or after one was.

use super::Chat;
use crate::{
    domain::{Role, Status},
    error::Error,
    store,
    store::messages::Message,
};
use confab_core::ids::{MessageId, UserId};

impl Chat {
    /// Generate a fresh reply to the question of `id` (a failed reply, or
    /// the question itself).
    pub async fn retry(&self, user: UserId, id: MessageId) -> Result<(), Error> {
        let m = store::messages::get(&self.inner.db, user, id)
            .await?
            .ok_or(Error::NotFound("That message does not exist."))?;
        let question = question_to_answer(&m).ok_or(Error::NotRetryable)?;
        if store::messages::has_live_or_complete_reply(&self.inner.db, question).await? {
            return Err(Error::NotRetryable);
        }
        self.start_reply(user, m.thread_id, question);
        Ok(())
    }
}

/// The question a retry of `m` answers, if `m` may be retried at all.
fn question_to_answer(m: &Message) -> Option<MessageId> {
    match (m.role, m.status, m.reply_to) {
        (Role::Assistant, Status::Failed, Some(q)) => Some(q),
        (Role::User, _, _) => Some(m.id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::tests::message;

    #[test]
    fn a_failed_reply_retries_its_question() {
        let q = MessageId::new();
        let mut failed = message(Role::Assistant, Status::Failed, "partial");
        failed.reply_to = Some(q);
        assert_eq!(question_to_answer(&failed), Some(q));
    }

    #[test]
    fn a_question_retries_itself_whatever_its_state() {
        let question = message(Role::User, Status::Complete, "hi");
        assert_eq!(question_to_answer(&question), Some(question.id));
    }

    #[test]
    fn good_or_running_replies_are_not_retryable() {
        for status in [Status::Complete, Status::Streaming] {
            let mut reply = message(Role::Assistant, status, "text");
            reply.reply_to = Some(MessageId::new());
            assert_eq!(question_to_answer(&reply), None, "{status:?}");
        }
    }
}
