use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 256 bits of entropy: unguessable, so a fast hash is enough to store it.
const BYTES: usize = 32;
/// Anything longer than this cannot be one of ours; refuse before hashing.
const MAX_LEN: usize = 128;

/// The opaque secret half of a refresh token. Only its SHA-256 is stored, so
/// a leaked database does not hand out sessions.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshSecret(String);

impl RefreshSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A token presented by a client; `None` if it cannot possibly be valid.
    pub fn from_client(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (!raw.is_empty() && raw.len() <= MAX_LEN).then(|| Self(raw.to_string()))
    }

    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_unique_urlsafe_and_round_trip() {
        let a = RefreshSecret::generate();
        let b = RefreshSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let back = RefreshSecret::from_client(a.as_str()).unwrap();
        assert_eq!(back.hash(), a.hash());
        assert_eq!(a.hash().len(), 32);
    }

    #[test]
    fn rejects_empty_and_oversized() {
        assert!(RefreshSecret::from_client("  ").is_none());
        assert!(RefreshSecret::from_client(&"x".repeat(129)).is_none());
    }
}
