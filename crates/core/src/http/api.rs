//! What every service's handlers share, so each thing is done one way: the
//! JSON body extractor and the text of its rejection, reading the Bearer
//! token, and the shape of an error body. Each service still maps its own
//! error type to HTTP in one place; these are the pieces it maps with.

use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// A request body (or query string) that is not what the endpoint expects:
/// syntax, types, missing or unknown fields. Services answer it with 400
/// `malformed_request` and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedRequest(pub String);

impl From<JsonRejection> for MalformedRequest {
    fn from(rejection: JsonRejection) -> Self {
        MalformedRequest(match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "Expected a JSON body with `Content-Type: application/json`.".to_string()
            }
            // axum's text is specific ("missing field `email` at line 1 column 20").
            other => other.body_text(),
        })
    }
}

/// A service's shared state names the service's error type, so extractors
/// shared between services reject with that type (and the service maps it
/// to HTTP in its one place).
pub trait ServiceState: Send + Sync {
    type Error: From<MalformedRequest> + IntoResponse;
}

/// `axum::Json`, but a body that does not parse is rejected with the
/// service's own error (400 `malformed_request`), not axum's plain text.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: ServiceState,
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = S::Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(MalformedRequest::from(rejection).into()),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// An `Authorization` header that is not `Bearer <token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Authorization header is not `Bearer <token>`")]
pub struct NotBearer;

/// The token of `Authorization: Bearer <token>`; `Ok(None)` when there is no
/// `Authorization` header. The scheme is case-insensitive (RFC 7235 §2.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, NotBearer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .map(Some)
        .ok_or(NotBearer)
}

/// The error body every service answers with:
/// `{"error":{"code","message","field"?}}`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> Response {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(field) = field {
        error["field"] = field.into();
    }
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc ", "bEaReR abc"] {
            assert_eq!(bearer_token(&with_authorization(v)), Ok(Some("abc")), "{v}");
        }
    }

    #[test]
    fn absent_header_is_none_and_other_schemes_are_refused() {
        assert_eq!(bearer_token(&HeaderMap::new()), Ok(None));
        for v in ["Basic abc", "Bearer", "Bearer   ", "abc", "Bearerabc"] {
            assert_eq!(bearer_token(&with_authorization(v)), Err(NotBearer), "{v}");
        }
    }

    #[tokio::test]
    async fn error_body_shape() {
        let r = error_response(StatusCode::CONFLICT, "taken", "Taken.", Some("email"));
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"code":"taken","message":"Taken.","field":"email"}})
        );
    }
}
