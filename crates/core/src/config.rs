//! Typed configuration from `CONFAB_*` environment variables.
//!
//! Every service reads its settings once at start through [`Env`]; a value
//! that does not parse stops the process with a message that names the
//! variable, instead of silently falling back to a default.

use std::{collections::HashMap, fmt::Display, str::FromStr};

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message} (got {value:?})")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub message: String,
}

/// A view over the environment, with explicit overrides (from command-line
/// flags) that take precedence.
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: HashMap<String, String>,
}

impl Env {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a value that wins over the process environment (used for flags).
    pub fn set(&mut self, var: &str, value: impl Into<String>) {
        self.overrides.insert(var.to_string(), value.into());
    }

    pub fn raw(&self, var: &str) -> Option<String> {
        self.overrides
            .get(var)
            .cloned()
            .or_else(|| std::env::var(var).ok())
            .filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or_else(|| default.to_string())
    }

    pub fn opt_string(&self, var: &str) -> Option<String> {
        self.raw(var)
    }

    pub fn parse<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => v.trim().parse::<T>().map_err(|e| ConfigError {
                var: var.to_string(),
                value: v.clone(),
                message: e.to_string(),
            }),
        }
    }

    pub fn bool(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError {
                    var: var.to_string(),
                    value: v,
                    message: "expected true or false".into(),
                }),
            },
        }
    }

    /// A URL-valued variable; checks the scheme so that a typo fails at start.
    pub fn url(&self, var: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let v = self.string(var, default);
        let parsed = url::Url::parse(&v).map_err(|e| ConfigError {
            var: var.to_string(),
            value: v.clone(),
            message: format!("not a valid URL: {e}"),
        })?;
        if !schemes.contains(&parsed.scheme()) {
            return Err(ConfigError {
                var: var.to_string(),
                value: v,
                message: format!("URL scheme must be one of {}", schemes.join(", ")),
            });
        }
        Ok(v.trim_end_matches('/').to_string())
    }

    pub fn invalid(&self, var: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            var: var.to_string(),
            value: self.raw(var).unwrap_or_default(),
            message: message.into(),
        }
    }
}

/// Settings every service shares: where it listens and the Redis key prefix.
#[derive(Debug, Clone)]
pub struct Common {
    pub host: String,
    pub port: u16,
    pub redis_url: String,
    pub redis_prefix: String,
}

impl Common {
    pub fn load(env: &Env, port_var: &str, default_port: u16) -> Result<Self, ConfigError> {
        let host = env.string("CONFAB_HOST", "127.0.0.1");
        if host.parse::<std::net::IpAddr>().is_err() && host != "localhost" {
            return Err(env.invalid("CONFAB_HOST", "expected an IP address"));
        }
        Ok(Self {
            host,
            port: env.parse(port_var, default_port)?,
            redis_url: env.url(
                "CONFAB_REDIS_URL",
                "redis://127.0.0.1:6379",
                &["redis", "rediss", "unix", "redis+unix"],
            )?,
            redis_prefix: env.string("CONFAB_REDIS_PREFIX", "confab:"),
        })
    }
}

/// The database URL of one service: its own variable, or the shared
/// `CONFAB_DATABASE_URL` with the service name appended to the database name
/// (`postgres://host/confab` → `confab_auth`, `confab_backend`).
pub fn database_url(env: &Env, own_var: &str, service: &str) -> Result<String, ConfigError> {
    if let Some(v) = env.opt_string(own_var) {
        return env.url(own_var, &v, &["postgres", "postgresql"]);
    }
    let base = env.url(
        "CONFAB_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/confab",
        &["postgres", "postgresql"],
    )?;
    Ok(crate::db::with_database_suffix(&base, service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_value_names_the_variable() {
        let mut env = Env::new();
        env.set("CONFAB_TEST_PORT", "eighty");
        let err = env.parse::<u16>("CONFAB_TEST_PORT", 1).unwrap_err();
        assert!(err.to_string().starts_with("CONFAB_TEST_PORT:"), "{err}");
    }

    #[test]
    fn url_scheme_is_checked() {
        let mut env = Env::new();
        env.set("CONFAB_X_URL", "http://nope");
        assert!(env.url("CONFAB_X_URL", "", &["redis"]).is_err());
        env.set("CONFAB_X_URL", "redis://h:1/");
        assert_eq!(
            env.url("CONFAB_X_URL", "", &["redis"]).unwrap(),
            "redis://h:1"
        );
    }

    #[test]
    fn service_database_from_shared_url() {
        let mut env = Env::new();
        env.set(
            "CONFAB_DATABASE_URL",
            "postgres://u@h:5/confab?sslmode=disable",
        );
        let url = database_url(&env, "CONFAB_AUTH_DATABASE_URL_UNSET_IN_TEST", "auth").unwrap();
        assert_eq!(url, "postgres://u@h:5/confab_auth?sslmode=disable");
    }
}
