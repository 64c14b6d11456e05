//! The backend's one error type, mapped to HTTP here ([`IntoResponse`]) and
//! to socket error frames by the gateway from the same `code` and
//! `public_message`.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use confab_core::{
    error::InfraError,
    http::api::{error_response, MalformedRequest},
    tokens::TokenError,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication required")]
    MissingToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("This account was deleted.")]
    AccountDeleted,
    /// An admin route called with a token that does not carry the admin
    /// role.
    #[error("This needs the admin role.")]
    Forbidden,
    #[error("{0}")]
    NotFound(&'static str),
    /// A request body over its limit (413).
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A reply not linked to a question (imported that way) has nothing to
    /// answer again.
    #[error(
        "This reply is not linked to a question (it was imported), so it cannot be regenerated."
    )]
    NotRetryable,
    /// Retry or Regenerate while an attempt at the question is being written.
    #[error("A reply to this message is still being written; stop it or wait for it to finish.")]
    ReplyInProgress,
    /// Stop of a reply that is not being written.
    #[error("Only a reply that is still being written can be stopped.")]
    NotStoppable,
    /// A browser on another site tried to open the chat socket.
    #[error("This origin may not open a chat socket.")]
    OriginNotAllowed,
    #[error("This endpoint does not support that method.")]
    MethodNotAllowed,
    /// The user's plan refuses the message (quota, rate or concurrent
    /// replies): 429 with `Retry-After`, an upgrade link when one exists.
    #[error("{}", .0.message())]
    QuotaExceeded(Box<QuotaExceeded>),
    /// A payment provider's webhook that cannot be trusted (signature,
    /// timestamp) or read: 400, nothing changed.
    #[error("{0}")]
    Webhook(&'static str),
    /// The payment provider failed or is not configured.
    #[error("{0}")]
    Billing(String),
    /// The process holds `CONFAB_WS_MAX_SOCKETS` sockets (503), or the user
    /// `CONFAB_WS_MAX_SOCKETS_PER_USER` on this process (frame, close 4029).
    #[error("{0}")]
    TooManySockets(&'static str),
    /// Database, Redis, I/O: logged, answered with a bare 500.
    #[error(transparent)]
    Infra(InfraError),
    /// The local model file cannot be used (only at start).
    #[error(transparent)]
    Model(#[from] crate::agent::local::ModelError),
}

/// Why a message was refused by the plan, with what the client needs to
/// say so and offer the way out.
#[derive(Debug, Clone)]
pub struct QuotaExceeded {
    pub refusal: crate::plans::limiter::Refusal,
    pub plan_label: String,
    /// The plan's limit that refused (messages per window, per minute, or
    /// replies at once).
    pub limit: Option<u32>,
    /// Where a page starts the upgrade; `None` on the top plan.
    pub upgrade_url: Option<String>,
}

impl QuotaExceeded {
    /// Whole seconds to wait (at least 1), as in `Retry-After`.
    pub fn retry_after_secs(&self) -> u64 {
        self.refusal.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    pub fn message(&self) -> String {
        use crate::plans::limiter::LimitKind;
        let wait = human_wait(self.retry_after_secs());
        let upgrade = if self.upgrade_url.is_some() {
            " Upgrade for more, or"
        } else {
            ""
        };
        match self.refusal.kind {
            LimitKind::Quota => format!(
                "You have used all {} messages of the {} plan for today.{upgrade} try again in {wait}.",
                self.limit.unwrap_or(0),
                self.plan_label
            ),
            LimitKind::Rate => format!(
                "That is faster than the {} plan allows ({} messages a minute).{upgrade} try again in {wait}.",
                self.plan_label,
                self.limit.unwrap_or(0)
            ),
            LimitKind::Concurrency => format!(
                "{} replies are already being written, the most the {} plan allows at once. Send it when one has finished.",
                self.limit.unwrap_or(0),
                self.plan_label
            ),
        }
    }
}

fn human_wait(secs: u64) -> String {
    match secs {
        0..=90 => format!("{secs} s"),
        91..=5400 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h", secs.div_ceil(3600)),
    }
}

impl From<crate::agent::BuildError> for Error {
    fn from(e: crate::agent::BuildError) -> Self {
        match e {
            crate::agent::BuildError::Infra(e) => Error::Infra(e),
            crate::agent::BuildError::Model(e) => Error::Model(e),
        }
    }
}

confab_core::infra_error_conversions!(Error);

impl From<MalformedRequest> for Error {
    fn from(e: MalformedRequest) -> Self {
        Error::Malformed(e.0)
    }
}

impl Error {
    pub fn invalid(
        code: &'static str,
        field: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
            field,
        }
    }

    /// Stable machine-readable code, shared by HTTP bodies and socket frames.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MissingToken => "missing_token",
            Error::Token(e) => e.code(),
            Error::AccountDeleted => "account_deleted",
            Error::Forbidden => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::TooLarge { code, .. } => code,
            Error::Invalid { code, .. } => code,
            Error::Malformed(_) => "malformed_request",
            Error::NotRetryable => "not_retryable",
            Error::ReplyInProgress => "reply_in_progress",
            Error::NotStoppable => "not_stoppable",
            Error::OriginNotAllowed => "origin_not_allowed",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::QuotaExceeded(_) => "quota_exceeded",
            Error::Webhook(_) => "invalid_webhook",
            Error::Billing(_) => "billing_unavailable",
            Error::TooManySockets(_) => "too_many_sockets",
            Error::Infra(e) if e.is_unavailable() => "unavailable",
            Error::Infra(_) | Error::Model(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Token(TokenError::Jwks(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Error::MissingToken | Error::Token(_) | Error::AccountDeleted => {
                StatusCode::UNAUTHORIZED
            }
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Invalid { .. } | Error::NotRetryable | Error::NotStoppable => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::ReplyInProgress => StatusCode::CONFLICT,
            Error::Malformed(_) => StatusCode::BAD_REQUEST,
            Error::OriginNotAllowed | Error::Forbidden => StatusCode::FORBIDDEN,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Webhook(_) => StatusCode::BAD_REQUEST,
            Error::Billing(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooManySockets(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Infra(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Infra(_) | Error::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to users; internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Error::Infra(e) if e.is_unavailable() => InfraError::UNAVAILABLE_MESSAGE.into(),
            Error::Infra(_) | Error::Model(_) => InfraError::PUBLIC_MESSAGE.into(),
            Error::Token(TokenError::Expired) => {
                "Your session token expired; refresh it and try again.".into()
            }
            Error::Token(TokenError::Revoked) => {
                "This session was signed out. Please log in again.".into()
            }
            Error::Token(TokenError::Jwks(_)) => {
                "The sign-in service is not reachable right now. Please try again shortly.".into()
            }
            Error::Token(_) => "The access token is not valid.".into(),
            other => other.to_string(),
        }
    }

    pub fn is_internal(&self) -> bool {
        self.status().is_server_error()
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Error::Invalid { field, .. } => *field,
            _ => None,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.is_internal() {
            tracing::error!(error = %self, "internal error");
        }
        let status = self.status();
        if let Error::QuotaExceeded(q) = &self {
            return quota_response(q);
        }
        let mut resp = error_response(status, self.code(), &self.public_message(), self.field());
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if self.code() == "unavailable" {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

/// 429 with `Retry-After` and the `RateLimit-*` headers, and the same
/// `retry_after`, `upgrade_url` and `limit` as the socket's error frame.
fn quota_response(q: &QuotaExceeded) -> Response {
    let retry = q.retry_after_secs();
    let body = serde_json::json!({ "error": {
        "code": "quota_exceeded",
        "message": q.message(),
        "limit": q.refusal.kind,
        "retry_after": retry,
        "upgrade_url": q.upgrade_url,
        "usage": q.refusal.usage,
    }});
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(axum::http::header::RETRY_AFTER, retry.into());
    if let Some(limit) = q.limit {
        h.insert("ratelimit-limit", limit.into());
    }
    h.insert("ratelimit-remaining", 0u32.into());
    h.insert("ratelimit-reset", retry.into());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_carries_its_own_status() {
        let e = Error::OriginNotAllowed;
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::FORBIDDEN, "origin_not_allowed")
        );
        let e = Error::MethodNotAllowed;
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let e = Error::Infra(InfraError::Io(std::io::Error::other("the secret thing")));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code(), "internal");
        assert!(!e.public_message().contains("secret"));
    }

    #[test]
    fn an_unanswering_store_is_unavailable_not_internal() {
        for e in [
            Error::Infra(InfraError::Timeout("the secret thing")),
            Error::Infra(InfraError::Database(sqlx::Error::PoolTimedOut)),
        ] {
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.code(), "unavailable");
            assert!(!e.public_message().contains("secret"));
            let r = e.into_response();
            assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "1");
        }
    }
}
