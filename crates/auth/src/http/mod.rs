//! The HTTP API: one router built from per-resource modules, sharing one
//! [`ApiContext`].

mod account;
pub(crate) mod admin;
mod email;
mod extractor;
mod jwks;
mod oidc;
mod profile;
mod same_site;
mod session_list;
mod sessions;
mod users;

pub use extractor::AuthUser;

use crate::{
    domain::{PasswordHasher, RefreshSecret},
    error::Error,
    keys::{AccessTokens, Subject},
    Config,
};
use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use chrono::{DateTime, Utc};
pub use confab_core::http::api::Json;
use confab_core::outbox::OutboxSignal;
use confab_core::{
    http::{api::ServiceState, readiness, standard_checks, with_common_layers},
    ids::{SessionId, UserId},
    keys::Keys,
};
use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};

/// Name of the cookie that carries the refresh token in browsers.
pub const REFRESH_COOKIE: &str = "confab_refresh";
/// The cookie is only sent to the endpoints that need it (refresh, logout),
/// never to the backend or with page loads.
const COOKIE_PATH: &str = "/v1/auth";

const OPENAPI: &str = include_str!("../../openapi.json");

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct ApiContext {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub tokens: Arc<AccessTokens>,
    pub passwords: Arc<PasswordHasher>,
    pub outbox: OutboxSignal,
    pub oidc: Arc<crate::oidc::Oidc>,
    pub throttle: crate::throttle::AuthThrottle,
    pub mailer: Arc<crate::mail::Mailer>,
}

pub fn router(ctx: ApiContext) -> Router {
    let api = Router::new()
        .merge(users::router())
        .merge(account::router())
        .merge(profile::router())
        .merge(email::router())
        .merge(sessions::router())
        .merge(session_list::router())
        .merge(admin::router())
        .merge(jwks::router())
        .merge(oidc::router())
        .route("/openapi.json", get(openapi))
        .route("/readyz", get(readyz))
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .with_state(ctx);
    with_common_layers(api, "auth")
}

/// Shared extractors (the JSON body) reject with this service's error.
impl ServiceState for ApiContext {
    type Error = Error;
}

#[derive(Debug, Serialize)]
pub struct UserBody {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    /// `user` or `admin`: pages show the admin console's link to admins.
    pub role: confab_core::tokens::Role,
}

#[derive(Debug, Serialize)]
struct TokenBody {
    user: UserBody,
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    /// Absent when the client asked for the cookie only (browsers).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// A client that keeps its refresh token in the httpOnly cookie (the web
/// app) sends this header, and the token is then left out of the JSON body,
/// so no page script ever sees it.
pub const COOKIE_ONLY_HEADER: &str = "x-confab-refresh-transport";

fn wants_cookie_only(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(COOKIE_ONLY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cookie"))
}

/// The answer to signup, login and refresh: a new access token, the new
/// refresh token in the body (unless the client asked for the cookie only)
/// and in the httpOnly cookie (for browsers, whose scripts never see it).
pub(crate) fn token_response(
    ctx: &ApiContext,
    headers: &axum::http::HeaderMap,
    status: StatusCode,
    user: UserBody,
    session_id: SessionId,
    refresh: &RefreshSecret,
    now: DateTime<Utc>,
) -> Result<Response, Error> {
    let access_token = ctx.tokens.issue(
        &Subject {
            user_id: user.id,
            session_id,
            email: &user.email,
            name: &user.display_name,
            role: user.role,
        },
        now,
    )?;
    let body = TokenBody {
        user,
        access_token,
        token_type: "Bearer",
        expires_in: ctx.tokens.ttl().as_secs(),
        refresh_token: (!wants_cookie_only(headers)).then(|| refresh.as_str().to_string()),
    };
    let cookie = refresh_cookie(
        refresh.as_str(),
        ctx.config.refresh_token_ttl,
        ctx.config.cookie_secure,
    );
    let mut response = (status, Json(body)).into_response();
    set_cookie_no_store(response.headers_mut(), cookie);
    Ok(response)
}

#[expect(
    clippy::expect_used,
    reason = "the value is a base64url secret or empty, the attributes are constants"
)]
fn refresh_cookie(value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let mut cookie = format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}; Max-Age={}",
        max_age.as_secs()
    );
    if secure {
        cookie.push_str("; Secure");
    }
    // The value is base64url and the attributes are ours: always valid.
    HeaderValue::from_str(&cookie).expect("cookie is a valid header value")
}

pub(crate) fn clear_refresh_cookie(headers: &mut HeaderMap, secure: bool) {
    set_cookie_no_store(headers, refresh_cookie("", Duration::ZERO, secure));
}

/// Token responses must not be cached by anything in between (RFC 6749 §5.1).
fn set_cookie_no_store(headers: &mut HeaderMap, cookie: HeaderValue) {
    headers.append(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn readyz(State(ctx): State<ApiContext>) -> Response {
    readiness(standard_checks(&ctx.db, &ctx.redis, &crate::MIGRATOR).await).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_attributes() {
        let c = refresh_cookie("abc", Duration::from_secs(60), false);
        assert_eq!(
            c,
            "confab_refresh=abc; HttpOnly; SameSite=Strict; Path=/v1/auth; Max-Age=60"
        );
        let c = refresh_cookie("", Duration::ZERO, true);
        assert_eq!(
            c,
            "confab_refresh=; HttpOnly; SameSite=Strict; Path=/v1/auth; Max-Age=0; Secure"
        );
    }

    #[test]
    fn openapi_is_valid_json_and_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            confab_core::http::unresolved_refs(&doc),
            Vec::<String>::new(),
            "every $ref resolves"
        );
        for (path, method) in [
            ("/v1/auth/signup", "post"),
            ("/v1/auth/login", "post"),
            ("/v1/auth/refresh", "post"),
            ("/v1/auth/logout", "post"),
            ("/v1/auth/logout-all", "post"),
            ("/v1/auth/sessions", "get"),
            ("/v1/auth/sessions/{id}", "delete"),
            ("/v1/auth/me", "get"),
            ("/v1/auth/account", "delete"),
            ("/v1/auth/me/email", "post"),
            ("/v1/auth/email/confirm", "post"),
            ("/.well-known/jwks.json", "get"),
            ("/v1/auth/oidc/providers", "get"),
            ("/v1/auth/oidc/{provider}/start", "get"),
            ("/v1/auth/oidc/{provider}/callback", "get"),
            ("/v1/auth/oidc/link", "post"),
            ("/v1/auth/identities", "get"),
            ("/v1/auth/identities/{id}", "delete"),
            ("/v1/auth/admin/whoami", "get"),
            ("/v1/auth/admin/users", "get"),
            ("/v1/auth/admin/users/{id}/disable", "post"),
            ("/v1/auth/admin/users/{id}/enable", "post"),
            ("/v1/auth/admin/audit", "get"),
            ("/openapi.json", "get"),
            ("/readyz", "get"),
            ("/healthz", "get"),
        ] {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
}
