//! Logging set-up, in one place for every process. Logs go to stderr so that
//! stdout carries only machine-readable lines (the bound address).

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// `CONFAB_LOG` (an `EnvFilter` directive, default `info`) and
/// `CONFAB_LOG_FORMAT` (`json` or `text`).
pub fn init(service: &str) {
    let filter = EnvFilter::try_from_env("CONFAB_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
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
}
