//! Sessions: opening one, refresh-token rotation (with a grace that cannot
//! fork a session, and reuse detection), and revoking sessions (used by
//! logout, the session list and account deletion; see `session_list.rs`).

use super::{
    extractor::verified_claims, same_site::ensure_cookie_use_is_same_site, token_response,
    ApiContext, UserBody, REFRESH_COOKIE,
};
use crate::{
    domain::{coarse_ip, PresentedState, Refresh, RefreshSecret, SuccessorKey},
    error::Error,
    store::{self, sessions::NewSession},
};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
    Router,
};
use axum_extra::extract::CookieJar;
use chrono::{DateTime, Utc};
use confab_core::{
    events::{Event, EventKind},
    ids::{SessionId, UserId},
    revocation::{self, RevokeReason},
};
use serde::Deserialize;
use sqlx::{PgConnection, Postgres, Transaction};
use std::net::IpAddr;

const NO_REFRESH_TOKEN: &str =
    "No refresh token was sent: pass `refresh_token` in the body or the `confab_refresh` cookie.";
const UNKNOWN_REFRESH_TOKEN: &str = "This refresh token is not valid; sign in again.";
const EXPIRED_REFRESH_TOKEN: &str = "This refresh token has expired; sign in again.";
const OTHER_ACCOUNT: &str = "This refresh token belongs to another account.";

pub(super) fn router() -> Router<ApiContext> {
    Router::new().route("/v1/auth/refresh", post(refresh))
}

#[derive(Deserialize, Default)]
struct RefreshRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The device a sign-in comes from, as its owner will see it in the session
/// list: the User-Agent and the client's network. The address is the
/// rightmost `X-Forwarded-For` entry, the one web's proxy appended; without
/// the header (a client talking to auth directly) it is unknown. It is only
/// shown to the account's owner, so a client lying about it fools itself.
pub(super) fn device_of(headers: &HeaderMap) -> NewSession<'_> {
    let ip = forwarded_ip(headers).map(coarse_ip);
    NewSession {
        user_agent: super::user_agent(headers),
        ip,
    }
}

/// The rightmost `X-Forwarded-For` entry: the client as web's proxy saw it.
pub(super) fn forwarded_ip(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
}

/// The client address a throttle counts: the forwarded one, else the peer.
pub(super) fn client_ip(headers: &HeaderMap, peer: &crate::throttle::Peer) -> Option<IpAddr> {
    forwarded_ip(headers).or(peer.0)
}

/// Creates a session and its first refresh token inside `tx`.
pub(super) async fn open_session(
    tx: &mut Transaction<'_, Postgres>,
    ctx: &ApiContext,
    user_id: UserId,
    device: &NewSession<'_>,
    now: DateTime<Utc>,
) -> Result<(SessionId, RefreshSecret), Error> {
    // Refused for a disabled account, and ordered against disabling it.
    store::users::lock_for_sign_in(tx, user_id).await?;
    let session_id = store::sessions::insert(&mut **tx, user_id, device, now).await?;
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

/// Trade a refresh token for a new access token and the token's successor.
///
/// The rules (RFC 9700 §4.14.2, decided in `domain::RefreshPolicy`): an
/// unused token rotates; the immediately previous token presented again
/// within the grace window (two tabs at once, a retry after a lost
/// response) gets the *same* successor back, derived again from the
/// presented secret, so the session stays one chain; any other rotated
/// token revokes the whole session.
#[tracing::instrument(name = "refresh", skip_all)]
async fn refresh(
    State(ctx): State<ApiContext>,
    peer: crate::throttle::Peer,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let request = parse_refresh_body(&body)?;
    let raw = match request.refresh_token.filter(|t| !t.trim().is_empty()) {
        Some(in_body) => in_body,
        None => {
            let cookie = jar
                .get(REFRESH_COOKIE)
                .map(|c| c.value().to_string())
                .ok_or(Error::InvalidRefreshToken(NO_REFRESH_TOKEN))?;
            // The browser attaches the cookie to any request, also one a
            // hostile page makes: only our own pages may spend it.
            ensure_cookie_use_is_same_site(&headers)?;
            cookie
        }
    };
    // Per IP and per token (the session it belongs to is not known yet).
    let token_tag = crate::throttle::subject_hash(&raw);
    ctx.throttle
        .check("refresh", client_ip(&headers, &peer), Some(&token_tag))
        .await?;
    let presented = RefreshSecret::from_client(&raw)
        .ok_or(Error::InvalidRefreshToken(UNKNOWN_REFRESH_TOKEN))?;

    let mut tx = ctx.db.begin().await?;
    let token = store::refresh_tokens::lock_presented(&mut *tx, &presented)
        .await?
        .ok_or(Error::InvalidRefreshToken(UNKNOWN_REFRESH_TOKEN))?;
    // A client that also sends its access token must be refreshing its own
    // account: someone else's refresh token is refused, and nothing changes
    // (the transaction is dropped unspent).
    if let Ok(Some(claims)) = verified_claims(&ctx, &headers) {
        if claims.sub != token.user_id {
            tracing::warn!(user_id = %claims.sub, "refresh with another account's refresh token refused");
            return Err(Error::InvalidRefreshToken(OTHER_ACCOUNT));
        }
    }
    // Read the clock after the lock: a concurrent refresh of this token may
    // have held it, and its `used_at` is what we compare against.
    let now = ctx.config.clock.now();
    let stored_key = token
        .successor_key
        .as_deref()
        .and_then(SuccessorKey::from_stored);
    let state = PresentedState {
        expires_at: token.expires_at,
        used_at: token.used_at,
        // A token rotated before successors were derived has no key to
        // derive its successor again: it is treated as any older token.
        successor_is_newest: token.successor_is_newest && stored_key.is_some(),
        session_revoked: token.session_revoked_at.is_some(),
    };
    let policy = ctx.config.refresh_policy();
    let session = token.session_id.log_tag();
    let successor = match policy.decide(&state, now) {
        Refresh::SessionRevoked => {
            let reason = token
                .session_revoked_reason
                .as_deref()
                .and_then(|r| r.parse().ok());
            return Err(Error::SessionRevoked(reason));
        }
        Refresh::Expired => return Err(Error::InvalidRefreshToken(EXPIRED_REFRESH_TOKEN)),
        Refresh::Rotate => {
            let key = SuccessorKey::generate();
            let successor = presented.successor(&key);
            let successor_id = store::refresh_tokens::insert(
                &mut *tx,
                token.session_id,
                &successor,
                now,
                policy.expiry(now),
            )
            .await?;
            store::refresh_tokens::mark_used(&mut *tx, token.id, successor_id, &key, now).await?;
            metrics::counter!("auth_refresh_total", "outcome" => "rotated").increment(1);
            successor
        }
        Refresh::SameSuccessor => {
            let key = stored_key.ok_or_else(|| {
                Error::Internal("a same-successor decision without a successor key".into())
            })?;
            tracing::info!(%session, "previous refresh token within the grace window; same successor");
            metrics::counter!("auth_refresh_total", "outcome" => "grace").increment(1);
            presented.successor(&key)
        }
        Refresh::ReuseDetected => {
            let reason = RevokeReason::RefreshTokenReuse;
            let revoked = store::sessions::revoke(&mut *tx, token.session_id, reason, now).await?;
            if let Some(user_id) = revoked {
                insert_revoked_event(&mut tx, user_id, token.session_id, reason, now).await?;
            }
            tx.commit().await?;
            ctx.outbox.notify();
            tracing::warn!(
                %session,
                user_id = %token.user_id,
                "refresh token reuse detected; session revoked"
            );
            metrics::counter!("auth_refresh_total", "outcome" => "reuse_detected").increment(1);
            if let Err(e) = announce_revocation(&ctx, token.session_id, reason).await {
                // The database already records the revocation; the event
                // stream repeats the announcement when the backend applies it.
                tracing::error!(error = %e, %session, "could not announce a revoked session");
            }
            return Err(Error::RefreshTokenReused);
        }
    };
    store::sessions::touch(&mut *tx, token.session_id, now).await?;
    tx.commit().await?;

    let user = UserBody {
        id: token.user_id,
        email: token.email,
        display_name: token.display_name,
        role: confab_core::tokens::Role::from_stored(&token.role),
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

/// Revoke in the database (with its `session.revoked` event) and then in
/// Redis. Safe to repeat: the event is written only by the call that
/// actually revoked, the Redis steps are idempotent.
pub(crate) async fn revoke_session(
    ctx: &ApiContext,
    session_id: SessionId,
    reason: RevokeReason,
) -> Result<(), Error> {
    let mut tx = ctx.db.begin().await?;
    let now = ctx.config.clock.now();
    if let Some(user_id) = store::sessions::revoke(&mut *tx, session_id, reason, now).await? {
        insert_revoked_event(&mut tx, user_id, session_id, reason, now).await?;
    }
    tx.commit().await?;
    ctx.outbox.notify();
    announce_revocation(ctx, session_id, reason).await
}

/// Revoke every live session of `user` (one transaction, one event each),
/// then announce each in Redis. Returns how many ended.
pub(crate) async fn revoke_all_sessions(
    ctx: &ApiContext,
    user: UserId,
    reason: RevokeReason,
) -> Result<usize, Error> {
    let mut tx = ctx.db.begin().await?;
    let now = ctx.config.clock.now();
    let ended = revoke_all_in(&mut tx, user, reason, now).await?;
    tx.commit().await?;
    ctx.outbox.notify();
    announce_all(ctx, &ended, reason).await?;
    Ok(ended.len())
}

/// The database half of [`revoke_all_sessions`], inside the caller's
/// transaction (disabling an account revokes in the same one): marks every
/// live session revoked and writes one `session.revoked` each. After the
/// commit, [`announce_all`] the returned sessions.
pub(crate) async fn revoke_all_in(
    tx: &mut PgConnection,
    user: UserId,
    reason: RevokeReason,
    now: DateTime<Utc>,
) -> Result<Vec<SessionId>, Error> {
    let ended = store::sessions::revoke_all(&mut *tx, user, reason, now).await?;
    for sid in &ended {
        insert_revoked_event(tx, user, *sid, reason, now).await?;
    }
    Ok(ended)
}

/// The Redis half: every service refuses the sessions' tokens from now on,
/// and every backend closes their sockets.
pub(crate) async fn announce_all(
    ctx: &ApiContext,
    ended: &[SessionId],
    reason: RevokeReason,
) -> Result<(), Error> {
    for sid in ended {
        announce_revocation(ctx, *sid, reason).await?;
    }
    Ok(())
}

async fn insert_revoked_event(
    tx: &mut PgConnection,
    user_id: UserId,
    session_id: SessionId,
    reason: RevokeReason,
    at: DateTime<Utc>,
) -> Result<(), Error> {
    let event = Event::new(
        EventKind::SessionRevoked {
            user_id,
            session_id,
            reason: Some(reason),
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
    reason: RevokeReason,
) -> Result<(), Error> {
    revocation::announce(
        &ctx.redis,
        &ctx.keys,
        session_id,
        reason,
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
