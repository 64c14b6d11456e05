use crate::error::Error;
use serde::{Deserialize, Serialize};

/// Who wrote a message (`messages.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Where a message is in its life (`messages.status`): a question is
/// `complete` when stored; a reply is `streaming` while it is written, then
/// `complete` or `failed`, or `stopped` when its user stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Status {
    Complete,
    Streaming,
    Failed,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Streaming => "streaming",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
        }
    }
}

/// The id a client gives each message it sends, so a resend is recognised:
/// 1–128 characters, none of them control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    const MAX_CHARS: usize = 128;

    pub fn parse(raw: String) -> Result<Self, Error> {
        let ok = !raw.is_empty()
            && raw.chars().count() <= Self::MAX_CHARS
            && !raw.chars().any(char::is_control);
        if !ok {
            return Err(Error::invalid(
                "invalid_message",
                None,
                "client_msg_id must be 1–128 printable characters.",
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The text of a message a user sends: not blank, at most the configured
/// number of characters (`CONFAB_MAX_MESSAGE_CHARS`). Stored as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(raw: String, max_chars: usize) -> Result<Self, Error> {
        if raw.trim().is_empty() {
            return Err(Error::invalid(
                "invalid_message",
                None,
                "The message is empty.",
            ));
        }
        if raw.chars().count() > max_chars {
            return Err(Error::invalid(
                "message_too_long",
                None,
                format!(
                    "The message is longer than {max_chars} characters; shorten it or split it up."
                ),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_short_and_printable() {
        assert_eq!(ClientMsgId::parse("c-1".into()).unwrap().as_str(), "c-1");
        assert!(ClientMsgId::parse("x".repeat(128)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(129),
            "a\nb".into(),
            "\u{7}".into(),
        ] {
            let e = ClientMsgId::parse(bad.clone()).unwrap_err();
            assert_eq!(e.code(), "invalid_message", "{bad:?}");
        }
    }

    #[test]
    fn message_text_is_not_blank_and_not_too_long() {
        assert_eq!(
            MessageText::parse("  hi \n".into(), 10).unwrap().as_str(),
            "  hi \n"
        );
        assert_eq!(
            MessageText::parse(" \n\t".into(), 10).unwrap_err().code(),
            "invalid_message"
        );
        assert!(MessageText::parse("é".repeat(10), 10).is_ok());
        let e = MessageText::parse("é".repeat(11), 10).unwrap_err();
        assert_eq!(e.code(), "message_too_long");
        assert!(e.public_message().contains("longer than 10 characters"));
    }

    #[test]
    fn roles_and_statuses_read_as_their_database_text() {
        assert_eq!(serde_json::to_value(Role::Assistant).unwrap(), "assistant");
        assert_eq!(
            serde_json::to_value(Status::Streaming).unwrap(),
            "streaming"
        );
        assert_eq!(Role::User.as_str(), "user");
    }
}
