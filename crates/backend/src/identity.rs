//! Who is calling: verify an access token, check that its session is not
//! revoked, and make sure the user's profile exists. The HTTP extractor
//! (`http::AuthUser`) and the socket gateway (`ws`) both authenticate here,
//! so they accept exactly the same tokens.

use crate::{error::Error, store, AppState};
use confab_core::{
    ids::UserId,
    revocation,
    tokens::{Claims, TokenError},
};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

/// Verify a token, check its session is not revoked (failing closed: when
/// Redis cannot answer, the request fails), and make sure the user's
/// profile exists (created from the verified claims on first use, so the
/// backend never waits for the `user.registered` event).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Claims, Error> {
    let claims = state.verifier.verify(token).await?;
    if revocation::is_revoked(&state.redis, &state.keys, claims.sid).await? {
        return Err(TokenError::Revoked.into());
    }
    ensure_profile(state, &claims).await?;
    Ok(claims)
}

async fn ensure_profile(state: &AppState, claims: &Claims) -> Result<(), Error> {
    if state.known_users.contains(claims.sub) {
        return Ok(());
    }
    store::profiles::upsert(&state.db, claims.sub, &claims.email, &claims.name, false).await?;
    state.known_users.insert(claims.sub);
    Ok(())
}

/// Users whose profile this process has already made sure of, so a request
/// does not write to the database just to find the profile exists.
#[derive(Clone, Default)]
pub struct KnownUsers(Arc<Mutex<HashSet<UserId>>>);

impl KnownUsers {
    pub fn contains(&self, u: UserId) -> bool {
        self.0.lock().expect("lock").contains(&u)
    }
    pub fn insert(&self, u: UserId) {
        self.0.lock().expect("lock").insert(u);
    }
    pub fn remove(&self, u: UserId) {
        self.0.lock().expect("lock").remove(&u);
    }
}
