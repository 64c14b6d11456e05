use super::Email;
use crate::error::Error;

const MAX_CHARS: usize = 80;

/// The name shown to other people and in the UI: trimmed, 1–80 characters,
/// no control characters (they would break log lines and layouts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Error::validation(
                "display_name",
                "Display name cannot be empty.",
            ));
        }
        if trimmed.chars().count() > MAX_CHARS {
            return Err(Error::validation(
                "display_name",
                format!("Display name can be at most {MAX_CHARS} characters long."),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::validation(
                "display_name",
                "Display name cannot contain control characters.",
            ));
        }
        Ok(Self(trimmed.to_string()))
    }

    /// A sign-up without a display name gets the email's local part, which a
    /// parsed `Email` guarantees to be a short, non-empty, printable string.
    pub fn from_email(email: &Email) -> Self {
        let local: String = email.local_part().chars().take(MAX_CHARS).collect();
        Self(local)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims() {
        assert_eq!(DisplayName::parse("  Alice  ").unwrap().as_str(), "Alice");
    }

    #[test]
    fn bounds_are_in_characters_not_bytes() {
        assert!(DisplayName::parse(&"é".repeat(80)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(81)).is_err());
    }

    #[test]
    fn rejects_empty_and_control_characters() {
        assert!(DisplayName::parse(" \t ").is_err());
        assert!(DisplayName::parse("Ali\u{0}ce").is_err());
    }

    #[test]
    fn defaults_to_local_part() {
        let email = Email::parse("Carol.Jones@example.com").unwrap();
        assert_eq!(DisplayName::from_email(&email).as_str(), "carol.jones");
    }
}
