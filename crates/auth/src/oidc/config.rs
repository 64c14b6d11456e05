//! Which OpenID Connect providers a deployment offers, from `CONFAB_OIDC_*`.
//!
//! `CONFAB_OIDC_PROVIDERS` lists provider ids (`google,corp`). Each id `X`
//! reads `CONFAB_OIDC_X_ISSUER`, `_CLIENT_ID`, `_CLIENT_SECRET`, `_NAME` and
//! `_SCOPES` (id upper-cased, `-` as `_`). The id `google` is a preset: its
//! issuer defaults to `https://accounts.google.com` and its name to "Google".

use confab_core::config::{ConfigError, Env};
use std::time::Duration;

pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const DEFAULT_SCOPES: &str = "openid email profile";
const MAX_ID_LEN: usize = 32;

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `CONFAB_PUBLIC_URL`: the web origin as the browser sees it; each
    /// provider's redirect URI is `{public_url}/v1/auth/oidc/{id}/callback`.
    pub public_url: String,
    /// `CONFAB_OIDC_FLOW_TTL_SECS` (default 600): how long a started sign-in
    /// (its state, nonce and PKCE verifier) and a pending link stay valid.
    pub flow_ttl: Duration,
    pub providers: Vec<ProviderConfig>,
}

#[derive(Clone)]
pub struct ProviderConfig {
    /// Lower-case `[a-z0-9-]`, used in paths: `/v1/auth/oidc/{id}/start`.
    pub id: String,
    /// Shown on the button: "Log in with {name}".
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Always contains `openid`.
    pub scopes: Vec<String>,
}

// The secret stays out of `{:?}` (config is logged at start in places).
impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl OidcConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let public_url = env.url(
            "CONFAB_PUBLIC_URL",
            "http://localhost:3000",
            &["http", "https"],
        )?;
        let ttl: u64 = env.parse("CONFAB_OIDC_FLOW_TTL_SECS", 600)?;
        if ttl == 0 {
            return Err(env.invalid("CONFAB_OIDC_FLOW_TTL_SECS", "must be at least 1 second"));
        }
        let mut providers: Vec<ProviderConfig> = Vec::new();
        let list = env.string("CONFAB_OIDC_PROVIDERS", "");
        for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id = id.to_ascii_lowercase();
            let valid = id.len() <= MAX_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(env.invalid(
                    "CONFAB_OIDC_PROVIDERS",
                    format!(
                        "provider id {id:?} must be 1-{MAX_ID_LEN} characters of a-z, 0-9 and -"
                    ),
                ));
            }
            if providers.iter().any(|p| p.id == id) {
                return Err(env.invalid(
                    "CONFAB_OIDC_PROVIDERS",
                    format!("provider id {id:?} is listed twice"),
                ));
            }
            providers.push(ProviderConfig::from_env(env, id)?);
        }
        Ok(Self {
            public_url,
            flow_ttl: Duration::from_secs(ttl),
            providers,
        })
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }

    pub fn redirect_uri(&self, provider: &ProviderConfig) -> String {
        format!("{}/v1/auth/oidc/{}/callback", self.public_url, provider.id)
    }
}

impl ProviderConfig {
    fn from_env(env: &Env, id: String) -> Result<Self, ConfigError> {
        let prefix = format!("CONFAB_OIDC_{}", id.to_ascii_uppercase().replace('-', "_"));
        let var = |suffix: &str| format!("{prefix}_{suffix}");
        let google = id == "google";
        let required = |suffix: &str| -> Result<String, ConfigError> {
            let name = var(suffix);
            env.opt_string(&name)
                .map(|v| v.trim().to_string())
                .ok_or_else(|| {
                    env.invalid(
                        &name,
                        format!("is required for the OpenID Connect provider {id:?}"),
                    )
                })
        };
        let issuer_var = var("ISSUER");
        let issuer = match env.opt_string(&issuer_var) {
            Some(_) => env.url(&issuer_var, "", &["https", "http"])?,
            None if google => GOOGLE_ISSUER.to_string(),
            None => {
                return Err(env.invalid(
                    &issuer_var,
                    format!("is required for the OpenID Connect provider {id:?}"),
                ))
            }
        };
        let name = match env.opt_string(&var("NAME")) {
            Some(n) => n.trim().to_string(),
            None if google => "Google".to_string(),
            None => required("NAME")?,
        };
        let client_id = required("CLIENT_ID")?;
        let client_secret = required("CLIENT_SECRET")?;
        let mut scopes: Vec<String> = env
            .string(&var("SCOPES"), DEFAULT_SCOPES)
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        Ok(Self {
            id,
            name,
            issuer,
            client_id,
            client_secret,
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_providers_by_default() {
        let mut env = Env::new();
        env.set("CONFAB_OIDC_PROVIDERS", " ");
        let c = OidcConfig::from_env(&env).unwrap();
        assert!(c.providers.is_empty());
        assert_eq!(c.flow_ttl, Duration::from_secs(600));
    }

    #[test]
    fn google_preset_and_a_generic_issuer() {
        let mut env = Env::new();
        env.set("CONFAB_PUBLIC_URL", "https://chat.example.com/");
        env.set("CONFAB_OIDC_PROVIDERS", "google, corp-sso");
        env.set("CONFAB_OIDC_GOOGLE_CLIENT_ID", "g-id");
        env.set("CONFAB_OIDC_GOOGLE_CLIENT_SECRET", "g-secret");
        env.set(
            "CONFAB_OIDC_CORP_SSO_ISSUER",
            "https://sso.corp.example/realms/main",
        );
        env.set("CONFAB_OIDC_CORP_SSO_NAME", "Corp SSO");
        env.set("CONFAB_OIDC_CORP_SSO_CLIENT_ID", "c-id");
        env.set("CONFAB_OIDC_CORP_SSO_CLIENT_SECRET", "c-secret");
        env.set("CONFAB_OIDC_CORP_SSO_SCOPES", "email");
        let c = OidcConfig::from_env(&env).unwrap();
        let g = c.provider("google").unwrap();
        assert_eq!(g.issuer, GOOGLE_ISSUER);
        assert_eq!(g.name, "Google");
        assert_eq!(g.scopes, ["openid", "email", "profile"]);
        assert_eq!(
            c.redirect_uri(g),
            "https://chat.example.com/v1/auth/oidc/google/callback"
        );
        let corp = c.provider("corp-sso").unwrap();
        assert_eq!(corp.issuer, "https://sso.corp.example/realms/main");
        assert_eq!(corp.scopes, ["openid", "email"]);
        assert!(!format!("{corp:?}").contains("c-secret"));
    }

    #[test]
    fn missing_settings_name_their_variable() {
        let mut env = Env::new();
        env.set("CONFAB_OIDC_PROVIDERS", "corp");
        env.set("CONFAB_OIDC_CORP_CLIENT_ID", "id");
        env.set("CONFAB_OIDC_CORP_CLIENT_SECRET", "s");
        env.set("CONFAB_OIDC_CORP_NAME", "Corp");
        assert_eq!(
            OidcConfig::from_env(&env).unwrap_err().var,
            "CONFAB_OIDC_CORP_ISSUER"
        );
        env.set("CONFAB_OIDC_CORP_ISSUER", "ftp://x");
        assert_eq!(
            OidcConfig::from_env(&env).unwrap_err().var,
            "CONFAB_OIDC_CORP_ISSUER"
        );
        let mut env = Env::new();
        env.set("CONFAB_OIDC_PROVIDERS", "google");
        env.set("CONFAB_OIDC_GOOGLE_CLIENT_ID", "id");
        assert_eq!(
            OidcConfig::from_env(&env).unwrap_err().var,
            "CONFAB_OIDC_GOOGLE_CLIENT_SECRET"
        );
        let mut env = Env::new();
        env.set("CONFAB_OIDC_PROVIDERS", "Bad_Id");
        assert_eq!(
            OidcConfig::from_env(&env).unwrap_err().var,
            "CONFAB_OIDC_PROVIDERS"
        );
    }
}
