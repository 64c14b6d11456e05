//! The sessions a person can see and end: the list (`GET
//! /v1/auth/sessions`), ending one device (`DELETE
//! /v1/auth/sessions/{id}`), this device (`POST /v1/auth/logout`) and all of
//! them (`POST /v1/auth/logout-all`).
//!
//! The list names sessions by their public `handle`, never by the `sid`
//! inside access tokens. Signing a device out is answered with
//! `Clear-Site-Data: "cookies", "storage"` when it is the caller's own, so
//! the browser forgets the refresh cookie and anything a page kept.

use super::{
    clear_refresh_cookie,
    extractor::verified_claims,
    same_site::ensure_cookie_use_is_same_site,
    sessions::{revoke_all_sessions, revoke_session},
    ApiContext, AuthUser, Json, REFRESH_COOKIE,
};
use crate::{
    domain::{device_label, RefreshSecret},
    error::Error,
    store,
};
use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Router,
};
use axum_extra::extract::CookieJar;
use chrono::{DateTime, Utc};
use confab_core::{
    ids::{SessionId, UserId},
    revocation::RevokeReason,
};
use serde::Serialize;

pub(super) fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/auth/sessions", get(list))
        .route("/v1/auth/sessions/{id}", delete(end_one))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-all", post(logout_all))
}

#[derive(Serialize)]
struct SessionsBody {
    sessions: Vec<SessionView>,
}

#[derive(Serialize)]
struct SessionView {
    /// The public handle (not the token's `sid`).
    id: uuid::Uuid,
    /// "Chrome on Linux"
    device: String,
    /// The client's network ("203.0.113.0/24"), when known.
    ip: Option<String>,
    created_at: DateTime<Utc>,
    last_active_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_reason: Option<String>,
    /// The session of the access token this list was asked with.
    current: bool,
}

#[tracing::instrument(name = "list_sessions", skip_all, fields(user_id = %auth.user_id))]
async fn list(auth: AuthUser, State(ctx): State<ApiContext>) -> Result<Json<SessionsBody>, Error> {
    let rows = store::sessions::list(&ctx.db, auth.user_id, ctx.config.clock.now()).await?;
    let sessions = rows
        .into_iter()
        .map(|s| SessionView {
            id: s.handle,
            device: device_label(s.user_agent.as_deref()),
            ip: s.ip,
            created_at: s.created_at,
            last_active_at: s.last_used_at,
            revoked_at: s.revoked_at,
            revoked_reason: s.revoked_reason,
            current: s.id == auth.session_id,
        })
        .collect();
    Ok(Json(SessionsBody { sessions }))
}

const NO_SUCH_SESSION: &str = "No session of yours has this id; it may have been removed.";

/// Sign one device out. Another device's session ends as "signed out on
/// another device"; the caller's own ends like a logout. Ending a session
/// that already ended is a success (idempotent).
#[tracing::instrument(name = "end_session", skip_all, fields(user_id = %auth.user_id))]
async fn end_one(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
    Path(handle): Path<String>,
) -> Result<Response, Error> {
    // Someone else's handle and a malformed one get the same 404 as a
    // handle that does not exist: the answer reveals nothing.
    let handle =
        uuid::Uuid::parse_str(&handle).map_err(|_| Error::SessionNotFound(NO_SUCH_SESSION))?;
    let sid = store::sessions::by_handle(&ctx.db, auth.user_id, handle)
        .await?
        .ok_or(Error::SessionNotFound(NO_SUCH_SESSION))?;
    let own = sid == auth.session_id;
    let reason = if own {
        RevokeReason::SignedOut
    } else {
        RevokeReason::SignedOutElsewhere
    };
    revoke_session(&ctx, sid, reason).await?;
    tracing::info!(session = %sid.log_tag(), own, "session ended from the session list");
    Ok(if own {
        signed_out(&ctx)
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// Ends the session of the access token, or of the refresh cookie when the
/// access token is missing or no longer valid (a browser whose access token
/// expired must still be able to log out).
#[tracing::instrument(name = "logout", skip_all)]
async fn logout(
    State(ctx): State<ApiContext>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if let Some((session_id, _)) = caller_session(&ctx, &jar, &headers).await? {
        revoke_session(&ctx, session_id, RevokeReason::SignedOut).await?;
        tracing::info!(session = %session_id.log_tag(), "session logged out");
    }
    Ok(signed_out(&ctx))
}

/// Ends every session of the caller's account, this one included.
#[tracing::instrument(name = "logout_all", skip_all)]
async fn logout_all(
    State(ctx): State<ApiContext>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Some((session_id, user)) = caller_session(&ctx, &jar, &headers).await? else {
        // A cookie that names no session: nothing to end, and the client
        // gets what it asked for, a signed-out browser.
        return Ok(signed_out(&ctx));
    };
    // An access token of a session that already ended must not end the
    // others: only a live session speaks for the account.
    if !store::sessions::is_active(&ctx.db, session_id).await? {
        let reason = store::sessions::revoked_reason(&ctx.db, session_id).await?;
        return Err(Error::SessionRevoked(reason));
    }
    let ended = revoke_all_sessions(&ctx, user, RevokeReason::SignedOutEverywhere).await?;
    tracing::info!(user_id = %user, ended, "signed out everywhere");
    Ok(signed_out(&ctx))
}

/// The caller's session and user: from a valid access token, else from the
/// refresh cookie (checked for same-site use). `None` for a cookie that
/// names no session.
async fn caller_session(
    ctx: &ApiContext,
    jar: &CookieJar,
    headers: &HeaderMap,
) -> Result<Option<(SessionId, UserId)>, Error> {
    let bearer = verified_claims(ctx, headers);
    let cookie = jar
        .get(REFRESH_COOKIE)
        .and_then(|c| RefreshSecret::from_client(c.value()));
    match (bearer, cookie) {
        (Ok(Some(claims)), _) => Ok(Some((claims.sid, claims.sub))),
        (_, Some(secret)) => {
            ensure_cookie_use_is_same_site(headers)?;
            Ok(store::refresh_tokens::owner_of(&ctx.db, &secret).await?)
        }
        (Ok(None), None) => Err(Error::MissingToken),
        (Err(e), None) => Err(e),
    }
}

/// 204 with the refresh cookie cleared and the browser told to forget this
/// origin's cookies and storage.
fn signed_out(ctx: &ApiContext) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_refresh_cookie(response.headers_mut(), ctx.config.cookie_secure);
    response.headers_mut().insert(
        "clear-site-data",
        HeaderValue::from_static("\"cookies\", \"storage\""),
    );
    response
}
