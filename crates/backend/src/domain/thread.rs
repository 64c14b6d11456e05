use super::MessageText;
use crate::error::Error;

/// A thread's title: trimmed, at most 200 characters; "New chat" when none
/// is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadTitle(String);

impl ThreadTitle {
    pub const MAX_CHARS: usize = 200;
    const DEFAULT: &'static str = "New chat";
    const IMPORTED: &'static str = "Imported chat";
    /// How much of the first message a generated title keeps.
    const FROM_MESSAGE_CHARS: usize = 60;

    /// Trimmed; `Ok(None)` when blank; `Err(())` when too long.
    fn bounded(raw: &str) -> Result<Option<Self>, ()> {
        let title = raw.trim();
        if title.chars().count() > Self::MAX_CHARS {
            return Err(());
        }
        Ok((!title.is_empty()).then(|| Self(title.into())))
    }

    fn too_long() -> Error {
        Error::invalid(
            "invalid_title",
            Some("title"),
            "The title is longer than 200 characters.",
        )
    }

    /// The title of a new thread (`POST /v1/threads`): optional.
    pub fn parse(raw: Option<&str>) -> Result<Self, Error> {
        let title = Self::bounded(raw.unwrap_or("")).map_err(|()| Self::too_long())?;
        Ok(title.unwrap_or_else(|| Self(Self::DEFAULT.into())))
    }

    /// A new title for an existing thread (`PATCH /v1/threads/{id}`): required.
    pub fn parse_rename(raw: &str) -> Result<Self, Error> {
        Self::bounded(raw)
            .map_err(|()| Self::too_long())?
            .ok_or_else(|| Error::invalid("invalid_title", Some("title"), "The title is empty."))
    }

    /// The title of an imported thread; `None` when it is too long (the
    /// importer names the conversation in its error).
    pub fn imported(raw: &str) -> Option<Self> {
        let title = Self::bounded(raw).ok()?;
        Some(title.unwrap_or_else(|| Self(Self::IMPORTED.into())))
    }

    /// The title of a thread started by sending a message: the message's
    /// first non-blank line, at most 60 characters (then "…").
    pub fn from_first_message(text: &MessageText) -> Self {
        let line = text
            .as_str()
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or(Self::DEFAULT);
        let mut title: String = line.chars().take(Self::FROM_MESSAGE_CHARS).collect();
        if line.chars().count() > Self::FROM_MESSAGE_CHARS {
            title.push('…');
        }
        Self(title)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> MessageText {
        MessageText::parse(s.into(), 1000).unwrap()
    }

    #[test]
    fn title_is_first_line_truncated() {
        let t = ThreadTitle::from_first_message(&text("\n  hello there\nsecond"));
        assert_eq!(t.as_str(), "hello there");
        let long = "x".repeat(100);
        let t = ThreadTitle::from_first_message(&text(&long));
        assert_eq!(t.as_str().chars().count(), 61);
        assert!(t.as_str().ends_with('…'));
    }

    #[test]
    fn a_chosen_title_is_trimmed_defaulted_and_bounded() {
        assert_eq!(
            ThreadTitle::parse(Some("  Plans ")).unwrap().as_str(),
            "Plans"
        );
        assert_eq!(ThreadTitle::parse(None).unwrap().as_str(), "New chat");
        assert_eq!(
            ThreadTitle::parse(Some("   ")).unwrap().as_str(),
            "New chat"
        );
        assert!(ThreadTitle::parse(Some(&"x".repeat(200))).is_ok());
        let e = ThreadTitle::parse(Some(&"x".repeat(201))).unwrap_err();
        assert_eq!((e.code(), e.status().as_u16()), ("invalid_title", 422));
    }

    #[test]
    fn a_new_name_is_required_and_bounded() {
        assert_eq!(
            ThreadTitle::parse_rename(" Trip ").unwrap().as_str(),
            "Trip"
        );
        let e = ThreadTitle::parse_rename("  ").unwrap_err();
        assert_eq!(e.public_message(), "The title is empty.");
        let e = ThreadTitle::parse_rename(&"x".repeat(201)).unwrap_err();
        assert_eq!(e.code(), "invalid_title");
    }

    #[test]
    fn an_imported_title_defaults_and_is_bounded() {
        assert_eq!(ThreadTitle::imported(" A ").unwrap().as_str(), "A");
        assert_eq!(ThreadTitle::imported("").unwrap().as_str(), "Imported chat");
        assert_eq!(ThreadTitle::imported(&"x".repeat(201)), None);
    }
}
