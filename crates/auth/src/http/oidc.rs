//! Browser routes of sign-in through OpenID Connect providers, plus the
//! JSON endpoints for the provider buttons and the settings page.
//!
//! `start` and `callback` are top-level navigations, so they answer with
//! redirects, never JSON: success lands on `/app` (or `/settings` after
//! linking), every refusal on the web app's `/login/failed?reason=…` page,
//! with one log line naming why (`OidcError::why`).

use super::{
    refresh_cookie,
    sessions::{device_of, open_session},
    ApiContext, AuthUser, Json, REFRESH_COOKIE,
};
use crate::{
    domain::{Password, RefreshSecret},
    error::Error,
    oidc::{
        accounts::{self, Resolution},
        hash, random_secret, store, OidcError,
    },
};
use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Form, Router,
};
use axum_extra::extract::CookieJar;
use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// Binds a started sign-in to the browser that started it: the state row
/// stores this cookie's hash, so a callback URL carried to another browser
/// (login CSRF, a leaked URL) is refused. `SameSite=Lax`, because the
/// callback is a top-level navigation coming from the provider's site.
const BROWSER_COOKIE: &str = "confab_oidc";
/// The pending link waiting for the account's password.
const LINK_COOKIE: &str = "confab_oidc_link";
const OIDC_COOKIE_PATH: &str = "/v1/auth/oidc";
/// Wrong passwords allowed for one pending link before it is dropped.
const MAX_LINK_ATTEMPTS: i32 = 5;
/// Finished flows are kept this long past expiry, to log replays precisely.
const KEEP_FINISHED: chrono::TimeDelta = chrono::TimeDelta::days(1);

pub(super) fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/auth/oidc/providers", get(providers))
        .route("/v1/auth/oidc/{provider}/start", get(start))
        .route("/v1/auth/oidc/{provider}/callback", get(callback))
        .route("/v1/auth/oidc/link", post(link_with_password))
        .route("/v1/auth/identities", get(identities))
        .route("/v1/auth/identities/{id}", delete(unlink))
}

#[derive(Serialize)]
struct ProviderBody {
    id: String,
    name: String,
    start_url: String,
}

/// The buttons the log-in and sign-up pages show.
async fn providers(State(ctx): State<ApiContext>) -> Json<serde_json::Value> {
    let list: Vec<ProviderBody> = ctx
        .oidc
        .providers()
        .map(|p| ProviderBody {
            id: p.id.clone(),
            name: p.name.clone(),
            start_url: format!("/v1/auth/oidc/{}/start", p.id),
        })
        .collect();
    Json(serde_json::json!({ "providers": list }))
}

fn refused(provider: &str, e: &OidcError) -> Response {
    match e {
        OidcError::Internal(inner) => {
            tracing::error!(provider, why = %e.why(), error = %inner, "OIDC sign-in failed")
        }
        _ => tracing::warn!(provider, why = %e.why(), error = %e, "OIDC sign-in refused"),
    }
    metrics::counter!("auth_oidc_total", "outcome" => e.why()).increment(1);
    redirect(&format!("/login/failed?reason={}", e.page_reason()))
}

/// 303: the browser follows with a GET whatever the method was.
fn redirect(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[expect(
    clippy::expect_used,
    reason = "names are constants, values base64url secrets or empty, attributes constants"
)]
fn cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let mut c = format!(
        "{name}={value}; HttpOnly; SameSite=Lax; Path={OIDC_COOKIE_PATH}; Max-Age={}",
        max_age.as_secs()
    );
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie is a valid header value")
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::TimeDelta::minutes(10))
}

/// A cookie value of ours is base64url of 32 bytes; anything else is junk.
fn our_secret(jar: &CookieJar, name: &str) -> Option<String> {
    jar.get(name).map(|c| c.value().to_string()).filter(|v| {
        v.len() == 43
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[derive(Deserialize)]
struct StartQuery {
    /// `link`: attach the provider to the signed-in account (settings).
    intent: Option<String>,
}

#[tracing::instrument(name = "oidc_start", skip_all, fields(provider = %provider))]
async fn start(
    State(ctx): State<ApiContext>,
    Path(provider): Path<String>,
    Query(query): Query<StartQuery>,
    jar: CookieJar,
) -> Response {
    match begin(
        &ctx,
        &provider,
        query.intent.as_deref() == Some("link"),
        &jar,
    )
    .await
    {
        Ok(response) => response,
        Err(e) => refused(&provider, &e),
    }
}

async fn begin(
    ctx: &ApiContext,
    provider: &str,
    link: bool,
    jar: &CookieJar,
) -> Result<Response, OidcError> {
    let party = ctx.oidc.party(provider).ok_or(OidcError::UnknownProvider)?;
    let now = ctx.config.clock.now();
    let link_user_id = if link {
        // The refresh cookie (httpOnly, SameSite=Strict, sent to /v1/auth)
        // proves the browser is signed in; a cross-site link cannot carry it.
        let secret = jar
            .get(REFRESH_COOKIE)
            .and_then(|c| RefreshSecret::from_client(c.value()))
            .ok_or(OidcError::NotSignedIn)?;
        Some(
            store::signed_in_user(&ctx.db, &secret.hash(), now)
                .await?
                .ok_or(OidcError::NotSignedIn)?,
        )
    } else {
        None
    };
    let browser = our_secret(jar, BROWSER_COOKIE).unwrap_or_else(random_secret);
    let (state, nonce, verifier) = (random_secret(), random_secret(), random_secret());
    let url = party.authorize_url(&state, &nonce, &verifier).await?;
    let ttl = ctx.oidc.config.flow_ttl;
    store::prune(&ctx.db, now - KEEP_FINISHED).await?;
    store::insert_flow(
        &ctx.db,
        store::NewFlow {
            state_hash: &hash(&state),
            browser_hash: &hash(&browser),
            provider,
            nonce: &nonce,
            pkce_verifier: &verifier,
            link_user_id,
            now,
            expires_at: expiry(now, ttl),
        },
    )
    .await?;
    tracing::info!(link = link_user_id.is_some(), "OIDC sign-in started");
    let mut response = redirect(url.as_str());
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie(BROWSER_COOKIE, &browser, ttl, ctx.config.cookie_secure),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[tracing::instrument(name = "oidc_callback", skip_all, fields(provider = %provider))]
async fn callback(
    State(ctx): State<ApiContext>,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    match finish(&ctx, &provider, query, &jar, &headers).await {
        Ok(response) => response,
        Err(e) => refused(&provider, &e),
    }
}

async fn finish(
    ctx: &ApiContext,
    provider: &str,
    query: CallbackQuery,
    jar: &CookieJar,
    headers: &HeaderMap,
) -> Result<Response, OidcError> {
    let party = ctx.oidc.party(provider).ok_or(OidcError::UnknownProvider)?;
    let now = ctx.config.clock.now();
    // The state is spent whatever happens next, an error answer included.
    let flow = match query
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    {
        Some(state) => store::consume_flow(&ctx.db, &hash(state), now).await?,
        None => None,
    };
    if let Some(error) = query.error {
        return Err(OidcError::Provider {
            error: error.chars().take(64).collect(),
            description: query
                .error_description
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        });
    }
    let flow = match (query.state, flow) {
        (None, _) => return Err(OidcError::MissingParameters),
        (Some(_), None) => return Err(OidcError::StateUnknown),
        (Some(_), Some(flow)) => flow,
    };
    if flow.previously_used.is_some() {
        return Err(OidcError::StateReused);
    }
    if flow.expires_at <= now {
        return Err(OidcError::StateExpired);
    }
    let browser_ok = our_secret(jar, BROWSER_COOKIE).is_some_and(|b| hash(&b) == flow.browser_hash);
    if !browser_ok {
        return Err(OidcError::StateOtherBrowser);
    }
    if flow.provider != provider {
        return Err(OidcError::StateOtherProvider);
    }
    let code = query
        .code
        .filter(|c| !c.is_empty())
        .ok_or(OidcError::MissingParameters)?;
    let claims = party
        .complete(&code, &flow.pkce_verifier, &flow.nonce, now)
        .await?;

    let mut tx = ctx.db.begin().await?;
    let resolution = accounts::resolve(
        &mut tx,
        provider,
        &claims,
        flow.link_user_id,
        &ctx.config.admin_emails,
        now,
    )
    .await?;
    match resolution {
        Resolution::SignIn(account) => {
            let (session_id, refresh) =
                open_session(&mut tx, ctx, account.id, &device_of(headers), now).await?;
            tx.commit().await?;
            ctx.outbox.notify();
            tracing::info!(user_id = %account.id, session = %session_id.log_tag(), "user logged in through a provider");
            metrics::counter!("auth_oidc_total", "outcome" => "signed_in").increment(1);
            Ok(signed_in(ctx, &refresh))
        }
        Resolution::Linked(account) => {
            tx.commit().await?;
            ctx.outbox.notify();
            tracing::info!(user_id = %account.id, "provider linked from settings");
            metrics::counter!("auth_oidc_total", "outcome" => "linked").increment(1);
            Ok(redirect(&format!("/settings?linked={provider}")))
        }
        Resolution::NeedsPassword { user_id } => {
            let token = random_secret();
            let browser = our_secret(jar, BROWSER_COOKIE).ok_or(OidcError::StateOtherBrowser)?;
            let ttl = ctx.oidc.config.flow_ttl;
            store::insert_pending_link(
                &mut *tx,
                store::NewPendingLink {
                    token_hash: &hash(&token),
                    browser_hash: &hash(&browser),
                    user_id,
                    provider,
                    issuer: &claims.issuer,
                    subject: &claims.subject,
                    email: claims.email.as_deref(),
                    now,
                    expires_at: expiry(now, ttl),
                },
            )
            .await?;
            tx.commit().await?;
            tracing::info!(%user_id, "verified email matches an account; asking for its password before linking");
            let mut response = redirect(&format!("/login/link?provider={provider}"));
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie(LINK_COOKIE, &token, ttl, ctx.config.cookie_secure),
            );
            Ok(response)
        }
    }
}

/// The session exists: the refresh token goes into its usual httpOnly
/// cookie and the dashboard's script refreshes its way to an access token,
/// exactly as after a reload.
fn signed_in(ctx: &ApiContext, refresh: &RefreshSecret) -> Response {
    let mut response = redirect("/app");
    response.headers_mut().append(
        header::SET_COOKIE,
        refresh_cookie(
            refresh.as_str(),
            ctx.config.refresh_token_ttl,
            ctx.config.cookie_secure,
        ),
    );
    response
}

#[derive(Deserialize)]
struct LinkForm {
    password: String,
}

/// The form on `/login/link`: the existing account's password proves the
/// person owns it; then the provider identity is attached and they are in.
#[tracing::instrument(name = "oidc_link", skip_all)]
async fn link_with_password(
    State(ctx): State<ApiContext>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> Response {
    match link(&ctx, &jar, &headers, form).await {
        Ok(response) => response,
        Err(e) => refused("-", &e),
    }
}

async fn link(
    ctx: &ApiContext,
    jar: &CookieJar,
    headers: &HeaderMap,
    form: LinkForm,
) -> Result<Response, OidcError> {
    let token = our_secret(jar, LINK_COOKIE).ok_or(OidcError::LinkExpired)?;
    let token_hash = hash(&token);
    let now = ctx.config.clock.now();
    let mut tx = ctx.db.begin().await?;
    let pending = store::lock_pending_link(&mut *tx, &token_hash)
        .await?
        .ok_or(OidcError::LinkExpired)?;
    let browser_ok =
        our_secret(jar, BROWSER_COOKIE).is_some_and(|b| hash(&b) == pending.browser_hash);
    if !browser_ok || pending.expires_at <= now {
        return Err(OidcError::LinkExpired);
    }
    if pending.attempts >= MAX_LINK_ATTEMPTS {
        store::delete_pending_link(&mut *tx, &token_hash).await?;
        tx.commit().await?;
        return Err(OidcError::LinkAttempts);
    }
    let matches = match Password::for_login(&form.password) {
        Ok(password) => {
            ctx.passwords
                .verify(password, pending.password_hash.clone())
                .await?
        }
        Err(_) => false,
    };
    if !matches {
        store::count_link_attempt(&mut *tx, &token_hash).await?;
        tx.commit().await?;
        tracing::info!(user_id = %pending.user_id, why = "wrong_password", "link refused");
        return Ok(redirect(&format!(
            "/login/link?provider={}&error=wrong_password",
            pending.provider
        )));
    }
    store::delete_pending_link(&mut *tx, &token_hash).await?;
    store::insert_identity(
        &mut *tx,
        store::NewIdentity {
            user_id: pending.user_id,
            provider: &pending.provider,
            issuer: &pending.issuer,
            subject: &pending.subject,
            email: pending.email.as_deref(),
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
    })?;
    let (session_id, refresh) =
        open_session(&mut tx, ctx, pending.user_id, &device_of(headers), now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %pending.user_id, session = %session_id.log_tag(), provider = %pending.provider, "provider linked after the account's password");
    let mut response = signed_in(ctx, &refresh);
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie(LINK_COOKIE, "", Duration::ZERO, ctx.config.cookie_secure),
    );
    Ok(response)
}

#[derive(Serialize)]
struct IdentityBody {
    id: Uuid,
    provider: String,
    provider_name: String,
    email: Option<String>,
    created_at: DateTime<Utc>,
    last_login_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct IdentitiesBody {
    has_password: bool,
    identities: Vec<IdentityBody>,
}

async fn identities(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
) -> Result<Json<IdentitiesBody>, Error> {
    let (has_password, _) = store::lock_sign_in_ways(&ctx.db, auth.user_id)
        .await?
        .ok_or(Error::SessionRevoked(None))?;
    let identities = store::identities_of(&ctx.db, auth.user_id).await?;
    Ok(Json(IdentitiesBody {
        has_password,
        identities: identities
            .into_iter()
            .map(|i| IdentityBody {
                provider_name: ctx
                    .oidc
                    .config
                    .provider(&i.provider)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| i.provider.clone()),
                id: i.id,
                provider: i.provider,
                email: i.email,
                created_at: i.created_at,
                last_login_at: i.last_login_at,
            })
            .collect(),
    }))
}

/// Unlinking is refused when it would leave the account with no way in.
async fn unlink(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Error> {
    let user_id: UserId = auth.user_id;
    let mut tx = ctx.db.begin().await?;
    let (has_password, count) = store::lock_sign_in_ways(&mut *tx, user_id)
        .await?
        .ok_or(Error::SessionRevoked(None))?;
    let owned = store::identities_of(&mut *tx, user_id)
        .await?
        .iter()
        .any(|i| i.id == id);
    if !owned {
        return Err(Error::IdentityNotFound);
    }
    if !has_password && count <= 1 {
        return Err(Error::LastSignInMethod);
    }
    store::delete_identity(&mut *tx, user_id, id).await?;
    tx.commit().await?;
    tracing::info!(%user_id, identity = %id, "provider identity unlinked");
    Ok(StatusCode::NO_CONTENT)
}
