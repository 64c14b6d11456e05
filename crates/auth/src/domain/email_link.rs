use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 256 bits of entropy: unguessable, so a fast hash is enough to store it.
const BYTES: usize = 32;
/// Anything longer than this cannot be one of ours; refuse before hashing.
const MAX_LEN: usize = 128;

/// The secret in an email-change confirmation link. Only its SHA-256 is
/// stored (`email_changes.token_hash`): a leaked database does not let
/// anyone confirm a pending change.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailLinkSecret(String);

impl EmailLinkSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A secret from a link; `None` if it cannot possibly be one of ours.
    pub fn from_client(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let plausible = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        plausible.then(|| Self(raw.to_string()))
    }

    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EmailLinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailLinkSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_url_safe_and_only_plausible_ones_are_taken() {
        let s = EmailLinkSecret::generate();
        assert_eq!(s.as_str().len(), 43);
        assert_eq!(EmailLinkSecret::from_client(s.as_str()), Some(s.clone()));
        assert_ne!(s, EmailLinkSecret::generate());
        assert_eq!(s.hash().len(), 32);
        let long = "a".repeat(129);
        for bad in [
            "",
            "  ",
            "a'; DROP TABLE users;--",
            "<b>x</b>",
            long.as_str(),
        ] {
            assert!(EmailLinkSecret::from_client(bad).is_none(), "{bad}");
        }
        assert!(!format!("{s:?}").contains(s.as_str()));
    }
}
