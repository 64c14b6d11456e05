//! Logging set-up, in one place for every process. Logs go to stderr so that
//! stdout carries only machine-readable lines (the bound address).

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// `CONFAB_LOG` (an `EnvFilter` directive, default `info`; an invalid one
/// stops the process with an error naming the variable) and
/// `CONFAB_LOG_FORMAT` (`json` or `text`).
pub fn init(service: &str) -> Result<(), crate::config::ConfigError> {
    let filter = match std::env::var("CONFAB_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| crate::config::ConfigError {
                var: "CONFAB_LOG".into(),
                value: v.clone(),
                message: format!("not a log filter ({e}); e.g. info,confab_backend=debug"),
            })?
        }
        _ => EnvFilter::new("info,sqlx=warn,tower_http=info"),
    };
    let json = std::env::var("CONFAB_LOG_FORMAT").is_ok_and(|v| v == "json");
    let registry = tracing_subscriber::registry().with(filter);
    let res = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().compact().with_writer(std::io::stderr))
            .try_init()
    };
    if res.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
    Ok(())
}
