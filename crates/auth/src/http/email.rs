//! Changing the email address.
//!
//! 1. `POST /v1/auth/me/email` with the new address and the password: auth
//!    stores a pending change (the SHA-256 of a random secret, an expiry),
//!    mails a confirmation link to the new address and a notice to the old
//!    one. Nothing changes yet. If the new address already belongs to an
//!    account, the answer is the same (no account enumeration) and the new
//!    address gets a note saying so instead of a link.
//! 2. `POST /v1/auth/email/confirm` with the link's secret (the page at the
//!    link sends it when the person clicks "Confirm"): once, before it
//!    expires, it changes the email, bumps the profile version and writes
//!    `user.updated`, all in one transaction; the event takes the new address
//!    to the backend and every open page like any profile change.

use super::{profile::MeBody, ApiContext, AuthUser, Json};
use crate::{
    domain::{Email, EmailLinkSecret, Password},
    error::Error,
    mail::{self, Outgoing},
    store::{self, users::ProfileUpdate},
};
use axum::{extract::State, http::StatusCode, routing::post, Router};
use chrono::{DateTime, Utc};
use lettre::Address;
use serde::{Deserialize, Serialize};

pub(super) fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/auth/me/email", post(request_change))
        .route("/v1/auth/email/confirm", post(confirm))
}

/// Used and expired links are kept this long after they expire, so a
/// reused link is answered "already used" rather than "not valid".
const KEEP_SPENT: chrono::TimeDelta = chrono::TimeDelta::days(7);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestChange {
    new_email: String,
    password: String,
}

#[derive(Serialize)]
struct Requested {
    /// The address the link was sent to (normalised).
    pending_email: String,
    /// When the link stops working.
    expires_at: DateTime<Utc>,
    message: String,
}

const WRONG_PASSWORD: &str = "That password is not correct; your email was not changed.";
const NO_PASSWORD: &str =
    "This account signs in through a provider and has no password, so its email cannot be changed here.";

#[tracing::instrument(name = "request_email_change", skip_all, fields(user_id = %auth.user_id))]
async fn request_change(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
    Json(req): Json<RequestChange>,
) -> Result<(StatusCode, Json<Requested>), Error> {
    let user = store::users::find(&ctx.db, auth.user_id)
        .await?
        .ok_or(Error::SessionRevoked(None))?;
    let new_email = Email::parse(&req.new_email).map_err(|e| match e {
        Error::Validation { message, .. } => Error::validation("new_email", message),
        other => other,
    })?;
    if new_email.as_str() == user.email {
        return Err(Error::validation(
            "new_email",
            "That is already your email address.",
        ));
    }
    let new_address = mail::address(&new_email)?;
    let Some(hash) = user.password_hash.clone() else {
        return Err(Error::ReauthenticationRequired(NO_PASSWORD));
    };
    if req.password.is_empty() {
        return Err(Error::ReauthenticationRequired(
            "Enter your password to change your email.",
        ));
    }
    let password = Password::for_login(&req.password)?;
    if !ctx.passwords.verify(password, Some(hash)).await? {
        return Err(Error::ReauthenticationRequired(WRONG_PASSWORD));
    }

    let now = ctx.config.clock.now();
    let ttl = chrono::Duration::from_std(ctx.config.email_change_ttl)
        .map_err(|e| Error::Internal(format!("email change lifetime: {e}")))?;
    let expires_at = now + ttl;
    let taken = store::users::find_by_email(&ctx.db, &new_email)
        .await?
        .is_some();
    // The link (or, for an address in use, a note) to the new address, and
    // the pending change to forget if it cannot be sent.
    let (to_new, pending) = if taken {
        // Same answer as for a free address; only the owner of that
        // mailbox learns that it already has an account.
        tracing::info!("email change asked for an address that has an account; no link sent");
        let note = Outgoing {
            to: &new_address,
            subject: "Your email address and Confab",
            text: taken_text(&ctx, &new_email),
        };
        (note, None)
    } else {
        let secret = EmailLinkSecret::generate();
        let mut tx = ctx.db.begin().await?;
        store::email_changes::replace(
            &mut tx,
            &secret.hash(),
            user.id,
            new_email.as_str(),
            now,
            expires_at,
        )
        .await?;
        tx.commit().await?;
        let pruned = store::email_changes::prune(&ctx.db, now - KEEP_SPENT).await?;
        tracing::debug!(pruned, "old email-change links pruned");
        let link = format!(
            "{}/email/confirm#token={}",
            ctx.config.public_url(),
            secret.as_str()
        );
        let mail = Outgoing {
            to: &new_address,
            subject: "Confirm your new email address for Confab",
            text: link_text(&user.email, &new_email, &link, ctx.config.email_change_ttl),
        };
        (mail, Some(secret.hash()))
    };
    if let Err(e) = ctx.mailer.send(to_new).await {
        tracing::error!(error = %e, "could not send the email to the new address");
        if let Some(hash) = &pending {
            store::email_changes::delete(&ctx.db, hash).await?;
        }
        metrics::counter!("auth_email_changes_total", "outcome" => "mail_failed").increment(1);
        return Err(Error::MailUnavailable);
    }
    metrics::counter!("auth_email_changes_total", "outcome" => "requested").increment(1);
    tracing::info!("email change requested");
    finish(&ctx, &user.email, &new_email, expires_at).await
}

/// The notice to the old address, and the answer (identical whether the
/// new address was free or not).
async fn finish(
    ctx: &ApiContext,
    old_email: &str,
    new_email: &Email,
    expires_at: DateTime<Utc>,
) -> Result<(StatusCode, Json<Requested>), Error> {
    match old_email.parse::<Address>() {
        Ok(old) => {
            let notice = Outgoing {
                to: &old,
                subject: "A change of your Confab email address was requested",
                text: notice_text(old_email, new_email),
            };
            // The change cannot happen without the new mailbox's owner; a
            // lost notice is logged, not a reason to refuse.
            if let Err(e) = ctx.mailer.send(notice).await {
                tracing::warn!(error = %e, "could not send the notice to the old address");
            }
        }
        Err(e) => tracing::warn!(error = %e, "the old address cannot be mailed; no notice sent"),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Requested {
            pending_email: new_email.to_string(),
            expires_at,
            message: format!(
                "We sent a confirmation link to {new_email}. Your email stays {old_email} until you open it."
            ),
        }),
    ))
}

fn lifetime(ttl: std::time::Duration) -> String {
    let secs = ttl.as_secs();
    match secs {
        s if s % 3600 == 0 && s >= 3600 => plural(s / 3600, "hour"),
        s if s % 60 == 0 && s >= 60 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn link_text(old_email: &str, new_email: &Email, link: &str, ttl: std::time::Duration) -> String {
    format!(
        "Hello,\n\n\
         someone signed in to Confab as {old_email} asked to use {new_email} as the account's email \
         address from now on.\n\n\
         To confirm, open this link within {} and click \"Confirm\":\n\n{link}\n\n\
         The link works once. If you did not ask for this, ignore this email: nothing changes.\n\n\
         — Confab\n",
        lifetime(ttl)
    )
}

fn taken_text(ctx: &ApiContext, new_email: &Email) -> String {
    format!(
        "Hello,\n\n\
         someone signed in to another Confab account asked to use {new_email} as that account's \
         email address. An account already uses {new_email}, so nothing was changed.\n\n\
         If that was you, sign in with {new_email} instead: {}/login\n\
         If it was not, you can ignore this email.\n\n\
         — Confab\n",
        ctx.config.public_url()
    )
}

fn notice_text(old_email: &str, new_email: &Email) -> String {
    format!(
        "Hello,\n\n\
         someone signed in to your Confab account asked to change its email address from \
         {old_email} to {new_email}. It only changes once the link we sent to {new_email} is opened.\n\n\
         If this was you, there is nothing to do here. If it was not, your password is known to \
         someone else: change it and use \"Sign out everywhere\" in Settings.\n\n\
         — Confab\n"
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirm {
    token: String,
}

#[tracing::instrument(name = "confirm_email_change", skip_all, fields(user_id = tracing::field::Empty))]
async fn confirm(
    State(ctx): State<ApiContext>,
    Json(req): Json<Confirm>,
) -> Result<Json<MeBody>, Error> {
    let secret = EmailLinkSecret::from_client(&req.token).ok_or(Error::EmailLinkInvalid)?;
    let hash = secret.hash();
    let now = ctx.config.clock.now();
    let mut tx = ctx.db.begin().await?;
    let change = store::email_changes::lock(&mut *tx, &hash)
        .await?
        .ok_or(Error::EmailLinkInvalid)?;
    tracing::Span::current().record("user_id", tracing::field::display(change.user_id));
    if change.used_at.is_some() {
        metrics::counter!("auth_email_changes_total", "outcome" => "link_reused").increment(1);
        return Err(Error::EmailLinkUsed);
    }
    if change.expires_at <= now {
        metrics::counter!("auth_email_changes_total", "outcome" => "link_expired").increment(1);
        return Err(Error::EmailLinkExpired);
    }
    // Stored normalised by `Email::parse` when the change was asked for.
    let new_email = Email::parse(&change.new_email)?;
    store::email_changes::mark_used(&mut *tx, &hash, now).await?;
    let user = super::profile::apply_in(
        &mut tx,
        change.user_id,
        &ProfileUpdate {
            email: Some(&new_email),
            ..ProfileUpdate::default()
        },
        None,
        now,
    )
    .await
    .map_err(|e| match e {
        // The account is gone (deleted since).
        Error::SessionRevoked(_) => Error::EmailLinkInvalid,
        other => other,
    })?;
    store::email_changes::discard_pending(&mut *tx, change.user_id).await?;
    tx.commit().await?;
    ctx.outbox.notify();
    metrics::counter!("auth_email_changes_total", "outcome" => "confirmed").increment(1);
    tracing::info!(user_id = %user.id, version = user.profile_version, "email changed");
    Ok(Json(user.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lifetimes_read_naturally() {
        assert_eq!(lifetime(Duration::from_secs(3600)), "1 hour");
        assert_eq!(lifetime(Duration::from_secs(7200)), "2 hours");
        assert_eq!(lifetime(Duration::from_secs(900)), "15 minutes");
        assert_eq!(lifetime(Duration::from_secs(1)), "1 second");
    }
}
