//! Deleting the account.
//!
//! Auth deletes what it owns (the user, sessions, refresh tokens, outbox
//! rows naming the user) and writes `user.deleted` in the same transaction;
//! the backend erases its own data when it applies the event. Every session
//! is revoked in Redis at once, so the user's access tokens stop working
//! everywhere immediately, not when they expire.

use super::{clear_refresh_cookie, sessions::announce_revocation, ApiContext, AuthUser, Json};
use crate::{domain::Password, error::Error, store};
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::delete,
    Router,
};
use confab_core::{
    events::{Event, EventKind},
    revocation::RevokeReason,
};
use serde::Deserialize;
use serde_json::json;

pub(super) fn router() -> Router<ApiContext> {
    Router::new().route("/v1/auth/account", delete(delete_account))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteAccount {
    /// Required unless the session signed in within the re-authentication
    /// window (`CONFAB_REAUTH_WINDOW_SECS`).
    #[serde(default)]
    password: Option<String>,
}

const NEEDS_PASSWORD: &str =
    "Enter your password to delete your account (or log in again and retry within a few minutes).";
const WRONG_PASSWORD: &str = "That password is not correct; your account was not deleted.";

#[tracing::instrument(name = "delete_account", skip_all, fields(user_id = %auth.user_id))]
async fn delete_account(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
    Json(req): Json<DeleteAccount>,
) -> Result<Response, Error> {
    let user = store::users::find(&ctx.db, auth.user_id)
        .await?
        .ok_or(Error::SessionRevoked(Some(RevokeReason::AccountDeleted)))?;
    match req.password.filter(|p| !p.is_empty()) {
        Some(password) => {
            let password = Password::for_login(&password)?;
            if !ctx
                .passwords
                .verify(password, user.password_hash.clone())
                .await?
            {
                return Err(Error::ReauthenticationRequired(WRONG_PASSWORD));
            }
        }
        None => {
            let signed_in = store::sessions::created_at(&ctx.db, auth.session_id).await?;
            let window = chrono::Duration::from_std(ctx.config.reauth_window)
                .unwrap_or(chrono::Duration::zero());
            if signed_in.is_none_or(|at| ctx.config.clock.now() - at > window) {
                return Err(Error::ReauthenticationRequired(NEEDS_PASSWORD));
            }
        }
    }

    let mut tx = ctx.db.begin().await?;
    let sessions = store::users::delete(&mut tx, user.id)
        .await?
        .ok_or(Error::SessionRevoked(Some(RevokeReason::AccountDeleted)))?;
    let event = Event::new(
        EventKind::UserDeleted { user_id: user.id },
        ctx.config.clock.now(),
    );
    store::outbox::insert(&mut *tx, &event).await?;
    tx.commit().await?;
    ctx.outbox.notify();
    tracing::info!(sessions = sessions.len(), "account deleted");
    metrics::counter!("auth_accounts_deleted_total").increment(1);

    // The sessions are gone from the database, so auth already refuses their
    // tokens; the Redis entries make every other service refuse them too and
    // close their sockets.
    for sid in &sessions {
        if let Err(e) = announce_revocation(&ctx, *sid, RevokeReason::AccountDeleted).await {
            // The backend also refuses tokens of a deleted account by its
            // own durable marker once it applies the event.
            tracing::error!(error = %e, session = %sid.log_tag(), "could not announce a revoked session");
        }
    }
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({
            "deleted": true,
            "message": "Your account and sign-in data are deleted. Your conversations are being erased from the chat service now; this takes a few seconds.",
        })),
    )
        .into_response();
    clear_refresh_cookie(response.headers_mut(), ctx.config.cookie_secure);
    Ok(response)
}
