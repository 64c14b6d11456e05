//! Upgrade, cancel, and the payment provider's webhook (see `billing`).

use super::AuthUser;
use crate::{billing, error::Error, AppState};
use axum::{body::Bytes, extract::State, http::HeaderMap, response::IntoResponse};
use confab_core::http::api::Json;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    #[serde(default)]
    plan: Option<String>,
}

/// `POST /v1/billing/checkout` (`{}` or `{"plan": …}`): a hosted checkout
/// for the next plan up (or `plan`); the page opens `url`.
pub async fn checkout(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<CheckoutBody>,
) -> Result<impl IntoResponse, Error> {
    let plan = body.plan;
    let (id, url) = billing::checkout(&state, user.id, plan.as_deref()).await?;
    Ok(Json(json!({ "id": id, "url": url })))
}

/// `POST /v1/billing/cancel`: end the subscription; back on the default plan.
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<impl IntoResponse, Error> {
    let outcome = billing::cancel(&state, user.id).await?;
    Ok(Json(json!({ "outcome": outcome.as_str() })))
}

/// `POST /v1/billing/webhook`: the provider's events (no token: the
/// signature is the authentication).
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, Error> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = billing::webhook(&state, signature, &body).await?;
    Ok(Json(
        json!({ "received": true, "outcome": outcome.as_str() }),
    ))
}
