//! The authenticated caller as an extractor: a handler that takes
//! [`AuthUser`] cannot run without a valid, unrevoked access token.

use super::ApiContext;
use crate::{error::Error, store};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap},
};
use confab_core::{
    ids::{SessionId, UserId},
    tokens::{Claims, TokenError},
};
use std::time::Duration;

/// Redis is a fast path for the revocation check; when it is slow the
/// database answers instead, so a Redis hiccup never blocks sign-ins.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

pub struct AuthUser {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub claims: Claims,
}

impl FromRequestParts<ApiContext> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, Error> {
        let claims = verified_claims(ctx, &parts.headers)?.ok_or(Error::MissingToken)?;
        ensure_session_active(ctx, claims.sid).await?;
        Ok(AuthUser {
            user_id: claims.sub,
            session_id: claims.sid,
            claims,
        })
    }
}

/// The claims of a valid `Authorization: Bearer` token, `None` when the
/// request has no `Authorization` header. Revocation is not checked here.
pub(crate) fn verified_claims(
    ctx: &ApiContext,
    headers: &HeaderMap,
) -> Result<Option<Claims>, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(Error::MissingToken)?;
    Ok(Some(ctx.tokens.verify(token)?))
}

/// Redis says "revoked" without a database round trip; otherwise the
/// database, which this service owns, has the final word (the Redis entry
/// may have been lost or may not have been written yet).
async fn ensure_session_active(ctx: &ApiContext, sid: SessionId) -> Result<(), Error> {
    let redis = confab_core::tokens::is_revoked(&ctx.redis, &ctx.keys, sid);
    match tokio::time::timeout(REDIS_TIMEOUT, redis).await {
        Ok(Ok(true)) => return Err(TokenError::Revoked.into()),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "revocation check in Redis failed; using the database")
        }
        Err(_) => tracing::warn!("revocation check in Redis timed out; using the database"),
    }
    if store::sessions::is_active(&ctx.db, sid).await? {
        Ok(())
    } else {
        Err(TokenError::Revoked.into())
    }
}
