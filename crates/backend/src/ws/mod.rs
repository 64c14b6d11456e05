//! The chat socket gateway, the transport side of chat: it turns client
//! frames into calls on the chat domain and domain values and events into
//! frames (the domain never sees a frame).
//!
//! - `mod.rs`: the upgrade (Origin check, size limits).
//! - [`session`](session.rs): one task per socket: authenticate the first
//!   frame, then multiplex frames from the client, frames the hub delivers
//!   and the access token's expiry; every write is bounded.
//! - [`handler`](handler.rs): one client frame in, the frames to answer with out.
//! - [`hub`](hub.rs): fan-out between instances through Redis pub/sub.
//! - [`protocol`](protocol.rs): the frames, their JSON, and the close codes.

mod handler;
pub mod hub;
pub mod protocol;
mod session;

use crate::{error::Error, AppState};
use axum::{
    extract::{State, WebSocketUpgrade},
    http::{header::ORIGIN, HeaderMap},
    response::{IntoResponse, Response},
};

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Browsers always send Origin; a foreign one means another site is trying
    // to use the user's credentials (cross-site WebSocket hijacking).
    if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        let origin = origin.trim_end_matches('/');
        if !state.config.allowed_origins.iter().any(|a| a == origin) {
            return Error::OriginNotAllowed.into_response();
        }
    }
    // Past the process's cap the upgrade is refused before any work: 503,
    // and the client reconnects with backoff (to another instance, behind web).
    let Ok(slot) = state.socket_slots.clone().try_acquire_owned() else {
        metrics::counter!("ws_refused_total", "why" => "process").increment(1);
        let mut res = Error::TooManySockets(
            "This server has too many chat connections open right now. Try again in a moment.",
        )
        .into_response();
        res.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return res;
    };
    // The transport limit is a backstop; the gateway enforces the documented
    // limit itself so it can answer with close code 1009.
    let hard = state.config.max_frame_bytes * 4;
    confab_core::http::ws_upgrade(ws)
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| async move {
            session::run(state, socket).await;
            drop(slot);
        })
}
