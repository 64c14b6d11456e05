//! What the model sees: a fixed system prompt, then the thread's complete
//! messages before the reply, newest kept first within a budget in
//! characters (`CONFAB_LLM_CONTEXT_CHARS`). The latest message is always
//! included, however long.

use super::Chat;
use crate::{
    agent::{ChatMessage, Role},
    domain,
    error::Error,
    store::{self, messages::Message},
};
use confab_core::ids::{MessageId, ThreadId};

const SYSTEM_PROMPT: &str = "You are Confab, a helpful assistant. Answer clearly and concisely. \
Use Markdown for structure when it helps.";
/// The most earlier messages ever considered.
pub(super) const MAX_MESSAGES: i64 = 200;

impl Chat {
    /// The context of a reply to `question`: the conversation up to it.
    pub(super) async fn context(
        &self,
        thread: ThreadId,
        question: MessageId,
    ) -> Result<Vec<ChatMessage>, Error> {
        let newest_first =
            store::messages::context(&self.inner.db, thread, question, MAX_MESSAGES).await?;
        Ok(self.context_from(newest_first))
    }

    /// The context of a reply from the thread's messages up to its question,
    /// newest first (at most [`MAX_MESSAGES`], as `store::messages::context`
    /// reads them).
    pub(super) fn context_from(&self, newest_first: Vec<Message>) -> Vec<ChatMessage> {
        within_budget(newest_first, self.inner.context_chars)
    }
}

/// `newest_first` trimmed to `budget` characters, oldest first after the
/// system prompt.
fn within_budget(newest_first: Vec<Message>, mut budget: usize) -> Vec<ChatMessage> {
    let mut picked = Vec::new();
    for m in newest_first {
        let len = m.content.chars().count();
        if len > budget && !picked.is_empty() {
            break;
        }
        budget = budget.saturating_sub(len);
        let role = match m.role {
            domain::Role::User => Role::User,
            domain::Role::Assistant => Role::Assistant,
        };
        picked.push(ChatMessage {
            role,
            content: m.content,
        });
    }
    picked.push(ChatMessage {
        role: Role::System,
        content: SYSTEM_PROMPT.into(),
    });
    picked.reverse();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{chat::tests::message, domain::Status::Complete};

    fn contents(picked: &[ChatMessage]) -> Vec<(Role, &str)> {
        picked
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .collect()
    }

    #[test]
    fn newest_messages_are_kept_within_the_budget_oldest_first() {
        let newest_first = vec![
            message(domain::Role::Assistant, Complete, "cccc"),
            message(domain::Role::User, Complete, "bbbb"),
            message(domain::Role::User, Complete, "aaaa"),
        ];
        let picked = within_budget(newest_first, 9);
        assert_eq!(
            contents(&picked),
            vec![
                (Role::System, SYSTEM_PROMPT),
                (Role::User, "bbbb"),
                (Role::Assistant, "cccc"),
            ]
        );
    }

    #[test]
    fn the_latest_message_is_included_however_long() {
        let long = "x".repeat(100);
        let picked = within_budget(vec![message(domain::Role::User, Complete, &long)], 10);
        assert_eq!(
            contents(&picked),
            vec![(Role::System, SYSTEM_PROMPT), (Role::User, long.as_str())]
        );
    }
}
