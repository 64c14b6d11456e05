//! Sending a message over HTTP (the socket's `send` for API clients) and the
//! user's plan and usage. Both answer with the `RateLimit-*` headers; a
//! refused message is 429 with `Retry-After` (see `error.rs`).

use super::AuthUser;
use crate::{
    domain::{ClientMsgId, MessageText},
    error::Error,
    plans::{self, limiter::Usage},
    store, AppState,
};
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use confab_core::{http::api::Json, ids::ThreadId};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    client_msg_id: String,
    #[serde(default)]
    thread_id: Option<ThreadId>,
    text: String,
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` of the quota
/// (draft-ietf-httpapi-ratelimit-headers), when the plan has one.
fn ratelimit_headers(usage: &Usage) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let (Some(limit), Some(remaining)) = (usage.quota, usage.remaining()) {
        h.insert("ratelimit-limit", limit.into());
        h.insert("ratelimit-remaining", remaining.into());
        h.insert("ratelimit-reset", usage.window_secs.into());
        if let Ok(v) = format!("{limit};w={}", usage.window_secs).parse() {
            h.insert("ratelimit-policy", v);
        }
    }
    h
}

/// `POST /v1/messages`: store a question and start its reply (202; the
/// reply streams on the socket and lands in the history). The same
/// deduplication and admission as the socket.
pub async fn send(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<SendBody>,
) -> Result<impl IntoResponse, Error> {
    let client_msg_id = ClientMsgId::parse(body.client_msg_id)?;
    let text = MessageText::parse(body.text, state.config.max_message_chars)?;
    let sent = state
        .chat
        .send(user.id, &client_msg_id, body.thread_id, &text)
        .await?;
    let headers = sent
        .usage
        .as_ref()
        .map(ratelimit_headers)
        .unwrap_or_default();
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        headers,
        Json(json!({
            "client_msg_id": client_msg_id.into_inner(),
            "thread_id": sent.thread_id,
            "message_id": sent.message_id,
            "seq": sent.seq,
            "duplicate": sent.duplicate,
            "usage": sent.usage,
        })),
    ))
}

/// `GET /v1/usage`: the plan, what it allows, and what is used now.
pub async fn usage(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<impl IntoResponse, Error> {
    let id = store::profiles::plan_of(&state.db, user.id)
        .await?
        .unwrap_or_else(|| state.plans.default_plan().id.clone());
    let plan = state.plans.get(&id);
    let now_ms = state.config.clock.now().timestamp_millis();
    let (usage, running) = state.chat.limiter().usage(user.id, plan, now_ms).await?;
    let upgrade = state.plans.upgrade_from(&plan.id);
    let billing = store::billing::customer_of(&state.db, user.id).await?;
    Ok((
        ratelimit_headers(&usage),
        Json(json!({
            "plan": state.plans.view(plan),
            "usage": usage,
            "running": running,
            "upgrade_url": upgrade.map(plans::upgrade_url),
            "upgrade": upgrade.map(|p| state.plans.view(p)),
            "plans": state.plans.all().iter().map(|p| state.plans.view(p)).collect::<Vec<_>>(),
            "subscription": billing.and_then(|b| b.subscription_id.map(|_| json!({ "status": b.status }))),
            "warn_percent": state.plans.warn_percent,
        })),
    ))
}
