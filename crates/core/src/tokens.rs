//! Access-token claims and their verification against the auth service's
//! JWKS. Verifiers pin the algorithm (EdDSA), the issuer and the audience, so
//! `alg: none`, HMAC/RSA confusion and tokens minted for another audience are
//! rejected before any claim is trusted. Keys are cached by `kid` and
//! re-fetched when an unknown `kid` shows up (key rotation), at most once per
//! [`REFRESH_COOLDOWN`] so a flood of forged `kid`s cannot hammer auth.

use crate::ids::{SessionId, UserId};
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{Mutex, RwLock};

/// Audience of access tokens for Confab's APIs.
pub const AUDIENCE: &str = "confab";
/// Clock skew every verifier tolerates on `exp`, `nbf` and `iat`; the
/// socket gateway gives an expired token the same time to be replaced by
/// `reauth`, so a socket is held to exactly what an HTTP request would be.
pub const LEEWAY_SECS: u64 = 2;
/// Tokens a verifier remembers as verified (see [`Verifier::verify`]).
pub const VERIFIED_CACHE: usize = 10_000;
/// Minimum time between two JWKS fetches triggered by unknown `kid`s.
pub const REFRESH_COOLDOWN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    pub sid: SessionId,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The user's email and display name, so a service that has never seen
    /// the user can create its profile from verified claims.
    pub email: String,
    pub name: String,
    /// The account's role when the token was issued; absent means
    /// [`Role::User`]. Signed like every claim, so any service can trust it
    /// for the token's short life. Auth ends every session of an account
    /// whose role changes, so no token outlives the role it carries.
    #[serde(default, skip_serializing_if = "Role::is_user")]
    pub role: Role,
}

/// What an account may do beyond its own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    User,
    /// The admin console: every user, disabling and enabling them, the
    /// audit log, the services' status.
    Admin,
}

impl Role {
    pub fn is_user(&self) -> bool {
        *self == Role::User
    }

    /// The stable code in tokens, API bodies and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// The stored code; anything unknown is the least privileged role.
    pub fn from_stored(s: &str) -> Self {
        if s == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf or iat in the future)")]
    NotYetValid,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token uses a disallowed algorithm")]
    Algorithm,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's issuer or audience is wrong")]
    WrongIssuerOrAudience,
    #[error("the session was revoked")]
    Revoked,
    #[error("the signing keys could not be fetched: {0}")]
    Jwks(String),
}

impl TokenError {
    /// A stable machine-readable code for API and socket errors.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            TokenError::Revoked => "session_revoked",
            TokenError::Jwks(_) => "auth_unavailable",
            _ => "invalid_token",
        }
    }
}

/// Verifies access tokens with keys fetched from a JWKS URL.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    jwks_url: String,
    issuer: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
    leeway: u64,
    /// Tokens whose signature and claims were verified, by their exact
    /// text: a client sends the same access token with every request for
    /// its whole life, and checking an EdDSA signature is most of a
    /// verification's cost. Emptied whenever the key set changes.
    verified: std::sync::Mutex<HashMap<String, Claims>>,
}

impl Verifier {
    pub fn new(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
    ) -> Result<Self, crate::error::InfraError> {
        Ok(Self {
            inner: Arc::new(Inner {
                jwks_url: jwks_url.into(),
                issuer: issuer.into(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()?,
                keys: RwLock::new(HashMap::new()),
                last_fetch: Mutex::new(None),
                leeway: LEEWAY_SECS,
                verified: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Fetch the key set now (used at start so the first request is fast).
    pub async fn refresh(&self) -> Result<usize, TokenError> {
        let mut last = self.inner.last_fetch.lock().await;
        let result = self.fetch_locked(&mut last).await;
        if result.is_err() {
            // Auth may simply not be up yet: let the first token fetch again.
            *last = None;
        }
        result
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) -> Result<usize, TokenError> {
        // Counted from the attempt, not the success: while auth struggles,
        // forged kids must not turn into a stream of fetches.
        *last = Some(crate::clock::instant());
        let set: JwkSet = self
            .inner
            .http
            .get(&self.inner.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| TokenError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| TokenError::Jwks(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) {
                keys.insert(kid, key);
            }
        }
        let n = keys.len();
        *self.inner.keys.write().await = keys;
        // A key that left the set must not keep its tokens valid.
        self.verified().clear();
        Ok(n)
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        if let Some(k) = self.inner.keys.read().await.get(kid) {
            return Ok(k.clone());
        }
        let mut last = self.inner.last_fetch.lock().await;
        // Another task may have fetched while we waited for the lock.
        if let Some(k) = self.inner.keys.read().await.get(kid) {
            return Ok(k.clone());
        }
        let may_fetch = last.is_none_or(|t| t.elapsed() >= REFRESH_COOLDOWN);
        if may_fetch {
            self.fetch_locked(&mut last).await?;
        }
        self.inner
            .keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or(TokenError::UnknownKey)
    }

    /// Verify signature, algorithm, issuer, audience and expiry.
    ///
    /// A token verified before (the same bytes) is only checked for expiry
    /// again: its signature and its other claims cannot have changed.
    /// Revocation is the caller's business either way.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let cached = self.verified().get(token).cloned();
        if let Some(claims) = cached {
            let now = jsonwebtoken::get_current_timestamp() as i64;
            if claims.exp >= now - self.inner.leeway as i64 {
                return Ok(claims);
            }
            self.verified().remove(token);
            return Err(TokenError::Expired);
        }
        let kid = unverified_kid(token)?;
        let key = self.key_for(&kid).await?;
        let claims = verify_with_key(token, &key, &self.inner.issuer, self.inner.leeway)?;
        self.remember(token, &claims);
        Ok(claims)
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        // A panic while holding it cannot leave the map inconsistent.
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, token: &str, claims: &Claims) {
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_CACHE {
            let now = jsonwebtoken::get_current_timestamp() as i64;
            verified.retain(|_, c| c.exp >= now - self.inner.leeway as i64);
            if verified.len() >= VERIFIED_CACHE {
                verified.clear();
            }
        }
        verified.insert(token.to_string(), claims.clone());
    }
}

/// The `kid` of a token whose `alg` is EdDSA. The header is attacker
/// controlled, so the algorithm is checked before any key is looked up.
pub fn unverified_kid(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Algorithm);
    }
    header.kid.ok_or(TokenError::UnknownKey)
}

/// The one verification every Confab service does, given the key for the
/// token's `kid`: EdDSA only, our issuer and audience, not expired, not
/// issued (`iat`) nor valid from (`nbf`) a time in the future beyond the
/// leeway. A token from the future is either forged with a stolen key or
/// minted by a server whose clock is wrong; neither should be honoured.
/// (Revocation is the caller's business.)
pub fn verify_with_key(
    token: &str,
    key: &DecodingKey,
    issuer: &str,
    leeway: u64,
) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = leeway;
    validation.validate_nbf = true;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map(|d| d.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidSignature => TokenError::BadSignature,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::Algorithm,
                K::InvalidIssuer | K::InvalidAudience => TokenError::WrongIssuerOrAudience,
                _ => TokenError::Malformed,
            }
        })?;
    // jsonwebtoken checks `exp` and `nbf` against the system clock; `iat`
    // is ours to check, against the same clock.
    let now = jsonwebtoken::get_current_timestamp();
    let issued_in_future = u64::try_from(claims.iat)
        .map(|iat| iat > now.saturating_add(leeway))
        .unwrap_or(false);
    if issued_in_future {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}
