//! Buying a plan through the payment provider (Stripe's API and webhook
//! format; tests run against `localstripe` and the testkit's hosted
//! checkout page):
//! - **Upgrade** (`POST /v1/billing/checkout`): the user's provider customer
//!   (created once, remembered in `billing_customers`), then a checkout
//!   session for the plan's price; the page opens its `url`.
//! - **Webhook** (`POST /v1/billing/webhook`): signature and replay window
//!   checked ([`signature`]), each event id handled once
//!   (`billing_events`), the customer must be one of ours. The event only
//!   says *that* a subscription changed: its current state is read back from
//!   the provider, so events arriving out of order, late or twice all end on
//!   the same plan. The plan changes through [`crate::plans::change_plan_in`].
//! - **Cancel** (`POST /v1/billing/cancel`): the subscription is cancelled
//!   at the provider and its answer applied the same way (the webhook that
//!   follows changes nothing more).

pub mod signature;

use crate::{error::Error, plans, store, AppState};
use confab_core::{
    config::{ConfigError, Env},
    ids::UserId,
};
use serde::Deserialize;
use std::time::Duration;

/// `CONFAB_BILLING_*`.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    /// The provider's API (`CONFAB_BILLING_API_URL`, Stripe's by default).
    pub api_url: String,
    /// `CONFAB_BILLING_SECRET_KEY`; unset: checkout is unavailable.
    pub secret_key: Option<String>,
    /// `CONFAB_BILLING_WEBHOOK_SECRET`; unset: every webhook is refused.
    pub webhook_secret: Option<String>,
    /// How old (or how far ahead) a webhook's timestamp may be
    /// (`CONFAB_BILLING_WEBHOOK_TOLERANCE_SECS`, 300).
    pub tolerance_secs: i64,
    /// Where checkout sends the browser back (`CONFAB_PUBLIC_URL`).
    pub public_url: String,
}

impl BillingConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            api_url: env.url(
                "CONFAB_BILLING_API_URL",
                "https://api.stripe.com",
                &["http", "https"],
            )?,
            secret_key: env.opt_string("CONFAB_BILLING_SECRET_KEY"),
            webhook_secret: env.opt_string("CONFAB_BILLING_WEBHOOK_SECRET"),
            tolerance_secs: env.parse("CONFAB_BILLING_WEBHOOK_TOLERANCE_SECS", 300)?,
            public_url: env.url(
                "CONFAB_PUBLIC_URL",
                "http://localhost:3000",
                &["http", "https"],
            )?,
        })
    }
}

/// A subscription as the provider reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    pub status: String,
    #[serde(default)]
    items: Items,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Items {
    #[serde(default)]
    data: Vec<Item>,
}

#[derive(Debug, Clone, Deserialize)]
struct Item {
    #[serde(default)]
    price: Option<IdOnly>,
    /// Older API versions (and localstripe) name the price a plan.
    #[serde(default)]
    plan: Option<IdOnly>,
}

#[derive(Debug, Clone, Deserialize)]
struct IdOnly {
    id: String,
}

impl Subscription {
    /// The price (or legacy plan) id of its first item.
    pub fn price(&self) -> Option<&str> {
        let item = self.items.data.first()?;
        item.price
            .as_ref()
            .or(item.plan.as_ref())
            .map(|p| p.id.as_str())
    }

    /// Whether it entitles the customer to its plan now.
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "active" | "trialing" | "past_due")
    }
}

/// The provider's REST API (form-encoded requests, JSON answers).
#[derive(Clone)]
pub struct Provider {
    http: reqwest::Client,
    config: BillingConfig,
}

#[derive(Deserialize)]
struct Created {
    id: String,
    #[serde(default)]
    url: Option<String>,
}

impl Provider {
    pub fn new(config: BillingConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(confab_core::error::InfraError::from)?;
        Ok(Self { http, config })
    }

    pub fn config(&self) -> &BillingConfig {
        &self.config
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<T, Error> {
        let key =
            self.config.secret_key.as_deref().ok_or_else(|| {
                Error::Billing("Upgrades are not available on this server.".into())
            })?;
        let url = format!("{}{path}", self.config.api_url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(key, Some(""));
        if !form.is_empty() {
            req = req.form(form);
        }
        let resp = req.send().await.map_err(|e| {
            tracing::warn!(error = %e, %method, path, "payment provider unreachable");
            unavailable()
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            tracing::warn!(%status, %method, path, body = %body.chars().take(300).collect::<String>(), "payment provider refused a request");
            return Err(unavailable());
        }
        resp.json().await.map_err(|e| {
            tracing::warn!(error = %e, path, "payment provider answer does not parse");
            unavailable()
        })
    }

    pub async fn create_customer(&self, user: UserId, email: &str) -> Result<String, Error> {
        let c: Created = self
            .call(
                reqwest::Method::POST,
                "/v1/customers",
                &[
                    ("email", email.to_string()),
                    ("metadata[user_id]", user.to_string()),
                ],
            )
            .await?;
        Ok(c.id)
    }

    /// A hosted checkout for `price`; returns the session id and its URL.
    pub async fn create_checkout(
        &self,
        user: UserId,
        customer: &str,
        price: &str,
    ) -> Result<(String, String), Error> {
        let public = &self.config.public_url;
        let c: Created = self
            .call(
                reqwest::Method::POST,
                "/v1/checkout/sessions",
                &[
                    ("mode", "subscription".into()),
                    ("customer", customer.into()),
                    ("client_reference_id", user.to_string()),
                    ("line_items[0][price]", price.into()),
                    ("line_items[0][quantity]", "1".into()),
                    (
                        "success_url",
                        format!("{public}/settings?checkout=success#plan"),
                    ),
                    (
                        "cancel_url",
                        format!("{public}/settings?checkout=cancelled#plan"),
                    ),
                    ("metadata[user_id]", user.to_string()),
                ],
            )
            .await?;
        let url = c.url.ok_or_else(unavailable)?;
        Ok((c.id, url))
    }

    pub async fn subscription(&self, id: &str) -> Result<Subscription, Error> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/subscriptions/{id}"),
            &[],
        )
        .await
    }

    pub async fn cancel(&self, id: &str) -> Result<Subscription, Error> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v1/subscriptions/{id}"),
            &[],
        )
        .await
    }
}

fn unavailable() -> Error {
    Error::Billing(
        "The payment provider is not reachable right now. Please try again shortly.".into(),
    )
}

/// Start a checkout of the next plan up (or `plan`) for `user`.
pub async fn checkout(
    state: &AppState,
    user: UserId,
    plan: Option<&str>,
) -> Result<(String, String), Error> {
    let current = store::profiles::plan_of(&state.db, user)
        .await?
        .ok_or(Error::NotFound("Profile not found."))?;
    let target = match plan {
        Some(id) => state
            .plans
            .find(id)
            .filter(|p| p.price.is_some() && p.id != current)
            .ok_or_else(|| {
                Error::invalid(
                    "not_for_sale",
                    Some("plan"),
                    format!("The plan {id:?} cannot be bought here."),
                )
            })?,
        None => state.plans.upgrade_from(&current).ok_or_else(|| {
            Error::invalid("no_upgrade", None, "You are on the highest plan already.")
        })?,
    };
    let price = target.price.clone().unwrap_or_default();
    let customer = match store::billing::customer_of(&state.db, user).await? {
        Some(c) => c.customer_id,
        None => {
            let profile = store::profiles::get(&state.db, user)
                .await?
                .ok_or(Error::NotFound("Profile not found."))?;
            let created = state.billing.create_customer(user, &profile.email).await?;
            let mut tx = state.db.begin().await?;
            let kept = store::billing::insert_customer(&mut tx, user, &created).await?;
            tx.commit().await?;
            kept
        }
    };
    let (session, url) = state
        .billing
        .create_checkout(user, &customer, &price)
        .await?;
    tracing::info!(%user, plan = %target.id, session, "checkout started");
    Ok((session, url))
}

/// What became of a webhook event (logged, and the answer's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Unchanged,
    Duplicate,
    Ignored(&'static str),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored(why) => why,
        }
    }
}

#[derive(Deserialize)]
struct WebhookEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: WebhookData,
}

#[derive(Deserialize)]
struct WebhookData {
    object: serde_json::Value,
}

/// Handle one webhook delivery: verified, deduplicated, applied.
pub async fn webhook(
    state: &AppState,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<Outcome, Error> {
    let Some(secret) = state.billing.config().webhook_secret.as_deref() else {
        tracing::warn!(why = "not_configured", "payment webhook refused");
        return Err(Error::Webhook(
            "Webhooks are not configured on this server.",
        ));
    };
    let now = state.config.clock.now().timestamp();
    if let Err(why) = signature::verify(
        signature_header,
        body,
        secret,
        now,
        state.billing.config().tolerance_secs,
    ) {
        tracing::warn!(why = why.as_str(), "payment webhook refused");
        metrics::counter!("billing_webhooks_total", "outcome" => why.as_str()).increment(1);
        return Err(Error::Webhook("The webhook signature is not valid."));
    }
    let event: WebhookEvent = serde_json::from_slice(body).map_err(|_| {
        tracing::warn!(why = "malformed_event", "payment webhook refused");
        Error::Webhook("The webhook body is not an event.")
    })?;
    let outcome = apply_event(state, &event).await?;
    metrics::counter!("billing_webhooks_total", "outcome" => outcome.as_str()).increment(1);
    tracing::info!(event = %event.id, kind = %event.kind, outcome = outcome.as_str(), "payment webhook handled");
    Ok(outcome)
}

async fn apply_event(state: &AppState, event: &WebhookEvent) -> Result<Outcome, Error> {
    if store::billing::event_seen(&state.db, &event.id).await? {
        return Ok(Outcome::Duplicate);
    }
    let text = |field: &str| {
        event
            .data
            .object
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let (customer, subscription, reason) = match event.kind.as_str() {
        "checkout.session.completed" => (text("customer"), text("subscription"), "checkout"),
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => (text("customer"), text("id"), "subscription"),
        _ => return record_only(state, event, Outcome::Ignored("ignored_type")).await,
    };
    let (Some(customer), Some(subscription)) = (customer, subscription) else {
        return record_only(state, event, Outcome::Ignored("no_subscription")).await;
    };
    let Some(known) = store::billing::by_customer(&state.db, &customer).await? else {
        tracing::warn!(event = %event.id, customer, "payment webhook for a customer we do not know; ignored");
        return record_only(state, event, Outcome::Ignored("unknown_customer")).await;
    };
    // The event says that something changed; what is true now is the
    // provider's current state of the subscription.
    let sub = state.billing.subscription(&subscription).await?;
    if sub.customer != customer {
        return record_only(state, event, Outcome::Ignored("customer_mismatch")).await;
    }
    apply_subscription(state, known.user_id, &known, &sub, reason, Some(event)).await
}

async fn record_only(
    state: &AppState,
    event: &WebhookEvent,
    outcome: Outcome,
) -> Result<Outcome, Error> {
    let mut tx = state.db.begin().await?;
    let fresh =
        store::billing::record_event(&mut tx, &event.id, &event.kind, outcome.as_str()).await?;
    tx.commit().await?;
    Ok(if fresh { outcome } else { Outcome::Duplicate })
}

/// Put the user on the plan `sub` entitles them to now.
async fn apply_subscription(
    state: &AppState,
    user: UserId,
    known: &store::billing::Customer,
    sub: &Subscription,
    reason: &str,
    event: Option<&WebhookEvent>,
) -> Result<Outcome, Error> {
    // A late event about an older, ended subscription must not undo the
    // customer's newer one.
    let current = known.subscription_id.as_deref();
    if !sub.is_live() && current.is_some_and(|c| c != sub.id) {
        return match event {
            Some(e) => record_only(state, e, Outcome::Ignored("stale_subscription")).await,
            None => Ok(Outcome::Ignored("stale_subscription")),
        };
    }
    let plan = if sub.is_live() {
        match sub.price().and_then(|p| state.plans.by_price(p)) {
            Some(p) => p.id.clone(),
            None => {
                tracing::warn!(price = ?sub.price(), subscription = %sub.id, "a subscription's price buys no configured plan");
                return match event {
                    Some(e) => record_only(state, e, Outcome::Ignored("unknown_price")).await,
                    None => Ok(Outcome::Ignored("unknown_price")),
                };
            }
        }
    } else {
        state.plans.default_plan().id.clone()
    };
    let reason = match (reason, sub.is_live()) {
        (_, false) => "subscription_canceled",
        ("checkout", true) => "checkout",
        _ => "subscription_updated",
    };
    let mut tx = state.db.begin().await?;
    if let Some(e) = event {
        if !store::billing::record_event(&mut tx, &e.id, &e.kind, "applied").await? {
            return Ok(Outcome::Duplicate);
        }
    }
    store::billing::set_subscription(&mut tx, user, &sub.id, &sub.status).await?;
    let change = plans::change_plan_in(state, &mut tx, user, &plan, reason).await?;
    tx.commit().await?;
    if change.is_some() {
        state.outbox.notify();
        Ok(Outcome::Applied)
    } else {
        Ok(Outcome::Unchanged)
    }
}

/// Cancel the user's subscription at the provider and apply the answer.
pub async fn cancel(state: &AppState, user: UserId) -> Result<Outcome, Error> {
    let known = store::billing::customer_of(&state.db, user)
        .await?
        .filter(|c| c.subscription_id.is_some())
        .ok_or(Error::NotFound("There is no subscription to cancel."))?;
    let id = known.subscription_id.clone().unwrap_or_default();
    let sub = state.billing.cancel(&id).await?;
    tracing::info!(%user, subscription = %sub.id, status = %sub.status, "subscription cancelled");
    apply_subscription(state, user, &known, &sub, "cancel", None).await
}
