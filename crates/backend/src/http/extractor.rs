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
