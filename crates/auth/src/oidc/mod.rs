//! Sign-in through OpenID Connect providers: "Log in with Google" and any
//! number of generic issuers, configured in [`config`].
//!
//! - [`client`] is the relying party for one provider (discovery, the
//!   authorization request, the code exchange, ID token validation);
//! - [`accounts`] decides what a verified identity means for our accounts
//!   (sign in, create, update the profile, or ask for a password to link);
//! - [`store`] holds the SQL; the routes are in `crate::http::oidc`.

pub mod accounts;
pub mod client;
pub mod config;
pub mod error;
pub mod store;

pub use config::{OidcConfig, ProviderConfig};
pub use error::OidcError;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use client::RelyingParty;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Discovery, token and userinfo calls to a provider; a provider that hangs
/// gives the user a friendly page instead of a spinner.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Every configured provider's relying party.
pub struct Oidc {
    pub config: OidcConfig,
    parties: Vec<RelyingParty>,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Self, crate::Error> {
        let http = reqwest::Client::builder()
            // Following redirects from a token or userinfo endpoint is how
            // SSRF starts (the openidconnect crate's advice); none needed.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| crate::Error::Internal(format!("OIDC HTTP client: {e}")))?;
        let parties = config
            .providers
            .iter()
            .map(|p| {
                RelyingParty::new(p.clone(), config.redirect_uri(p), http.clone())
                    .map_err(|e| crate::Error::Internal(format!("OIDC provider {}: {e}", p.id)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { config, parties })
    }

    pub fn party(&self, id: &str) -> Option<&RelyingParty> {
        self.parties.iter().find(|p| p.config.id == id)
    }

    pub fn providers(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.config.providers.iter()
    }
}

/// 256 random bits, base64url: state, nonce, PKCE verifier (43 characters,
/// within RFC 7636's 43–128), browser binding and link tokens.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Secrets are stored hashed: a leaked table hands out no sign-in.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}
