//! The one error type of the auth service and its single mapping to HTTP.
//!
//! Every handler returns `Result<_, Error>`, so the response body always has
//! the same shape: `{"error":{"code","message","field"?}}`. Errors a user can
//! cause carry a specific message; infrastructure errors are logged here and
//! answered with a bare 500 so nothing about the database or Redis leaks.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use confab_core::{
    error::InfraError,
    http::api::{error_response, MalformedRequest},
    revocation::RevokeReason,
    tokens::TokenError,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not the JSON the endpoint expects (syntax, types, fields).
    #[error("{0}")]
    MalformedRequest(String),

    /// A well-formed request with a value we refuse; `field` names it.
    #[error("{message}")]
    Validation {
        field: &'static str,
        message: String,
    },

    #[error("An account with this email address already exists.")]
    EmailTaken,

    /// Too many log-in, sign-up or refresh attempts (see `throttle`).
    #[error("Too many attempts. Wait a moment and try again.")]
    Throttled(std::time::Duration),

    /// Deliberately identical for an unknown email and a wrong password.
    #[error("Email or password is incorrect.")]
    InvalidCredentials,

    #[error("{0}")]
    InvalidRefreshToken(&'static str),

    #[error("This refresh token was already used; the session has been signed out for safety.")]
    RefreshTokenReused,

    /// The session ended; why, when known (the body's `reason`, so a page
    /// can tell the person).
    #[error("This session has been signed out.")]
    SessionRevoked(Option<RevokeReason>),

    #[error("{0}")]
    SessionNotFound(&'static str),

    /// The refresh cookie was sent by a page of another site (see
    /// `http::same_site`).
    #[error("This request did not come from a Confab page; sign-in cookies are only accepted from Confab itself.")]
    CrossSiteRequest,

    #[error("This endpoint needs an access token: send `Authorization: Bearer <token>`.")]
    MissingToken,

    #[error("{}", token_message(.0))]
    Token(TokenError),

    /// A sensitive action (deleting the account) needs the password or a
    /// sign-in within the last few minutes.
    #[error("{0}")]
    ReauthenticationRequired(&'static str),
    #[error("No linked sign-in provider has this id.")]
    IdentityNotFound,

    #[error("This is the only way left to sign in to this account; set a password or link another provider first.")]
    LastSignInMethod,

    #[error("The picture is too large: at most {} KiB.", .0 / 1024)]
    AvatarTooLarge(usize),

    #[error("Upload the picture as PNG, JPEG, GIF or WebP.")]
    AvatarType,

    /// Signing in to an account an administrator disabled (after the
    /// password was checked, so the answer reveals nothing to others).
    #[error("This account has been disabled by an administrator. Contact them to have it enabled again.")]
    AccountDisabled,

    /// An admin route called by an account without the admin role.
    #[error("This needs the admin role.")]
    Forbidden,

    #[error("No account has this id.")]
    UserNotFound,

    /// An admin may not disable their own account (nobody could enable it).
    #[error("You cannot disable your own account.")]
    CannotDisableSelf,
    #[error("This confirmation link is not valid. Ask for a new one in Settings.")]
    EmailLinkInvalid,

    #[error("This confirmation link was already used. If your email has not changed, ask for a new link in Settings.")]
    EmailLinkUsed,

    #[error("This confirmation link has expired. Ask for a new one in Settings.")]
    EmailLinkExpired,

    /// The SMTP server refused or could not be reached; logged in detail.
    #[error("We could not send the confirmation email just now, so nothing was changed. Try again in a few minutes.")]
    MailUnavailable,

    #[error("No such endpoint.")]
    NotFound,

    #[error("This endpoint does not support that HTTP method.")]
    MethodNotAllowed,

    /// Database, Redis, I/O: logged, answered with a bare 500.
    #[error(transparent)]
    Infra(InfraError),

    /// A bug or a broken invariant (a stored key that does not parse, a
    /// panicked hashing task); the message is for the logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Error::Validation {
            field,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            Error::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::EmailTaken => StatusCode::CONFLICT,
            Error::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::InvalidCredentials
            | Error::InvalidRefreshToken(_)
            | Error::RefreshTokenReused
            | Error::SessionRevoked(_)
            | Error::MissingToken => StatusCode::UNAUTHORIZED,
            Error::SessionNotFound(_) => StatusCode::NOT_FOUND,
            Error::CrossSiteRequest => StatusCode::FORBIDDEN,
            Error::Token(TokenError::Jwks(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Token(_) => StatusCode::UNAUTHORIZED,
            Error::ReauthenticationRequired(_) => StatusCode::FORBIDDEN,
            Error::AccountDisabled | Error::Forbidden => StatusCode::FORBIDDEN,
            Error::UserNotFound => StatusCode::NOT_FOUND,
            Error::CannotDisableSelf => StatusCode::CONFLICT,
            Error::AvatarTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::AvatarType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotFound | Error::IdentityNotFound => StatusCode::NOT_FOUND,
            Error::EmailLinkInvalid => StatusCode::BAD_REQUEST,
            Error::EmailLinkUsed | Error::EmailLinkExpired => StatusCode::GONE,
            Error::MailUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::LastSignInMethod => StatusCode::CONFLICT,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Infra(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Infra(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MalformedRequest(_) => "malformed_request",
            Error::Validation { .. } => "validation_failed",
            Error::EmailTaken => "email_taken",
            Error::Throttled(_) => "too_many_attempts",
            Error::InvalidCredentials => "invalid_credentials",
            Error::InvalidRefreshToken(_) => "invalid_refresh_token",
            Error::RefreshTokenReused => "refresh_token_reused",
            Error::SessionRevoked(_) => "session_revoked",
            Error::SessionNotFound(_) => "session_not_found",
            Error::CrossSiteRequest => "cross_site_request",
            Error::MissingToken => "missing_token",
            Error::Token(e) => e.code(),
            Error::ReauthenticationRequired(_) => "reauthentication_required",
            Error::AvatarTooLarge(_) => "avatar_too_large",
            Error::AvatarType => "unsupported_avatar_type",
            Error::AccountDisabled => "account_disabled",
            Error::Forbidden => "forbidden",
            Error::UserNotFound => "user_not_found",
            Error::CannotDisableSelf => "cannot_disable_self",
            Error::NotFound => "not_found",
            Error::EmailLinkInvalid => "email_link_invalid",
            Error::EmailLinkUsed => "email_link_used",
            Error::EmailLinkExpired => "email_link_expired",
            Error::MailUnavailable => "mail_unavailable",
            Error::IdentityNotFound => "identity_not_found",
            Error::LastSignInMethod => "last_sign_in_method",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Infra(e) if e.is_unavailable() => "unavailable",
            Error::Infra(_) | Error::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Error::Validation { field, .. } => Some(field),
            Error::EmailTaken => Some("email"),
            Error::ReauthenticationRequired(_) => Some("password"),
            Error::AvatarTooLarge(_) | Error::AvatarType => Some("avatar"),
            _ => None,
        }
    }

    fn is_internal(&self) -> bool {
        self.status() == StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// Sentences for people; `TokenError`'s own texts are terse log lines.
fn token_message(e: &TokenError) -> &'static str {
    match e {
        TokenError::Malformed => "The access token is malformed.",
        TokenError::Expired => "The access token has expired; refresh it and try again.",
        TokenError::NotYetValid => "The access token is not valid yet.",
        TokenError::BadSignature => "The access token's signature is not valid.",
        TokenError::Algorithm => "The access token uses a signing algorithm that is not accepted.",
        TokenError::UnknownKey => "The access token was signed by an unknown key.",
        TokenError::WrongIssuerOrAudience => {
            "The access token was issued by another issuer or for another audience."
        }
        TokenError::Revoked => "This session has been signed out.",
        TokenError::Jwks(_) => "The signing keys are unavailable; try again shortly.",
    }
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Revoked => Error::SessionRevoked(None),
            other => Error::Token(other),
        }
    }
}

confab_core::infra_error_conversions!(Error);

impl From<MalformedRequest> for Error {
    fn from(e: MalformedRequest) -> Self {
        Error::MalformedRequest(e.0)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if self.is_internal() {
            tracing::error!(error = %self, "request failed with an internal error");
            InfraError::PUBLIC_MESSAGE.to_string()
        } else if let Error::Infra(e) = &self {
            tracing::warn!(error = %e, "request failed: a store is unavailable");
            InfraError::UNAVAILABLE_MESSAGE.to_string()
        } else {
            self.to_string()
        };
        let mut response = match &self {
            Error::SessionRevoked(Some(reason)) => (
                status,
                axum::Json(serde_json::json!({"error": {
                    "code": self.code(),
                    "message": message,
                    "reason": reason.as_str(),
                }})),
            )
                .into_response(),
            Error::Throttled(wait) => {
                let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
                let mut r = (
                    status,
                    axum::Json(serde_json::json!({"error": {
                        "code": self.code(),
                        "message": message,
                        "retry_after": secs,
                    }})),
                )
                    .into_response();
                r.headers_mut().insert(header::RETRY_AFTER, secs.into());
                r
            }
            Error::Infra(_) if status == StatusCode::SERVICE_UNAVAILABLE => {
                let mut r = error_response(status, self.code(), &message, None);
                r.headers_mut().insert(header::RETRY_AFTER, 1.into());
                r
            }
            _ => error_response(status, self.code(), &message, self.field()),
        };
        if status == StatusCode::UNAUTHORIZED
            && matches!(
                self,
                Error::MissingToken | Error::Token(_) | Error::SessionRevoked(_)
            )
        {
            // RFC 6750 §3: tell Bearer clients how to authenticate.
            let value = if matches!(self, Error::MissingToken) {
                "Bearer"
            } else {
                "Bearer error=\"invalid_token\""
            };
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        response
    }
}

/// Turns a named database constraint violation into a domain error, so a
/// race between two signups with one email becomes a clean 409 instead of a
/// 500 (the idea of realworld-axum-sqlx's `on_constraint`).
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, f: impl FnOnce() -> Error) -> Result<T, Error>;
}

impl<T, E: Into<Error>> ResultExt<T> for Result<T, E> {
    fn on_constraint(self, name: &str, f: impl FnOnce() -> Error) -> Result<T, Error> {
        self.map_err(|e| match e.into() {
            Error::Infra(InfraError::Database(sqlx::Error::Database(db)))
                if db.constraint() == Some(name) =>
            {
                f()
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn body(e: Error) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn validation_error_names_the_field() {
        let (status, v) = body(Error::validation("email", "nope")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["error"]["field"], "email");
        assert_eq!(v["error"]["message"], "nope");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak() {
        let (status, v) = body(Error::Internal("secret detail".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["code"], "internal");
        assert!(!v.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn token_errors_keep_their_codes() {
        let (status, v) = body(TokenError::Expired.into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["code"], "token_expired");
        let (_, v) = body(TokenError::Revoked.into()).await;
        assert_eq!(v["error"]["code"], "session_revoked");
    }

    #[tokio::test]
    async fn invalid_credentials_body_is_exact() {
        let (status, v) = body(Error::InvalidCredentials).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            v,
            json!({"error":{"code":"invalid_credentials","message":"Email or password is incorrect."}})
        );
    }
}
