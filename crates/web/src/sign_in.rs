//! Sign-in through OpenID Connect providers, the web side: the provider
//! buttons on the log-in and sign-up pages (plain links, no script needed),
//! the friendly page a refused sign-in lands on, and the password form that
//! links a provider to an existing account. The protocol itself is the auth
//! service's; its redirects reach the browser through the proxy.

use crate::{pages::render, AppState};
use axum::{
    extract::{Query, State},
    response::Response,
    routing::get,
    Router,
};
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The buttons are optional: a slow or down auth service must not delay
/// the log-in page (whose password form fails loudly on its own).
const PROVIDERS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Provider {
    pub id: String,
    pub name: String,
    pub start_url: String,
}

#[derive(Deserialize)]
struct ProvidersBody {
    providers: Vec<Provider>,
}

/// The configured providers, from the auth service.
pub(crate) async fn providers(s: &AppState) -> Vec<Provider> {
    let url = format!("{}/v1/auth/oidc/providers", s.config.auth_url);
    let result = async {
        s.http
            .get(&url)
            .timeout(PROVIDERS_TIMEOUT)
            .send()
            .await?
            .error_for_status()?
            .json::<ProvidersBody>()
            .await
    }
    .await;
    match result {
        Ok(body) => body.providers,
        Err(e) => {
            tracing::warn!(error = %e, "could not list sign-in providers; showing none");
            Vec::new()
        }
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/login/failed", get(failed))
        .route("/login/link", get(link))
}

#[derive(Deserialize)]
struct FailedQuery {
    reason: Option<String>,
}

/// Title and explanation for each `reason` the auth service redirects with.
fn explain(reason: &str) -> (&'static str, &'static str) {
    match reason {
        "cancelled" => (
            "Sign-in cancelled",
            "You cancelled at the provider, so nothing happened. You can try again or log in with your email and password.",
        ),
        "provider_error" => (
            "The provider could not sign you in",
            "Your sign-in provider reported an error. Please try again in a moment.",
        ),
        "expired" => (
            "That sign-in took too long",
            "The sign-in link expired before it came back. Please start again.",
        ),
        "invalid_state" => (
            "That sign-in link is not valid here",
            "It was already used, or it was started in another browser. Please start again from this page.",
        ),
        "provider_unavailable" => (
            "The provider is not reachable",
            "We could not reach your sign-in provider. Please try again shortly.",
        ),
        "rejected" => (
            "We could not verify that sign-in",
            "The answer from your sign-in provider did not pass our security checks, so you were not signed in.",
        ),
        "no_email" => (
            "No email address from the provider",
            "Your provider did not share an email address, which Confab needs for your account.",
        ),
        "email_unverified" => (
            "Please log in with your password",
            "An account with this email already exists, and your provider has not verified the address. Log in with your password, then link the provider from your settings.",
        ),
        "identity_in_use" => (
            "That provider account is linked elsewhere",
            "This provider account already belongs to another Confab account.",
        ),
        "link_attempts" => (
            "Too many wrong passwords",
            "For your safety the link was cancelled. Start again, or log in with your password.",
        ),
        "signed_out" => (
            "Please log in first",
            "Linking a provider needs you to be logged in.",
        ),
        "account_disabled" => (
            "This account is disabled",
            "An administrator disabled this account. Contact them to have it enabled again.",
        ),
        "unknown_provider" => (
            "Unknown sign-in provider",
            "This server does not offer that sign-in provider.",
        ),
        _ => (
            "Sign-in failed",
            "Something went wrong while signing you in. Please try again.",
        ),
    }
}

async fn failed(State(s): State<AppState>, Query(q): Query<FailedQuery>) -> Response {
    let reason = q.reason.unwrap_or_default();
    let (title, message) = explain(&reason);
    // Only our own fixed codes reach the page; anything else is "unknown".
    let reason = if explain(&reason).0 == explain("").0 {
        "unknown"
    } else {
        reason.as_str()
    };
    render(
        &s,
        "login_failed.html",
        context! { page => "login-failed", reason, title, message },
    )
}

#[derive(Deserialize)]
struct LinkQuery {
    provider: Option<String>,
    error: Option<String>,
}

async fn link(State(s): State<AppState>, Query(q): Query<LinkQuery>) -> Response {
    let name = match q.provider {
        Some(id) => providers(&s)
            .await
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.name),
        None => None,
    }
    .unwrap_or_else(|| "your provider".to_string());
    let wrong_password = q.error.as_deref() == Some("wrong_password");
    render(
        &s,
        "login_link.html",
        context! { page => "login-link", provider_name => name, wrong_password },
    )
}
