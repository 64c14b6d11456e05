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

    /// The successor this token is rotated to, derived from this secret and
    /// the per-rotation `key` (stored with this token, never sent). Deriving
    /// instead of drawing it lets a retry of this token within the grace
    /// window receive the very same successor, so a session never forks
    /// into two live chains; and without this secret the key is useless.
    pub fn successor(&self, key: &SuccessorKey) -> RefreshSecret {
        let digest = Sha256::new()
            .chain_update(b"confab refresh successor v1\0")
            .chain_update(key.0)
            .chain_update(self.0.as_bytes())
            .finalize();
        Self(URL_SAFE_NO_PAD.encode(digest))
    }
}

/// The random key a rotation derives the successor with (see
/// [`RefreshSecret::successor`]).
#[derive(Clone)]
pub struct SuccessorKey([u8; BYTES]);

impl SuccessorKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A stored key; `None` if it has the wrong length.
    pub fn from_stored(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SuccessorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SuccessorKey(<redacted>)")
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
    fn a_successor_is_the_same_for_the_same_secret_and_key_and_nothing_else() {
        let secret = RefreshSecret::generate();
        let key = SuccessorKey::generate();
        let next = secret.successor(&key);
        assert_eq!(next, secret.successor(&key));
        assert_eq!(next.as_str().len(), 43);
        assert_ne!(next, secret);
        assert_ne!(next, secret.successor(&SuccessorKey::generate()));
        assert_ne!(next, RefreshSecret::generate().successor(&key));
        let stored = SuccessorKey::from_stored(key.as_bytes()).unwrap();
        assert_eq!(secret.successor(&stored), next);
        assert!(SuccessorKey::from_stored(&[1, 2, 3]).is_none());
    }

    #[test]
    fn rejects_empty_and_oversized() {
        assert!(RefreshSecret::from_client("  ").is_none());
        assert!(RefreshSecret::from_client(&"x".repeat(129)).is_none());
    }
}
