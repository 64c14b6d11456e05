//! The authenticated user as an extractor: a handler that takes `AuthUser`
//! cannot forget to check the token.

use crate::{error::Error, AppState};
use axum::{extract::FromRequestParts, http::request::Parts};
use confab_core::{
    ids::{SessionId, UserId},
    tokens::{Claims, TokenError},
};

pub struct AuthUser {
    pub id: UserId,
    pub sid: SessionId,
    pub claims: Claims,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(Error::MissingToken)?;
        let claims = authenticate(state, token.trim()).await?;
        Ok(AuthUser {
            id: claims.sub,
            sid: claims.sid,
            claims,
        })
    }
}

/// Verify a token, check its session is not revoked, and make sure the
/// user's profile exists (created from the verified claims on first use, so
/// the backend never waits for the `user.registered` event).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Claims, Error> {
    let claims = state.verifier.verify(token).await?;
    if confab_core::tokens::is_revoked(&state.redis, &state.keys, claims.sid).await? {
        return Err(TokenError::Revoked.into());
    }
    ensure_profile(state, &claims).await?;
    Ok(claims)
}

async fn ensure_profile(state: &AppState, claims: &Claims) -> Result<(), Error> {
    if state.known_users.contains(claims.sub) {
        return Ok(());
    }
    crate::store::profiles::upsert(&state.db, claims.sub, &claims.email, &claims.name, false)
        .await?;
    state.known_users.insert(claims.sub);
    Ok(())
}
