//! What a verified provider identity means for our accounts.
//!
//! The key is always issuer + subject. A first sign-in creates the account;
//! later ones refresh name and email from the provider (and announce the
//! change with `user.updated`). An identity whose email matches an existing
//! account is never attached silently: the provider must assert the email
//! is verified *and* the person must prove the account — by being signed in
//! (linking from settings) or by entering its password.

use super::{client::VerifiedClaims, store, OidcError};
use crate::{
    domain::{AdminEmails, DisplayName, Email, RoleGrant},
    store::{outbox, users},
};
use chrono::{DateTime, Utc};
use confab_core::{
    events::{Event, EventKind},
    ids::UserId,
};
use sqlx::PgConnection;

/// The account a sign-in lands in.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
}

pub enum Resolution {
    /// Open a session for this account.
    SignIn(Account),
    /// Linked to the signed-in account (from settings): no new session.
    Linked(Account),
    /// An account with this verified email exists: its owner must enter
    /// the password before the identity is attached.
    NeedsPassword { user_id: UserId },
}

/// Decide inside `tx` (the caller opens the session in the same one).
pub async fn resolve(
    tx: &mut PgConnection,
    provider: &str,
    claims: &VerifiedClaims,
    link_user: Option<UserId>,
    admins: &AdminEmails,
    now: DateTime<Utc>,
) -> Result<Resolution, OidcError> {
    let email = claims.email.as_deref().and_then(|e| Email::parse(e).ok());
    if let Some(identity) = store::find_identity(&mut *tx, &claims.issuer, &claims.subject).await? {
        if link_user.is_some_and(|u| u != identity.user_id) {
            return Err(OidcError::IdentityInUse);
        }
        store::touch_identity(
            &mut *tx,
            identity.id,
            email.as_ref().map(Email::as_str),
            now,
        )
        .await?;
        let account = refresh_profile(tx, identity.user_id, email.as_ref(), claims, now).await?;
        return Ok(match link_user {
            Some(_) => Resolution::Linked(account),
            None => Resolution::SignIn(account),
        });
    }
    if let Some(user_id) = link_user {
        insert_identity(tx, user_id, provider, claims, email.as_ref(), now).await?;
        let user = users::find(&mut *tx, user_id)
            .await?
            .ok_or(OidcError::LinkExpired)?;
        tracing::info!(%user_id, provider, "provider identity linked to the signed-in account");
        return Ok(Resolution::Linked(account_of(&user)));
    }
    let email = email.ok_or(OidcError::NoEmail)?;
    if let Some(existing) = users::find_by_email(&mut *tx, &email).await? {
        if !claims.email_verified {
            return Err(OidcError::UnverifiedEmailInUse);
        }
        return Ok(Resolution::NeedsPassword {
            user_id: existing.id,
        });
    }
    let display_name = claims
        .name
        .as_deref()
        .and_then(|n| DisplayName::parse(n).ok())
        .unwrap_or_else(|| DisplayName::from_email(&email));
    let first = users::is_first_account(&mut *tx).await?;
    let grant = RoleGrant::for_new_account(admins, &email, first);
    let user = users::insert_without_password(&mut *tx, &email, &display_name, grant, now).await?;
    insert_identity(tx, user.id, provider, claims, Some(&email), now).await?;
    let event = Event::new(
        EventKind::UserRegistered {
            user_id: user.id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            version: user.profile_version,
        },
        now,
    );
    outbox::insert(&mut *tx, &event).await?;
    tracing::info!(user_id = %user.id, provider, "account created through a provider");
    Ok(Resolution::SignIn(account_of(&user)))
}

pub async fn insert_identity(
    tx: &mut PgConnection,
    user_id: UserId,
    provider: &str,
    claims: &VerifiedClaims,
    email: Option<&Email>,
    now: DateTime<Utc>,
) -> Result<(), OidcError> {
    store::insert_identity(
        &mut *tx,
        store::NewIdentity {
            user_id,
            provider,
            issuer: &claims.issuer,
            subject: &claims.subject,
            email: email.map(Email::as_str),
            now,
        },
    )
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db)
            if db.constraint() == Some("external_identities_issuer_subject_key") =>
        {
            OidcError::IdentityInUse
        }
        _ => e.into(),
    })
}

/// Name and email follow the provider; a change is announced with
/// `user.updated` in the same transaction (the backend updates the profile).
async fn refresh_profile(
    tx: &mut PgConnection,
    user_id: UserId,
    email: Option<&Email>,
    claims: &VerifiedClaims,
    now: DateTime<Utc>,
) -> Result<Account, OidcError> {
    let user = users::find(&mut *tx, user_id)
        .await?
        .ok_or(OidcError::LinkExpired)?;
    let mut new_email = user.email.clone();
    // Only an address the provider vouches for replaces ours: an unverified
    // one could be anybody's.
    if let Some(email) = email.filter(|_| claims.email_verified) {
        if email.as_str() != user.email {
            // Another account holds that address: keep ours rather than
            // fail the sign-in.
            match users::find_by_email(&mut *tx, email).await? {
                Some(other) if other.id != user.id => {
                    tracing::warn!(%user_id, "provider email belongs to another account; not updated");
                }
                _ => new_email = email.as_str().to_string(),
            }
        }
    }
    let new_name = claims
        .name
        .as_deref()
        .and_then(|n| DisplayName::parse(n).ok())
        .map(DisplayName::into_inner)
        .unwrap_or_else(|| user.display_name.clone());
    let Some((email, display_name, version, time_zone)) =
        store::update_profile(&mut *tx, user_id, &new_email, &new_name, now).await?
    else {
        return Ok(account_of(&user));
    };
    let event = Event::new(
        EventKind::UserUpdated {
            user_id,
            email: email.clone(),
            display_name: display_name.clone(),
            avatar_url: None,
            time_zone,
            version,
        },
        now,
    );
    outbox::insert(&mut *tx, &event).await?;
    tracing::info!(%user_id, "profile updated from the provider's claims");
    Ok(Account {
        id: user_id,
        email,
        display_name,
    })
}

fn account_of(user: &users::User) -> Account {
    Account {
        id: user.id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
    }
}
