//! The web server's settings, read once at start from `CONFAB_*` variables.

use confab_core::config::{Common, ConfigError, Env};

/// Where the web server listens and where the two services it fronts live.
///
/// The browser only ever talks to this server; `auth_url` and `backend_url`
/// are internal addresses (usually loopback or a private network) that the
/// reverse proxy forwards to.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub auth_url: String,
    pub backend_url: String,
}

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
            backend_url: env.url(
                "CONFAB_BACKEND_URL",
                "http://127.0.0.1:8000",
                &["http", "https"],
            )?,
        })
    }
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
        assert_eq!(c.backend_url, "http://127.0.0.1:8000");
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
