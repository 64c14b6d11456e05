//! Who is calling: verify an access token, check that its session is not
//! revoked, and make sure the user's profile exists. The HTTP extractor
//! (`http::AuthUser`) and the socket gateway (`ws`) both authenticate here,
//! so they accept exactly the same tokens.

use crate::{error::Error, store, AppState};
use confab_core::sync::MutexExt;
use confab_core::{
    ids::UserId,
    revocation,
    tokens::{Claims, TokenError},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Verify a token, check its session is not revoked (failing closed: when
/// Redis cannot answer, the request fails), and make sure the user's
/// profile exists (created from the verified claims on first use, so the
/// backend never waits for the `user.registered` event).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Claims, Error> {
    let claims = state.verifier.verify(token).await?;
    admit(state, &claims).await?;
    Ok(claims)
}

/// The checks after a token's signature and dates: its session is not
/// revoked (failing closed) and the account still exists. A socket runs them
/// once it is registered with the hub, so a sign-out announced at any moment
/// either reaches it there or is already in Redis for this check.
pub async fn admit(state: &AppState, claims: &Claims) -> Result<(), Error> {
    if revocation::is_revoked(&state.redis, &state.keys, claims.sid).await? {
        return Err(TokenError::Revoked.into());
    }
    ensure_profile(state, claims).await
}

async fn ensure_profile(state: &AppState, claims: &Claims) -> Result<(), Error> {
    if state.known_users.contains(claims.sub) {
        return Ok(());
    }
    let found = store::profiles::upsert(&state.db, claims.sub, &claims.email, &claims.name).await?;
    if found == store::profiles::Upsert::Deleted {
        // The account is gone; its tokens (still validly signed until they
        // expire) must never bring it back.
        return Err(Error::AccountDeleted);
    }
    state.known_users.insert(claims.sub);
    Ok(())
}

/// Users whose profile this process has made sure of recently, so a request
/// does not write to the database just to find the profile exists. Entries
/// go stale after a minute: an account deleted through another instance is
/// then seen as deleted here too, even if Redis lost the revocation entries.
#[derive(Clone, Default)]
pub struct KnownUsers(Arc<Mutex<HashMap<UserId, Instant>>>);

const KNOWN_USER_TTL: Duration = Duration::from_secs(60);

impl KnownUsers {
    pub fn contains(&self, u: UserId) -> bool {
        self.0
            .locked()
            .get(&u)
            .is_some_and(|at| at.elapsed() < KNOWN_USER_TTL)
    }
    pub fn insert(&self, u: UserId) {
        let mut users = self.0.locked();
        users.retain(|_, at| at.elapsed() < KNOWN_USER_TTL);
        users.insert(u, confab_core::clock::instant());
    }
    pub fn remove(&self, u: UserId) {
        self.0.locked().remove(&u);
    }
}
