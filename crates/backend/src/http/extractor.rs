//! The authenticated user as an extractor: a handler that takes `AuthUser`
//! cannot forget to check the token.

use crate::{error::Error, identity, AppState};
use axum::{extract::FromRequestParts, http::request::Parts};
use confab_core::{
    http::api::bearer_token,
    ids::{SessionId, UserId},
    tokens::Claims,
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
        let token = bearer_token(&parts.headers)
            .ok()
            .flatten()
            .ok_or(Error::MissingToken)?;
        let claims = identity::authenticate(state, token).await?;
        Ok(AuthUser {
            id: claims.sub,
            sid: claims.sid,
            claims,
        })
    }
}

/// The caller of an admin route: an authenticated user whose token carries
/// the admin role. The claim is signed, and auth ends every session of an
/// account whose role changes, so a token never carries a role its account
/// lost (the revocation check above refuses it).
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.claims.role != confab_core::tokens::Role::Admin {
            tracing::warn!(user_id = %user.id, path = %parts.uri.path(), "admin route refused");
            return Err(Error::Forbidden);
        }
        Ok(AdminUser(user))
    }
}
