//! Identifier types shared across services. They are UUIDs on the wire and in
//! the databases, but distinct types in code so they cannot be swapped.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use uuid::Uuid;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            Serialize,
            Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so indexes stay append-mostly.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(UserId);
id_type!(SessionId);

impl SessionId {
    /// What logs carry instead of the session id (ASVS 7.2): the first 12
    /// hex digits of its SHA-256. Enough to follow one session through the
    /// logs and to match a known session to its lines, useless to anyone
    /// who reads the logs to find a live session.
    pub fn log_tag(&self) -> SessionTag {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.0.as_bytes());
        let mut tag = [0u8; 12];
        for (i, b) in digest.iter().take(6).enumerate() {
            let hex = b"0123456789abcdef";
            tag[2 * i] = hex[usize::from(b >> 4)];
            tag[2 * i + 1] = hex[usize::from(b & 0xf)];
        }
        SessionTag(tag)
    }
}

/// A session's log tag (see [`SessionId::log_tag`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionTag([u8; 12]);

impl fmt::Display for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always ASCII hex digits.
        f.write_str(std::str::from_utf8(&self.0).unwrap_or("????????????"))
    }
}

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
id_type!(EventId);
id_type!(WorkspaceId);
id_type!(ThreadId);
id_type!(MessageId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_log_tag_is_short_stable_and_not_the_id() {
        let sid = SessionId::new();
        let tag = sid.log_tag().to_string();
        assert_eq!(tag.len(), 12);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tag, sid.log_tag().to_string());
        assert!(!sid.to_string().replace('-', "").contains(&tag));
        assert_ne!(tag, SessionId::new().log_tag().to_string());
    }
}
