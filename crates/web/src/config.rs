//! The web server's settings, read once at start from `CONFAB_*` variables.

use confab_core::config::{Common, ConfigError, Env};
use std::time::Duration;

/// Where the web server listens and where the two services it fronts live.
///
/// The browser only ever talks to this server; `auth_url` and `backend_urls`
/// are internal addresses (usually loopback or a private network) that the
/// reverse proxy forwards to.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub auth_url: String,
    /// Every backend instance (`CONFAB_BACKEND_URL`, comma-separated): web
    /// health-checks them and spreads sockets and requests across the live
    /// ones (see `backends.rs`).
    pub backend_urls: Vec<String>,
    /// How long a proxied request may wait for the upstream's response
    /// headers, and then for each further piece of a streamed body
    /// (`CONFAB_WEB_UPSTREAM_TIMEOUT_SECS`).
    pub upstream_timeout: Duration,
    /// How many WebSocket relays may be open at once
    /// (`CONFAB_WEB_MAX_SOCKETS`); each holds two sockets.
    pub max_sockets: usize,
}

/// Each relayed socket holds two file descriptors (browser and backend); this
/// keeps a process well inside a 20,000-descriptor limit.
pub const DEFAULT_MAX_SOCKETS: usize = 5_000;

/// More than any one process could hold open; a larger value is a typo.
const MAX_SOCKETS_LIMIT: usize = 1_000_000;

/// Long enough for any request that does real work before answering; short
/// enough that a hung upstream does not pile up waiting browsers.
pub const DEFAULT_UPSTREAM_TIMEOUT_SECS: u64 = 30;

impl Config {
    /// Load from the environment (and flag overrides in `env`). A bad value
    /// fails here with an error that names the variable.
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        // The shared settings also parse the Redis URL; the web server does not
        // use Redis today, but validating it keeps `confab up` failing early and
        // uniformly when the shared variable is wrong.
        let common = Common::load(env, "CONFAB_WEB_PORT", 3000)?;
        Ok(Config {
            host: common.host,
            port: common.port,
            auth_url: env.url(
                "CONFAB_AUTH_URL",
                "http://127.0.0.1:8001",
                &["http", "https"],
            )?,
            backend_urls: backend_urls(env)?,
            upstream_timeout: {
                let var = "CONFAB_WEB_UPSTREAM_TIMEOUT_SECS";
                let secs = env.parse::<u64>(var, DEFAULT_UPSTREAM_TIMEOUT_SECS)?;
                if secs == 0 {
                    return Err(env.invalid(var, "must be at least 1 second"));
                }
                Duration::from_secs(secs)
            },
            max_sockets: {
                let var = "CONFAB_WEB_MAX_SOCKETS";
                let n = env.parse::<usize>(var, DEFAULT_MAX_SOCKETS)?;
                if !(1..=MAX_SOCKETS_LIMIT).contains(&n) {
                    return Err(env.invalid(var, format!("must be 1 to {MAX_SOCKETS_LIMIT}")));
                }
                n
            },
        })
    }
}

/// `CONFAB_BACKEND_URL`: one URL or several separated by commas, each an
/// `http(s)` URL, no instance twice.
fn backend_urls(env: &Env) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "CONFAB_BACKEND_URL";
    let raw = env.string(VAR, "http://127.0.0.1:8000");
    let mut urls: Vec<String> = Vec::new();
    for item in raw.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(env.invalid(VAR, "an empty entry in the list of backend URLs"));
        }
        let parsed = reqwest::Url::parse(item)
            .map_err(|e| env.invalid(VAR, format!("{item:?} is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(env.invalid(VAR, format!("{item:?}: URL scheme must be http or https")));
        }
        let url = item.trim_end_matches('/').to_string();
        if urls.contains(&url) {
            return Err(env.invalid(VAR, format!("{url} is listed twice")));
        }
        urls.push(url);
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_on_a_laptop() {
        let mut env = Env::new();
        // Overrides win over the process environment, so the test does not
        // depend on what the developer has exported.
        env.set("CONFAB_HOST", "127.0.0.1");
        env.set("CONFAB_WEB_PORT", "3000");
        env.set("CONFAB_AUTH_URL", "http://127.0.0.1:8001/");
        env.set("CONFAB_BACKEND_URL", "http://127.0.0.1:8000");
        env.set("CONFAB_REDIS_URL", "redis://127.0.0.1:6379");
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.auth_url, "http://127.0.0.1:8001");
        assert_eq!(c.backend_urls, vec!["http://127.0.0.1:8000".to_string()]);
    }

    #[test]
    fn several_backends_are_a_comma_separated_list() {
        let mut env = Env::new();
        env.set("CONFAB_REDIS_URL", "redis://127.0.0.1:6379");
        env.set("CONFAB_HOST", "127.0.0.1");
        env.set("CONFAB_WEB_PORT", "0");
        env.set("CONFAB_AUTH_URL", "http://127.0.0.1:8001");
        env.set(
            "CONFAB_BACKEND_URL",
            "http://10.0.0.5:8000/, http://10.0.0.6:8000",
        );
        let c = Config::from_env(&env).unwrap();
        assert_eq!(
            c.backend_urls,
            vec!["http://10.0.0.5:8000", "http://10.0.0.6:8000"]
        );
        for bad in [
            "http://a:1,,http://b:1",
            "http://a:1,ftp://b",
            "http://a:1,http://a:1/",
            "http://a:1,not a url",
        ] {
            env.set("CONFAB_BACKEND_URL", bad);
            let err = Config::from_env(&env).unwrap_err();
            assert!(
                err.to_string().starts_with("CONFAB_BACKEND_URL:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn proxy_bounds_have_defaults_and_reject_zero() {
        let base = || {
            let mut env = Env::new();
            env.set("CONFAB_REDIS_URL", "redis://127.0.0.1:6379");
            env.set("CONFAB_HOST", "127.0.0.1");
            env.set("CONFAB_WEB_PORT", "0");
            env.set("CONFAB_AUTH_URL", "http://127.0.0.1:8001");
            env.set("CONFAB_BACKEND_URL", "http://127.0.0.1:8000");
            env
        };
        // An empty override counts as unset, whatever the process has exported.
        let mut env = base();
        env.set("CONFAB_WEB_UPSTREAM_TIMEOUT_SECS", "");
        env.set("CONFAB_WEB_MAX_SOCKETS", "");
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.upstream_timeout, Duration::from_secs(30));
        assert_eq!(c.max_sockets, 5000);

        env.set("CONFAB_WEB_UPSTREAM_TIMEOUT_SECS", "2");
        env.set("CONFAB_WEB_MAX_SOCKETS", "1");
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.upstream_timeout, Duration::from_secs(2));
        assert_eq!(c.max_sockets, 1);

        for (var, value) in [
            ("CONFAB_WEB_UPSTREAM_TIMEOUT_SECS", "0"),
            ("CONFAB_WEB_UPSTREAM_TIMEOUT_SECS", "soon"),
            ("CONFAB_WEB_MAX_SOCKETS", "0"),
            ("CONFAB_WEB_MAX_SOCKETS", "-1"),
            ("CONFAB_WEB_MAX_SOCKETS", "1000001"),
        ] {
            let mut env = base();
            env.set(var, value);
            let err = Config::from_env(&env).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{var}:")), "{err}");
        }
    }

    #[test]
    fn a_non_http_upstream_names_the_variable() {
        let mut env = Env::new();
        env.set("CONFAB_REDIS_URL", "redis://127.0.0.1:6379");
        env.set("CONFAB_HOST", "127.0.0.1");
        env.set("CONFAB_WEB_PORT", "0");
        env.set("CONFAB_AUTH_URL", "http://127.0.0.1:8001");
        env.set("CONFAB_BACKEND_URL", "ftp://example.com");
        let err = Config::from_env(&env).unwrap_err();
        assert!(err.to_string().starts_with("CONFAB_BACKEND_URL:"), "{err}");
    }
}
