//! The keys that sign access tokens, and minting/verifying those tokens.
//!
//! Keys are Ed25519 (EdDSA): small, fast, and with no parameter choices to
//! get wrong. They live in the auth database so every auth instance signs
//! with the same key and a restart does not invalidate issued tokens. The
//! public halves are served as a JWKS; this service verifies its own tokens
//! with the very same JWK-derived keys, so what it accepts is exactly what
//! the other services (which fetch the JWKS) accept.

use crate::{domain::NewSigningKey, error::Error, store};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use confab_core::{
    ids::{SessionId, UserId},
    tokens::{Claims, TokenError, AUDIENCE},
};
use ed25519_dalek::{pkcs8::DecodePrivateKey, SigningKey};
use jsonwebtoken::{
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
        OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    },
    Algorithm, DecodingKey, EncodingKey, Header,
};
use sqlx::PgPool;
use std::{collections::HashMap, time::Duration};

/// Clock skew tolerated when checking `exp`; the same as the shared verifier.
use confab_core::tokens::LEEWAY_SECS;

/// What `AccessTokens::issue` needs to know about the user and session.
pub struct Subject<'a> {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub email: &'a str,
    pub name: &'a str,
    pub role: confab_core::tokens::Role,
}

/// Signs access tokens with the active key and verifies them against every
/// published key.
pub struct AccessTokens {
    issuer: String,
    ttl: Duration,
    active_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl AccessTokens {
    /// Make sure an active key exists (creating one on first start), then
    /// load every published key.
    pub async fn load(pool: &PgPool, issuer: &str, ttl: Duration) -> Result<Self, Error> {
        store::signing_keys::ensure_active(pool, NewSigningKey::generate).await?;
        let rows = store::signing_keys::published(pool).await?;
        Self::from_keys(
            issuer,
            ttl,
            rows.into_iter()
                .map(|r| (r.kid, r.private_pkcs8, r.public_key, r.active)),
        )
    }

    /// `keys` yields `(kid, private PKCS#8 DER, raw public key, active)`.
    pub fn from_keys(
        issuer: &str,
        ttl: Duration,
        keys: impl IntoIterator<Item = (String, Vec<u8>, Vec<u8>, bool)>,
    ) -> Result<Self, Error> {
        let mut active = None;
        let mut decoding = HashMap::new();
        let mut jwks = JwkSet { keys: Vec::new() };
        for (kid, private_pkcs8, public_key, is_active) in keys {
            let jwk = public_jwk(&kid, &public_key);
            let key = DecodingKey::from_jwk(&jwk)
                .map_err(|e| Error::Internal(format!("signing key {kid}: {e}")))?;
            decoding.insert(kid.clone(), key);
            jwks.keys.push(jwk);
            if is_active {
                // A stored key whose halves disagree would mint tokens that
                // no verifier accepts; refuse to start instead.
                let signing = SigningKey::from_pkcs8_der(&private_pkcs8)
                    .map_err(|e| Error::Internal(format!("signing key {kid}: {e}")))?;
                if signing.verifying_key().to_bytes().as_slice() != public_key.as_slice() {
                    return Err(Error::Internal(format!(
                        "signing key {kid}: public key does not match the private key"
                    )));
                }
                active = Some((kid, EncodingKey::from_ed_der(&private_pkcs8)));
            }
        }
        let (active_kid, encoding) =
            active.ok_or_else(|| Error::Internal("no active signing key".into()))?;
        Ok(Self {
            issuer: issuer.to_string(),
            ttl,
            active_kid,
            encoding,
            decoding,
            jwks,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Mint an access token valid from `now` for the configured lifetime.
    pub fn issue(&self, subject: &Subject<'_>, now: DateTime<Utc>) -> Result<String, Error> {
        let iat = now.timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_string(),
            sub: subject.user_id,
            sid: subject.session_id,
            iat,
            exp: iat + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            jti: uuid::Uuid::new_v4().to_string(),
            email: subject.email.to_string(),
            name: subject.name.to_string(),
            role: subject.role,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.active_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing an access token: {e}")))
    }

    /// Verify a token the way every Confab verifier does: EdDSA only, a
    /// known `kid`, our issuer and audience, not expired. Revocation is the
    /// caller's business.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let kid = confab_core::tokens::unverified_kid(token)?;
        let key = self.decoding.get(&kid).ok_or(TokenError::UnknownKey)?;
        confab_core::tokens::verify_with_key(token, key, &self.issuer, LEEWAY_SECS)
    }
}

fn public_jwk(kid: &str, public_key: &[u8]) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: Some(kid.to_string()),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: URL_SAFE_NO_PAD.encode(public_key),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use confab_core::clock::Clock;

    pub(crate) fn tokens_with(keys: &[(&NewSigningKey, bool)]) -> AccessTokens {
        AccessTokens::from_keys(
            "confab-test",
            Duration::from_secs(900),
            keys.iter().map(|(k, active)| {
                (
                    k.kid.clone(),
                    k.private_pkcs8.clone(),
                    k.public_key.clone(),
                    *active,
                )
            }),
        )
        .unwrap()
    }

    fn subject() -> Subject<'static> {
        Subject {
            user_id: UserId::new(),
            session_id: SessionId::new(),
            email: "alice@example.com",
            name: "Alice",
            role: confab_core::tokens::Role::User,
        }
    }

    /// Re-sign `token`'s header and claims as `header.payload.signature`
    /// with arbitrary parts, the way an attacker would.
    fn forge(header: serde_json::Value, claims: &Claims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn round_trip_through_the_published_jwk() {
        let key = NewSigningKey::generate().unwrap();
        let tokens = tokens_with(&[(&key, true)]);
        let s = subject();
        let token = tokens.issue(&s, Clock::system().now()).unwrap();

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));

        let claims = tokens.verify(&token).unwrap();
        assert_eq!(claims.sub, s.user_id);
        assert_eq!(claims.sid, s.session_id);
        assert_eq!(claims.aud, AUDIENCE);
        assert_eq!(claims.iss, "confab-test");
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.name, "Alice");

        // What another service does: parse the JWKS JSON, build the key from
        // the JWK, validate pinned to EdDSA.
        let json = serde_json::to_value(tokens.jwks()).unwrap();
        let jwk = &json["keys"][0];
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key.kid.as_str());
        let set: JwkSet = serde_json::from_value(json).unwrap();
        let decoding = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&["confab-test"]);
        let decoded = jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
    }

    #[test]
    fn alg_none_is_rejected() {
        let key = NewSigningKey::generate().unwrap();
        let tokens = tokens_with(&[(&key, true)]);
        let real = tokens.issue(&subject(), Clock::system().now()).unwrap();
        let claims = tokens.verify(&real).unwrap();
        for alg in ["none", "None", "NONE"] {
            let forged = forge(
                serde_json::json!({"alg": alg, "typ": "JWT", "kid": key.kid}),
                &claims,
                b"",
            );
            let err = tokens.verify(&forged).unwrap_err();
            assert!(
                matches!(err, TokenError::Malformed | TokenError::Algorithm),
                "{alg}: {err:?}"
            );
            assert_eq!(err.code(), "invalid_token");
        }
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_rejected() {
        // Algorithm confusion: an HMAC "signed" with the public key (which
        // the attacker knows from the JWKS) must not verify.
        let key = NewSigningKey::generate().unwrap();
        let tokens = tokens_with(&[(&key, true)]);
        let claims = tokens
            .verify(&tokens.issue(&subject(), Clock::system().now()).unwrap())
            .unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.public_key))
                .unwrap();
        assert_eq!(tokens.verify(&forged).unwrap_err(), TokenError::Algorithm);

        // And a verifier pinned to EdDSA with a JWK-built key says the same.
        let decoding = DecodingKey::from_jwk(&tokens.jwks().keys[0]).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        assert!(jsonwebtoken::decode::<Claims>(&forged, &decoding, &validation).is_err());
    }

    #[test]
    fn tampered_claims_break_the_signature() {
        let key = NewSigningKey::generate().unwrap();
        let tokens = tokens_with(&[(&key, true)]);
        let token = tokens.issue(&subject(), Clock::system().now()).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims.sub = UserId::new();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        parts[1] = &payload;
        assert_eq!(
            tokens.verify(&parts.join(".")).unwrap_err(),
            TokenError::BadSignature
        );
    }

    #[test]
    fn foreign_key_unknown_kid_and_wrong_issuer_are_rejected() {
        let ours = NewSigningKey::generate().unwrap();
        let theirs = NewSigningKey::generate().unwrap();
        let tokens = tokens_with(&[(&ours, true)]);
        let attacker = tokens_with(&[(&theirs, true)]);
        let forged = attacker.issue(&subject(), Clock::system().now()).unwrap();
        assert_eq!(tokens.verify(&forged).unwrap_err(), TokenError::UnknownKey);

        let other_issuer = AccessTokens::from_keys(
            "someone-else",
            Duration::from_secs(900),
            [(
                ours.kid.clone(),
                ours.private_pkcs8.clone(),
                ours.public_key.clone(),
                true,
            )],
        )
        .unwrap();
        let token = other_issuer
            .issue(&subject(), Clock::system().now())
            .unwrap();
        assert_eq!(
            tokens.verify(&token).unwrap_err(),
            TokenError::WrongIssuerOrAudience
        );
    }

    #[test]
    fn expired_tokens_are_reported_as_expired() {
        let key = NewSigningKey::generate().unwrap();
        let tokens = tokens_with(&[(&key, true)]);
        let an_hour_ago = Clock::system().now() - chrono::Duration::hours(1);
        let token = tokens.issue(&subject(), an_hour_ago).unwrap();
        let err = tokens.verify(&token).unwrap_err();
        assert_eq!(err, TokenError::Expired);
        assert_eq!(err.code(), "token_expired");
    }

    #[test]
    fn retired_signer_keeps_verifying_until_unpublished() {
        let old = NewSigningKey::generate().unwrap();
        let new = NewSigningKey::generate().unwrap();
        let before = tokens_with(&[(&old, true)]);
        let token = before.issue(&subject(), Clock::system().now()).unwrap();
        let after = tokens_with(&[(&new, true), (&old, false)]);
        assert!(after.verify(&token).is_ok());
        assert_eq!(after.jwks().keys.len(), 2);
    }

    #[test]
    fn mismatched_key_halves_are_refused() {
        let a = NewSigningKey::generate().unwrap();
        let b = NewSigningKey::generate().unwrap();
        let result = AccessTokens::from_keys(
            "confab",
            Duration::from_secs(60),
            [(
                a.kid.clone(),
                a.private_pkcs8.clone(),
                b.public_key.clone(),
                true,
            )],
        );
        assert!(result.is_err());
    }
}
