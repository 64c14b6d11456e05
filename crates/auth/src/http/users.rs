//! Accounts: sign up, log in, who am I.

use super::{
    sessions::{client_ip, device_of, open_session},
    token_response, ApiContext, Json, UserBody,
};
use crate::throttle::{subject_hash, Peer};
use crate::{
    domain::{DisplayName, Email, Password, RoleGrant},
    error::Error,
    store::{self, users::User},
};
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::post,
    Router,
};
use confab_core::events::{Event, EventKind};
use serde::Deserialize;

pub(super) fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/auth/signup", post(signup))
        .route("/v1/auth/login", post(login))
}

#[derive(Deserialize)]
struct SignupRequest {
    email: String,
    password: String,
    /// Omitted or null: the email's local part.
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct LoginRequest {
    email: String,
    password: String,
}

impl From<&User> for UserBody {
    fn from(u: &User) -> Self {
        UserBody {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            role: u.role(),
        }
    }
}

#[tracing::instrument(name = "signup", skip_all)]
async fn signup(
    State(ctx): State<ApiContext>,
    peer: Peer,
    headers: HeaderMap,
    Json(req): Json<SignupRequest>,
) -> Result<Response, Error> {
    let email = Email::parse(&req.email)?;
    ctx.throttle
        .check(
            "signup",
            client_ip(&headers, &peer),
            Some(&subject_hash(email.as_str())),
        )
        .await?;
    let password = Password::parse(&req.password)?;
    let display_name = match req.display_name.as_deref() {
        Some(name) => DisplayName::parse(name)?,
        None => DisplayName::from_email(&email),
    };
    let password_hash = ctx.passwords.hash(password).await?;

    // The account, its first session and the event that announces it exist
    // together or not at all.
    let now = ctx.config.clock.now();
    let mut tx = ctx.db.begin().await?;
    let first = store::users::is_first_account(&mut tx).await?;
    let grant = RoleGrant::for_new_account(&ctx.config.admin_emails, &email, first);
    let user =
        store::users::insert(&mut *tx, &email, &display_name, &password_hash, grant, now).await?;
    let (session_id, refresh) =
        open_session(&mut tx, &ctx, user.id, &device_of(&headers), now).await?;
    let event = Event::new(
        EventKind::UserRegistered {
            user_id: user.id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            version: user.profile_version,
        },
        now,
    );
    store::outbox::insert(&mut *tx, &event).await?;
    tx.commit().await?;
    ctx.outbox.notify();

    tracing::info!(user_id = %user.id, session = %session_id.log_tag(), role = user.role, "user signed up");
    metrics::counter!("auth_signups_total").increment(1);
    token_response(
        &ctx,
        &headers,
        StatusCode::CREATED,
        (&user).into(),
        session_id,
        &refresh,
        now,
    )
}

#[tracing::instrument(name = "login", skip_all)]
async fn login(
    State(ctx): State<ApiContext>,
    peer: Peer,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> Result<Response, Error> {
    let email = Email::parse(&req.email)?;
    // Before the (deliberately slow) password check.
    ctx.throttle
        .check(
            "login",
            client_ip(&headers, &peer),
            Some(&subject_hash(email.as_str())),
        )
        .await?;
    let password = Password::for_login(&req.password)?;
    let user = store::users::find_by_email(&ctx.db, &email).await?;
    // An unknown email is checked against a dummy hash, so both failures
    // take the same time and give the same answer.
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = ctx.passwords.verify(password, stored).await?;
    let user = match user {
        Some(user) if matches => user,
        other => {
            // The email stays out of the logs: it is personal data, and a
            // typo'd password in the email field would land there too.
            let reason = if other.is_some() {
                "wrong_password"
            } else {
                "unknown_account"
            };
            tracing::info!(
                reason,
                user_id = other.map(|u| u.id.to_string()),
                "login failed"
            );
            metrics::counter!("auth_logins_total", "outcome" => "failure").increment(1);
            return Err(Error::InvalidCredentials);
        }
    };

    let now = ctx.config.clock.now();
    let mut tx = ctx.db.begin().await?;
    let (session_id, refresh) =
        open_session(&mut tx, &ctx, user.id, &device_of(&headers), now).await?;
    tx.commit().await?;

    tracing::info!(user_id = %user.id, session = %session_id.log_tag(), "user logged in");
    metrics::counter!("auth_logins_total", "outcome" => "success").increment(1);
    token_response(
        &ctx,
        &headers,
        StatusCode::OK,
        (&user).into(),
        session_id,
        &refresh,
        now,
    )
}
