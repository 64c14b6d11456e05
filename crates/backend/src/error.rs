//! The backend's one error type, mapped to HTTP (and to socket error frames)
//! in one place.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use confab_core::tokens::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication required")]
    MissingToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
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
            Error::NotFound(_) => "not_found",
            Error::Invalid { code, .. } => code,
            Error::Malformed(_) => "malformed_request",
            Error::Db(_) | Error::Migrate(_) | Error::Redis(_) | Error::Io(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::MissingToken | Error::Token(_) => match self {
                Error::Token(TokenError::Jwks(_)) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            },
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Malformed(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to users; internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Error::Db(_) | Error::Migrate(_) | Error::Redis(_) | Error::Io(_) => {
                "Something went wrong on our side. Please try again.".into()
            }
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

impl Error {
    /// The usual body with a status other than the variant's own (403 for a
    /// foreign origin, 405 for a wrong method).
    pub fn with_status(self, status: StatusCode) -> Response {
        let mut r = self.into_response();
        *r.status_mut() = status;
        r
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.is_internal() {
            tracing::error!(error = %self, "internal error");
        }
        let mut body = serde_json::json!({
            "error": { "code": self.code(), "message": self.public_message() }
        });
        if let Some(f) = self.field() {
            body["error"]["field"] = f.into();
        }
        let mut resp = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
