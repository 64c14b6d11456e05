use crate::error::Error;
use argon2::{
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Params, Version,
};
use rand::rngs::OsRng;
use std::{fmt, sync::Arc};
use tokio::sync::Semaphore;

const MIN_CHARS: usize = 8;
/// Upper bound in bytes: long passphrases are welcome, megabyte "passwords"
/// are not.
const MAX_BYTES: usize = 256;

/// A password that satisfies the sign-up policy. Its `Debug` is redacted so
/// it can never end up in a log line by accident.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// The sign-up policy (NIST SP 800-63B): length is what matters, so at
    /// least 8 characters, no composition rules. Not trimmed: spaces are
    /// legitimate password characters.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.chars().count() < MIN_CHARS {
            return Err(Error::validation(
                "password",
                format!("Password must be at least {MIN_CHARS} characters long."),
            ));
        }
        if raw.len() > MAX_BYTES {
            return Err(Error::validation(
                "password",
                format!("Password can be at most {MAX_BYTES} bytes long."),
            ));
        }
        if raw.chars().all(char::is_whitespace) {
            return Err(Error::validation(
                "password",
                "Password cannot be only whitespace.",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// A password offered at login. The sign-up policy is not applied: the
    /// policy may have changed since the account was made, and a password
    /// that fails it is simply not the right one.
    pub fn for_login(raw: &str) -> Result<Self, Error> {
        if raw.is_empty() {
            return Err(Error::validation("password", "Enter your password."));
        }
        Ok(Self(raw.to_string()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Argon2id cost parameters (defaults are OWASP's: 19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            m_kib: Params::DEFAULT_M_COST,
            t: Params::DEFAULT_T_COST,
            p: Params::DEFAULT_P_COST,
        }
    }
}

impl Argon2Settings {
    pub fn params(&self) -> Result<Params, argon2::Error> {
        Params::new(self.m_kib, self.t, self.p, None)
    }
}

/// Hashes and verifies passwords off the async runtime.
///
/// Argon2 is slow and memory-hungry on purpose, so it runs on the blocking
/// pool, and a semaphore caps how many hashes run at once: a burst of logins
/// then queues instead of allocating `m_kib` per request until the process
/// is killed.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// Verified against when the account does not exist, so "unknown email"
    /// costs as much as "wrong password" and timing reveals nothing.
    dummy_hash: String,
    /// Bounds concurrent hashes (each takes 19 MiB). A permit is held by
    /// the blocking task itself, so a client that disconnects mid-hash does
    /// not free its slot while the hash still runs.
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    /// Computes the dummy hash, so call it once at start.
    pub fn new(settings: Argon2Settings) -> Result<Self, Error> {
        let params = settings
            .params()
            .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_with(&argon2, b"confab dummy password for timing")?;
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon2,
            dummy_hash,
            permits: Arc::new(Semaphore::new(parallelism * 2)),
        })
    }

    pub async fn hash(self: &Arc<Self>, password: Password) -> Result<String, Error> {
        let permit = self.permit().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_with(&this.argon2, password.as_bytes())
        })
        .await
        .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))?
    }

    /// `stored` is `None` when no account matched; the dummy hash is checked
    /// instead and the answer is always `false`.
    pub async fn verify(
        self: &Arc<Self>,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, Error> {
        let permit = self.permit().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let known = stored.is_some();
            let phc = stored.as_deref().unwrap_or(&this.dummy_hash);
            let parsed = PasswordHash::new(phc)
                .map_err(|e| Error::Internal(format!("stored password hash: {e}")))?;
            let matches = this
                .argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(known && matches)
        })
        .await
        .map_err(|e| Error::Internal(format!("password verification task failed: {e}")))?
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("password hasher closed".into()))
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Arc<PasswordHasher> {
        Arc::new(
            PasswordHasher::new(Argon2Settings {
                m_kib: 64,
                t: 1,
                p: 1,
            })
            .unwrap(),
        )
    }

    #[test]
    fn length_bounds() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        // Eight characters, sixteen bytes: the lower bound counts characters.
        assert!(Password::parse("éééééééé").is_ok());
        assert!(Password::parse(&"a".repeat(256)).is_ok());
        assert!(Password::parse(&"a".repeat(257)).is_err());
        // 129 two-byte characters = 258 bytes: the upper bound counts bytes.
        assert!(Password::parse(&"é".repeat(129)).is_err());
    }

    #[test]
    fn whitespace_only_is_rejected_but_spaces_are_kept() {
        assert!(Password::parse("          ").is_err());
        assert!(Password::parse(" correct horse ").is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let p = Password::parse("hunter2hunter2").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = cheap();
        let stored = hasher
            .hash(Password::parse("correct horse battery").unwrap())
            .await
            .unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let ok = Password::for_login("correct horse battery").unwrap();
        let wrong = Password::for_login("correct horse battery!").unwrap();
        assert!(hasher
            .verify(ok.clone(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify(wrong, Some(stored)).await.unwrap());
        // No account: even the dummy password itself never matches.
        assert!(!hasher.verify(ok, None).await.unwrap());
    }
}
