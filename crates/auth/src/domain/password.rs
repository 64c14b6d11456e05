use crate::error::Error;
use argon2::{
    password_hash::{Output, ParamsString, PasswordHash, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use rand::rngs::OsRng;
use std::{
    fmt,
    sync::{Arc, Mutex},
};
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
/// pool, and a semaphore caps how many hashes run at once: one per core (a
/// hash with one lane is one core's work; more at once only share the cores
/// and multiply the memory: on two cores, two, three and four at once all
/// did 54–57 log-ins/s). Each running hash works in one of a
/// fixed set of work areas (`m_kib` each, one per permit), allocated on
/// first use and reused for the life of the process: the service's memory
/// is its base plus `cores × m_kib`, whatever the number of log-ins, rather
/// than whatever the allocator keeps of a fresh 19 MiB buffer per request
/// on whichever blocking thread ran it.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// Verified against when the account does not exist, so "unknown email"
    /// costs as much as "wrong password" and timing reveals nothing.
    dummy_hash: String,
    /// Bounds concurrent hashes. A permit is held by the blocking task
    /// itself, so a client that disconnects mid-hash does not free its slot
    /// while the hash still runs.
    permits: Arc<Semaphore>,
    /// The work areas not in use (at most one per permit).
    memory: Mutex<Vec<Vec<Block>>>,
}

impl PasswordHasher {
    /// Computes the dummy hash, so call it once at start.
    pub fn new(settings: Argon2Settings) -> Result<Self, Error> {
        let params = settings
            .params()
            .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut this = Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            dummy_hash: String::new(),
            permits: Arc::new(Semaphore::new(parallelism)),
            memory: Mutex::new(Vec::with_capacity(parallelism)),
        };
        this.dummy_hash = this.hash_now(b"confab dummy password for timing")?;
        Ok(this)
    }

    pub async fn hash(self: &Arc<Self>, password: Password) -> Result<String, Error> {
        let permit = self.permit().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            this.hash_now(password.as_bytes())
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
            let matches = this.verify_now(password.as_bytes(), &parsed)?;
            // One full Argon2 run either way: the count per kind shows (and
            // the suite checks) that an unknown email never skips it.
            let account = if known { "known" } else { "unknown" };
            metrics::counter!("auth_password_verifications_total", "account" => account)
                .increment(1);
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

    /// A PHC string for `password` with a fresh salt and the configured
    /// parameters, computed in a pooled work area.
    fn hash_now(&self, password: &[u8]) -> Result<String, Error> {
        let salt = SaltString::generate(&mut OsRng);
        let output = self.compute(&self.argon2, password, salt.as_salt())?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(self.argon2.params())
                .map_err(|e| Error::Internal(format!("password hashing: {e}")))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches `stored`, with the parameters `stored`
    /// was made with (older hashes may use other costs than today's).
    fn verify_now(&self, password: &[u8], stored: &PasswordHash<'_>) -> Result<bool, Error> {
        let bad = |e: String| Error::Internal(format!("stored password hash: {e}"));
        let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
            return Err(bad("no salt or no hash".into()));
        };
        let algorithm = Algorithm::try_from(stored.algorithm).map_err(|e| bad(e.to_string()))?;
        let version = stored
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| bad(e.to_string()))?
            .unwrap_or_default();
        let params = Params::try_from(stored).map_err(|e| bad(e.to_string()))?;
        if params.block_count() > self.argon2.params().block_count() {
            // More memory than a work area holds: the library allocates it.
            return Ok(Argon2::new(algorithm, version, params)
                .verify_password(password, stored)
                .is_ok());
        }
        let argon2 = Argon2::new(algorithm, version, params);
        let computed = self.compute(&argon2, password, salt)?;
        // `Output`'s equality is constant-time.
        Ok(computed == expected)
    }

    /// Argon2's output for `password` and `salt`, in a work area from the
    /// pool (allocated the first times, when none is free).
    fn compute(
        &self,
        argon2: &Argon2<'_>,
        password: &[u8],
        salt: argon2::password_hash::Salt<'_>,
    ) -> Result<Output, Error> {
        let failed = |e: String| Error::Internal(format!("password hashing: {e}"));
        let mut salt_buf = [0u8; 64];
        let salt = salt
            .decode_b64(&mut salt_buf)
            .map_err(|e| failed(e.to_string()))?;
        let blocks = self.argon2.params().block_count();
        let mut area = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| vec![Block::default(); blocks]);
        let len = argon2
            .params()
            .output_len()
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let result = Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut area[..])
                .map_err(Into::into)
        });
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(area);
        result.map_err(|e| failed(e.to_string()))
    }
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

    /// The pooled work areas are reused unwiped: what they held before must
    /// not change a result, and the strings must be the library's own.
    #[tokio::test]
    async fn pooled_hashes_are_the_librarys_and_verify_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = cheap();
        let library = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        for round in 0..3 {
            let password = format!("correct horse battery {round}");
            // Ours, verified by the library.
            let ours = hasher
                .hash(Password::parse(&password).unwrap())
                .await
                .unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(library
                .verify_password(password.as_bytes(), &parsed)
                .is_ok());
            // The library's with the same salt: the same string.
            let again = library
                .hash_password(password.as_bytes(), parsed.salt.unwrap())
                .unwrap()
                .to_string();
            assert_eq!(again, ours);
            // The library's, verified by ours (in a used work area).
            let salt = SaltString::generate(&mut OsRng);
            let theirs = library
                .hash_password(password.as_bytes(), &salt)
                .unwrap()
                .to_string();
            let login = |p: &str| Password::for_login(p).unwrap();
            assert!(hasher
                .verify(login(&password), Some(theirs.clone()))
                .await
                .unwrap());
            assert!(!hasher
                .verify(login("something else"), Some(theirs))
                .await
                .unwrap());
        }
        // Never more work areas than permits.
        assert!(hasher.memory.lock().unwrap().len() <= hasher.permits.available_permits());
    }

    /// A hash made with more memory than today's setting still verifies
    /// (the library allocates for it), and with less too.
    #[tokio::test]
    async fn hashes_made_with_other_costs_still_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let hasher = cheap();
        for m in [32, 128] {
            let other = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, 2, 1, None).unwrap(),
            );
            let salt = SaltString::generate(&mut OsRng);
            let stored = other
                .hash_password(b"old passphrase here", &salt)
                .unwrap()
                .to_string();
            let login = |p: &str| Password::for_login(p).unwrap();
            assert!(
                hasher
                    .verify(login("old passphrase here"), Some(stored.clone()))
                    .await
                    .unwrap(),
                "m={m}"
            );
            assert!(
                !hasher
                    .verify(login("old passphrase"), Some(stored))
                    .await
                    .unwrap(),
                "m={m}"
            );
        }
    }
}
