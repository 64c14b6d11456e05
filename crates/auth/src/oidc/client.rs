//! The relying party for one provider: discovery (cached), the
//! authorization request (code flow, PKCE S256, state, nonce), the code
//! exchange and ID token validation, and userinfo for missing claims.
//!
//! The `openidconnect` crate checks the signature against the provider's
//! JWKS and `iss`, `aud`, `exp` and `nonce`; we add `iat`, `azp` and
//! `at_hash`, and refetch the keys once when a token names a `kid` we have
//! not seen (the provider rotated its keys since discovery).

use super::{config::ProviderConfig, error::OidcError};
use chrono::{DateTime, Utc};
use openidconnect::{
    core::{
        CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata,
        CoreUserInfoClaims,
    },
    AccessTokenHash, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, SubjectIdentifier, TokenResponse,
};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Provider metadata (and keys) are refetched after this long even when
/// nothing went wrong, so a provider's changed endpoints are picked up.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Clock skew we accept between us and the provider.
const SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// An ID token comes straight from the token endpoint: one issued longer
/// ago than this is a replay, not a fresh answer.
const MAX_ID_TOKEN_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Who the provider says signed in, after every check.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

pub struct RelyingParty {
    pub config: ProviderConfig,
    redirect: RedirectUrl,
    http: reqwest::Client,
    cached: Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

impl RelyingParty {
    pub fn new(
        config: ProviderConfig,
        redirect_uri: String,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let redirect = RedirectUrl::new(redirect_uri).map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            redirect,
            http,
            cached: Mutex::new(None),
        })
    }

    /// The provider's metadata and keys; fetched on first use (a provider
    /// that is down must not stop the auth service from starting).
    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.cached.lock().await;
        if let Some((metadata, at)) = cached.as_ref() {
            if !refresh && at.elapsed() < METADATA_TTL {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::ProviderUnavailable(format!("issuer URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::ProviderUnavailable(error_chain(&e)))?;
        tracing::info!(
            provider = %self.config.id,
            keys = metadata.jwks().keys().len(),
            refresh,
            "fetched OpenID Connect provider metadata and keys"
        );
        *cached = Some((metadata.clone(), confab_core::clock::instant()));
        Ok(metadata)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> Client {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Where to send the browser to sign in.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<url::Url, OidcError> {
        let client = self.client(self.metadata(false).await?);
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.to_string(),
        ));
        let (state, nonce) = (state.to_string(), nonce.to_string());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.url();
        Ok(url)
    }

    /// Redeem the code and validate what comes back.
    pub async fn complete(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedClaims, OidcError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(metadata);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::ProviderUnavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => OidcError::CodeRejected(format!(
                    "{}{}",
                    r.error(),
                    r.error_description()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
                other => OidcError::ProviderUnavailable(error_chain(&other)),
            })?;
        let id_token = token.id_token().ok_or(OidcError::IdTokenMissing)?;
        let nonce = Nonce::new(nonce.to_string());

        let check = |client: &Client| -> Result<
            (CoreIdTokenClaims, Option<AccessTokenHash>),
            ClaimsVerificationError,
        > {
            let verifier = client
                .id_token_verifier()
                .set_time_fn(move || now)
                .set_issue_time_verifier_fn(move |iat| check_iat(iat, now));
            let claims = id_token.claims(&verifier, &nonce)?.clone();
            let expected_hash = match claims.access_token_hash() {
                None => None,
                Some(_) => {
                    let alg = id_token
                        .signing_alg()
                        .map_err(ClaimsVerificationError::SignatureVerification)?;
                    let key = id_token
                        .signing_key(&verifier)
                        .map_err(ClaimsVerificationError::SignatureVerification)?;
                    Some(
                        AccessTokenHash::from_token(token.access_token(), alg, key)
                            .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?,
                    )
                }
            };
            Ok((claims, expected_hash))
        };
        let (claims, expected_hash) = match check(&client) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                // A key we have not seen: the provider may have rotated.
                tracing::info!(provider = %self.config.id, "ID token signed by an unknown key; refetching the provider's keys");
                let client = self.client(self.metadata(true).await?);
                check(&client)
            }
            other => other,
        }
        .map_err(id_token_error)?;
        if let (Some(hash), Some(expected)) = (claims.access_token_hash(), expected_hash) {
            if *hash != expected {
                return Err(OidcError::IdToken {
                    why: "at_hash_mismatch",
                    detail: "at_hash does not match the access token".into(),
                });
            }
        }
        check_azp(&claims, &self.config.client_id)?;

        let mut verified = VerifiedClaims {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string())
                .or_else(|| claims.preferred_username().map(|n| n.to_string())),
        };
        // Providers may keep profile claims out of the ID token (oidc-provider
        // does when an access token is issued, as OIDC Core §5.4 allows);
        // userinfo has them.
        if verified.email.is_none() || verified.name.is_none() || claims.email_verified().is_none()
        {
            if let Ok(request) = client.user_info(
                token.access_token().clone(),
                Some(SubjectIdentifier::new(verified.subject.clone())),
            ) {
                let info: CoreUserInfoClaims = request
                    .request_async(&self.http)
                    .await
                    .map_err(|e| OidcError::UserInfo(error_chain(&e)))?;
                if verified.email.is_none() {
                    verified.email = info.email().map(|e| e.to_string());
                    verified.email_verified = info.email_verified().unwrap_or(false);
                } else if claims.email_verified().is_none()
                    && info.email().map(|e| e.as_str()) == verified.email.as_deref()
                {
                    verified.email_verified = info.email_verified().unwrap_or(false);
                }
                if verified.name.is_none() {
                    verified.name = info
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.to_string())
                        .or_else(|| info.preferred_username().map(|n| n.to_string()));
                }
            }
        }
        Ok(verified)
    }
}

fn check_iat(iat: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if iat > now + SKEW {
        return Err(format!("issued in the future ({iat})"));
    }
    if iat < now - MAX_ID_TOKEN_AGE - SKEW {
        return Err(format!("issued too long ago ({iat})"));
    }
    Ok(())
}

/// OIDC Core §3.1.3.7 steps 4–5, which the crate leaves to us: with several
/// audiences `azp` must be present, and when present it must be us.
fn check_azp(claims: &CoreIdTokenClaims, client_id: &str) -> Result<(), OidcError> {
    match claims.authorized_party() {
        Some(azp) if azp.as_str() != client_id => Err(OidcError::IdToken {
            why: "wrong_authorized_party",
            detail: format!("azp is {:?}", azp.as_str()),
        }),
        None if claims.audiences().len() > 1 => Err(OidcError::IdToken {
            why: "wrong_authorized_party",
            detail: "several audiences and no azp".into(),
        }),
        _ => Ok(()),
    }
}

fn id_token_error(e: ClaimsVerificationError) -> OidcError {
    let why = match &e {
        ClaimsVerificationError::Expired(m) if m.starts_with("issued") => "issued_at_invalid",
        ClaimsVerificationError::Expired(_) => "id_token_expired",
        ClaimsVerificationError::InvalidAudience(_) => "wrong_audience",
        ClaimsVerificationError::InvalidIssuer(_) => "wrong_issuer",
        ClaimsVerificationError::InvalidNonce(_) => "nonce_mismatch",
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "unknown_signing_key",
        ClaimsVerificationError::SignatureVerification(_) => "bad_signature",
        _ => "id_token_invalid",
    };
    let detail = match &e {
        ClaimsVerificationError::SignatureVerification(inner) => format!("{e}: {inner}"),
        _ => e.to_string(),
    };
    OidcError::IdToken { why, detail }
}

/// The whole `source()` chain: "request failed" alone says nothing.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_at_must_be_recent() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(check_iat(now, now).is_ok());
        assert!(check_iat(now - chrono::TimeDelta::minutes(5), now).is_ok());
        assert!(check_iat(now + chrono::TimeDelta::minutes(5), now).is_err());
        assert!(check_iat(now - chrono::TimeDelta::hours(1), now).is_err());
    }
}
