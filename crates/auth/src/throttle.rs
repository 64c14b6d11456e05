//! Brute-force throttling of log-in, sign-up and refresh: per client IP and
//! per account, both checked in one atomic GCRA script
//! ([`confab_core::ratelimit`]), so every auth instance shares the count. A
//! refusal is 429 `too_many_attempts` with `Retry-After`, before any password
//! is hashed.
//!
//! The account is named by a hash (SHA-256 of the lowercased email, or of
//! the presented refresh token), never in clear. The client IP is the
//! rightmost `X-Forwarded-For` entry (web's proxy appends it), else the
//! connection's peer. If Redis does not answer the request goes through
//! (logged): signing in matters more than the throttle.

use crate::error::Error;
use axum::{extract::FromRequestParts, http::request::Parts};
use confab_core::{
    clock::Clock,
    config::{ConfigError, Env},
    keys::Keys,
    ratelimit::{Rate, Throttle, Verdict},
};
use sha2::{Digest, Sha256};
use std::{net::IpAddr, net::SocketAddr, time::Duration};

/// `CONFAB_AUTH_THROTTLE_*`: attempts a minute (with as large a burst); 0 is off.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Per client IP (`CONFAB_AUTH_THROTTLE_IP_PER_MINUTE`, 60).
    pub ip_per_minute: u32,
    /// Per account (`CONFAB_AUTH_THROTTLE_ACCOUNT_PER_MINUTE`, 10).
    pub account_per_minute: u32,
}

impl ThrottleConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            ip_per_minute: env.parse("CONFAB_AUTH_THROTTLE_IP_PER_MINUTE", 60)?,
            account_per_minute: env.parse("CONFAB_AUTH_THROTTLE_ACCOUNT_PER_MINUTE", 10)?,
        })
    }
}

/// The connection's peer address, when the server recorded it.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[derive(Clone)]
pub struct AuthThrottle {
    throttle: Throttle,
    keys: Keys,
    config: ThrottleConfig,
    clock: Clock,
}

/// SHA-256 hex of `s`, shortened: names an account without naming it.
pub fn subject_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuthThrottle {
    pub fn new(
        redis: redis::aio::ConnectionManager,
        keys: Keys,
        config: ThrottleConfig,
        clock: Clock,
    ) -> Self {
        Self {
            throttle: Throttle::new(redis),
            keys,
            config,
            clock,
        }
    }

    /// Count one `action` (`login`, `signup`, `refresh`) from `ip` for
    /// `account` (already hashed); 429 when either limit is spent.
    pub async fn check(
        &self,
        action: &'static str,
        ip: Option<IpAddr>,
        account: Option<&str>,
    ) -> Result<(), Error> {
        let mut limits = Vec::new();
        if self.config.ip_per_minute > 0 {
            let ip = ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "unknown".into());
            limits.push((
                self.keys.throttle(&format!("{action}:ip"), &ip),
                Rate::per_minute(self.config.ip_per_minute),
            ));
        }
        if let (Some(account), true) = (account, self.config.account_per_minute > 0) {
            limits.push((
                self.keys.throttle(&format!("{action}:account"), account),
                Rate::per_minute(self.config.account_per_minute),
            ));
        }
        let now = self.clock.now().timestamp_millis();
        match self.throttle.check(&limits, now).await {
            Ok(Verdict::Allowed { .. }) => Ok(()),
            Ok(Verdict::Refused { which, retry_after }) => {
                let by = if limits.len() == 2 && which == 1 {
                    "account"
                } else {
                    "ip"
                };
                tracing::warn!(
                    action,
                    by,
                    retry_after_ms = retry_after.as_millis() as u64,
                    "auth attempt throttled"
                );
                metrics::counter!("auth_throttled_total", "action" => action, "by" => by)
                    .increment(1);
                Err(Error::Throttled(retry_after.max(Duration::from_secs(1))))
            }
            Err(e) => {
                tracing::warn!(error = %e, action, "auth throttle unavailable; letting the attempt through");
                Ok(())
            }
        }
    }
}
