//! Sessions: refresh-token rotation with reuse detection, and logout.

use super::{
    clear_refresh_cookie, extractor::verified_claims, token_response, ApiContext, UserBody,
    REFRESH_COOKIE,
};
use crate::{
    domain::{PresentedState, Refresh, RefreshSecret},
    error::Error,
    store,
};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use axum_extra::extract::CookieJar;
use chrono::{DateTime, Utc};
use confab_core::{
    events::{Event, EventKind},
    ids::{SessionId, UserId},
    revocation,
};
use serde::Deserialize;
use sqlx::{PgConnection, Postgres, Transaction};

const NO_REFRESH_TOKEN: &str =
    "No refresh token was sent: pass `refresh_token` in the body or the `confab_refresh` cookie.";
const UNKNOWN_REFRESH_TOKEN: &str = "This refresh token is not valid; sign in again.";
const EXPIRED_REFRESH_TOKEN: &str = "This refresh token has expired; sign in again.";

pub(super) fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
}

#[derive(Deserialize, Default)]
struct RefreshRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Creates a session and its first refresh token inside `tx`.
pub(super) async fn open_session(
    tx: &mut Transaction<'_, Postgres>,
    ctx: &ApiContext,
    user_id: UserId,
    user_agent: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(SessionId, RefreshSecret), Error> {
    let session_id = store::sessions::insert(&mut **tx, user_id, user_agent, now).await?;
    let secret = RefreshSecret::generate();
    store::refresh_tokens::insert(
        &mut **tx,
        session_id,
        &secret,
        now,
        ctx.config.refresh_policy().expiry(now),
    )
    .await?;
    Ok((session_id, secret))
}

/// The body is optional: browsers send nothing and rely on the cookie;
/// other clients send `{"refresh_token": "..."}`.
fn parse_refresh_body(body: &Bytes) -> Result<RefreshRequest, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RefreshRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Error::MalformedRequest(format!("The body is not valid refresh request JSON: {e}"))
    })
}

#[tracing::instrument(name = "refresh", skip_all)]
async fn refresh(
    State(ctx): State<ApiContext>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let request = parse_refresh_body(&body)?;
    let raw = request
        .refresh_token
        .filter(|t| !t.trim().is_empty())
        .or_else(|| jar.get(REFRESH_COOKIE).map(|c| c.value().to_string()))
        .ok_or(Error::InvalidRefreshToken(NO_REFRESH_TOKEN))?;
    let presented = RefreshSecret::from_client(&raw)
        .ok_or(Error::InvalidRefreshToken(UNKNOWN_REFRESH_TOKEN))?;

    let mut tx = ctx.db.begin().await?;
    let token = store::refresh_tokens::lock_presented(&mut *tx, &presented)
        .await?
        .ok_or(Error::InvalidRefreshToken(UNKNOWN_REFRESH_TOKEN))?;
    // Read the clock after the lock: a concurrent refresh of this token may
    // have held it, and its `used_at` is what we compare against.
    let now = ctx.config.clock.now();
    let state = PresentedState {
        expires_at: token.expires_at,
        used_at: token.used_at,
        session_revoked: token.session_revoked_at.is_some(),
    };
    let policy = ctx.config.refresh_policy();
    let decision = policy.decide(&state, now);
    match decision {
        Refresh::SessionRevoked => return Err(Error::SessionRevoked),
        Refresh::Expired => return Err(Error::InvalidRefreshToken(EXPIRED_REFRESH_TOKEN)),
        Refresh::Rotate => {}
        Refresh::WithinGrace => {
            tracing::info!(session_id = %token.session_id, "refresh token reused within the grace window");
            metrics::counter!("auth_refresh_total", "outcome" => "grace").increment(1);
        }
        Refresh::ReuseDetected => {
            let revoked = store::sessions::revoke(&mut *tx, token.session_id, now).await?;
            if let Some(user_id) = revoked {
                insert_revoked_event(&mut tx, user_id, token.session_id, now).await?;
            }
            tx.commit().await?;
            ctx.outbox.notify();
            tracing::warn!(
                session_id = %token.session_id,
                user_id = %token.user_id,
                "refresh token reuse detected; session revoked"
            );
            metrics::counter!("auth_refresh_total", "outcome" => "reuse_detected").increment(1);
            if let Err(e) = announce_revocation(&ctx, token.session_id).await {
                // The database already records the revocation; a later
                // logout or the event stream will repeat it.
                tracing::error!(error = %e, session_id = %token.session_id, "could not announce a revoked session");
            }
            return Err(Error::RefreshTokenReused);
        }
    }

    let successor = RefreshSecret::generate();
    let successor_id = store::refresh_tokens::insert(
        &mut *tx,
        token.session_id,
        &successor,
        now,
        policy.expiry(now),
    )
    .await?;
    if decision == Refresh::Rotate {
        store::refresh_tokens::mark_used(&mut *tx, token.id, successor_id, now).await?;
        metrics::counter!("auth_refresh_total", "outcome" => "rotated").increment(1);
    }
    store::sessions::touch(&mut *tx, token.session_id, now).await?;
    tx.commit().await?;

    let user = UserBody {
        id: token.user_id,
        email: token.email,
        display_name: token.display_name,
    };
    token_response(
        &ctx,
        &headers,
        StatusCode::OK,
        user,
        token.session_id,
        &successor,
        now,
    )
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
    let bearer = verified_claims(&ctx, &headers);
    let cookie = jar
        .get(REFRESH_COOKIE)
        .and_then(|c| RefreshSecret::from_client(c.value()));
    let session_id = match (bearer, cookie) {
        (Ok(Some(claims)), _) => Some(claims.sid),
        // An unknown cookie has no session to end; the client still gets
        // what it asked for: a cleared cookie.
        (_, Some(secret)) => store::refresh_tokens::session_of(&ctx.db, &secret).await?,
        (Ok(None), None) => return Err(Error::MissingToken),
        (Err(e), None) => return Err(e),
    };
    if let Some(session_id) = session_id {
        revoke_session(&ctx, session_id).await?;
        tracing::info!(%session_id, "session logged out");
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_refresh_cookie(response.headers_mut(), ctx.config.cookie_secure);
    Ok(response)
}

/// Revoke in the database (with its `session.revoked` event) and then in
/// Redis. Safe to repeat: the event is written only by the call that
/// actually revoked, the Redis steps are idempotent.
pub(crate) async fn revoke_session(ctx: &ApiContext, session_id: SessionId) -> Result<(), Error> {
    let mut tx = ctx.db.begin().await?;
    let now = ctx.config.clock.now();
    if let Some(user_id) = store::sessions::revoke(&mut *tx, session_id, now).await? {
        insert_revoked_event(&mut tx, user_id, session_id, now).await?;
    }
    tx.commit().await?;
    ctx.outbox.notify();
    announce_revocation(ctx, session_id).await
}

async fn insert_revoked_event(
    tx: &mut PgConnection,
    user_id: UserId,
    session_id: SessionId,
    at: DateTime<Utc>,
) -> Result<(), Error> {
    let event = Event::new(
        EventKind::SessionRevoked {
            user_id,
            session_id,
        },
        at,
    );
    store::outbox::insert(tx, &event).await
}

/// Every service checks the Redis entry on each request, and every backend
/// closes the session's sockets when the pub/sub message arrives.
/// Revocation must reach Redis for other services to see it; if Redis does
/// not answer in time the request fails and the client retries (logout is
/// idempotent).
pub(super) async fn announce_revocation(
    ctx: &ApiContext,
    session_id: SessionId,
) -> Result<(), Error> {
    revocation::announce(
        &ctx.redis,
        &ctx.keys,
        session_id,
        ctx.config.access_token_ttl,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_body_is_optional() {
        assert!(parse_refresh_body(&Bytes::new())
            .unwrap()
            .refresh_token
            .is_none());
        assert!(parse_refresh_body(&Bytes::from_static(b" \n"))
            .unwrap()
            .refresh_token
            .is_none());
        assert!(parse_refresh_body(&Bytes::from_static(b"{}"))
            .unwrap()
            .refresh_token
            .is_none());
        assert_eq!(
            parse_refresh_body(&Bytes::from_static(br#"{"refresh_token":"x"}"#))
                .unwrap()
                .refresh_token
                .as_deref(),
            Some("x")
        );
        assert!(matches!(
            parse_refresh_body(&Bytes::from_static(b"{nope")),
            Err(Error::MalformedRequest(_))
        ));
        assert!(matches!(
            parse_refresh_body(&Bytes::from_static(br#"{"refresh_token":5}"#)),
            Err(Error::MalformedRequest(_))
        ));
    }
}
