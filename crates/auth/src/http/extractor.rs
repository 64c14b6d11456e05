//! The authenticated caller as an extractor: a handler that takes
//! [`AuthUser`] cannot run without a valid, unrevoked access token.

use super::ApiContext;
use crate::{error::Error, store};
use axum::{
    extract::FromRequestParts,
    http::{request::Parts, HeaderMap},
};
use confab_core::{
    http::api::bearer_token,
    ids::{SessionId, UserId},
    revocation,
    tokens::{Claims, TokenError},
};

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
    match bearer_token(headers).map_err(|_| Error::MissingToken)? {
        Some(token) => Ok(Some(ctx.tokens.verify(token)?)),
        None => Ok(None),
    }
}

/// Redis says "revoked" without a database round trip; otherwise the
/// database, which this service owns, has the final word (the Redis entry
/// may have been lost or may not have been written yet). So when Redis
/// fails or is slow (the shared check is bounded), the database answers
/// instead and a Redis hiccup never blocks sign-ins.
async fn ensure_session_active(ctx: &ApiContext, sid: SessionId) -> Result<(), Error> {
    match revocation::is_revoked(&ctx.redis, &ctx.keys, sid).await {
        Ok(true) => return Err(TokenError::Revoked.into()),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "revocation check in Redis failed; using the database")
        }
    }
    if store::sessions::is_active(&ctx.db, sid).await? {
        Ok(())
    } else {
        Err(TokenError::Revoked.into())
    }
}
