//! The chat socket gateway: one task per socket. It authenticates the first
//! frame, then multiplexes three things: frames from the client, frames the
//! hub delivers (replies generated anywhere), and the access token's expiry.

pub mod hub;
pub mod protocol;

use crate::{error::Error, identity, AppState};
use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket},
        State, WebSocketUpgrade,
    },
    http::{header::ORIGIN, HeaderMap},
    response::{IntoResponse, Response},
};
use confab_core::{
    ids::{SessionId, UserId},
    revocation,
    tokens::{Claims, TokenError},
};
use futures::{stream::SplitSink, SinkExt, StreamExt};
use hub::Outbound;
use protocol::{close, ClientFrame, Limits, ServerFrame, CLIENT_TYPES};
use std::time::Duration;

/// How long a new socket may take to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

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
    // The transport limit is a backstop; the gateway enforces the documented
    // limit itself so it can answer with close code 1009.
    let hard = state.config.max_frame_bytes * 4;
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| session(state, socket))
}

type Sink = SplitSink<WebSocket, Message>;

/// How long one write to a client may take. A client that stops reading
/// would otherwise pin its task, and with it expiry, revocation and shutdown.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

async fn write(sink: &mut Sink, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn send(sink: &mut Sink, frame: &ServerFrame) -> bool {
    write(sink, Message::Text(frame.to_json().into())).await
}

async fn close_with(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    write(sink, Message::Close(Some(frame))).await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
}

fn remaining(exp: i64) -> Duration {
    let now = chrono::Utc::now().timestamp();
    Duration::from_secs(exp.saturating_sub(now).max(0) as u64)
}

struct Ctx {
    user: UserId,
    sid: SessionId,
    expires_at: i64,
}

async fn session(state: AppState, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let max = state.config.max_frame_bytes;

    let first = tokio::time::timeout(AUTH_TIMEOUT, stream.next()).await;
    let token = match first {
        Ok(Some(Ok(Message::Text(t)))) if t.len() <= max => {
            match serde_json::from_str::<ClientFrame>(&t) {
                Ok(ClientFrame::Auth { token }) => token,
                _ => {
                    let f = ServerFrame::error(
                        "auth_required",
                        "The first frame must be {\"type\":\"auth\",\"token\":…}.",
                        false,
                    );
                    send(&mut sink, &f).await;
                    return close_with(&mut sink, close::AUTH_REQUIRED, "auth required").await;
                }
            }
        }
        Ok(Some(Ok(Message::Text(_)))) => {
            return close_with(&mut sink, close::TOO_BIG, "frame too large").await
        }
        Err(_) => return close_with(&mut sink, close::AUTH_REQUIRED, "auth timeout").await,
        _ => return close_with(&mut sink, close::AUTH_REQUIRED, "auth required").await,
    };
    let claims = match identity::authenticate(&state, &token).await {
        Ok(c) => c,
        Err(e) => {
            let code = match &e {
                Error::Token(TokenError::Expired) => close::TOKEN_EXPIRED,
                Error::Token(TokenError::Revoked) => close::SESSION_REVOKED,
                // Our side is down (JWKS, Redis, database): not the token's fault.
                Error::Token(TokenError::Jwks(_)) => close::UNAVAILABLE,
                e if e.is_internal() => close::UNAVAILABLE,
                _ => close::INVALID_TOKEN,
            };
            send(
                &mut sink,
                &ServerFrame::error(e.code(), e.public_message(), false),
            )
            .await;
            return close_with(&mut sink, code, e.code()).await;
        }
    };
    let mut ctx = Ctx {
        user: claims.sub,
        sid: claims.sid,
        expires_at: claims.exp,
    };
    let (_registration, mut outbound) = state.hub.register(ctx.user, ctx.sid);
    // A logout announced between the check in `authenticate` and the
    // registration reached no socket of ours: check once more (failing
    // closed, like the first check).
    match revocation::is_revoked(&state.redis, &state.keys, ctx.sid).await {
        Ok(false) => {}
        Ok(true) => return close_with(&mut sink, close::SESSION_REVOKED, "session revoked").await,
        Err(e) => {
            tracing::warn!(error = %e, "revocation re-check failed; closing the socket");
            return close_with(&mut sink, close::UNAVAILABLE, "try again").await;
        }
    }
    let ready = ServerFrame::Ready {
        user_id: ctx.user,
        agent: state.chat.provider().info(),
        limits: Limits {
            max_frame_bytes: max,
            max_message_chars: state.config.max_message_chars,
        },
        expires_at: ctx.expires_at,
    };
    if !send(&mut sink, &ready).await {
        return;
    }
    tracing::info!(user = %ctx.user, "socket ready");

    loop {
        let expiry = tokio::time::sleep(remaining(ctx.expires_at));
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                return close_with(&mut sink, close::GOING_AWAY, "server shutting down").await;
            }
            _ = expiry => {
                let f = ServerFrame::error("token_expired", "Your access token expired; reconnect with a fresh one.", true);
                send(&mut sink, &f).await;
                return close_with(&mut sink, close::TOKEN_EXPIRED, "token expired").await;
            }
            out = outbound.recv() => match out {
                Some(Outbound::Frame(s)) => {
                    if !write(&mut sink, Message::Text(s.into())).await {
                        return;
                    }
                }
                Some(Outbound::Close(code, reason)) => return close_with(&mut sink, code, reason).await,
                None => return close_with(&mut sink, close::TOO_SLOW, "client too slow; resume").await,
            },
            msg = stream.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(t))) => {
                    if t.len() > max {
                        return close_with(&mut sink, close::TOO_BIG, "frame too large").await;
                    }
                    metrics::counter!("ws_frames_in_total").increment(1);
                    for frame in handle(&state, &mut ctx, &t).await {
                        if !send(&mut sink, &frame).await {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    if b.len() > max {
                        return close_with(&mut sink, close::TOO_BIG, "frame too large").await;
                    }
                    let f = ServerFrame::error("unsupported_frame", "Binary frames are not supported; send JSON text.", false);
                    if !send(&mut sink, &f).await {
                        return;
                    }
                }
                Some(Ok(_)) => {} // ping/pong are answered by the transport
            },
        }
    }
}

/// Handle one client frame; returns the frames to send back directly.
async fn handle(state: &AppState, ctx: &mut Ctx, text: &str) -> Vec<ServerFrame> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return vec![ServerFrame::error(
                "malformed_frame",
                "That frame is not valid JSON. Frames are JSON objects with a \"type\".",
                false,
            )]
        }
    };
    let Some(kind) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        return vec![ServerFrame::error(
            "invalid_frame",
            "Frames must be JSON objects with a string \"type\".",
            false,
        )];
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        return vec![ServerFrame::error(
            "unknown_type",
            format!(
                "Unknown frame type {kind:?}; expected one of {}.",
                CLIENT_TYPES.join(", ")
            ),
            false,
        )];
    }
    let client_msg_id = value
        .get("client_msg_id")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let frame: ClientFrame = match serde_json::from_value(value) {
        Ok(f) => f,
        Err(e) => {
            return vec![with_client_id(
                ServerFrame::error(
                    "invalid_frame",
                    format!("Invalid {kind:?} frame: {e}."),
                    false,
                ),
                client_msg_id,
            )]
        }
    };
    match frame {
        ClientFrame::Ping => vec![ServerFrame::Pong],
        ClientFrame::Auth { .. } => vec![ServerFrame::error(
            "already_authenticated",
            "This socket is already authenticated; use \"reauth\" to present a new token.",
            false,
        )],
        ClientFrame::Reauth { token } => match reauth(state, ctx, &token).await {
            Ok(exp) => vec![ServerFrame::Reauthed { expires_at: exp }],
            Err(e) => vec![ServerFrame::error(e.code(), e.public_message(), false)],
        },
        ClientFrame::Send {
            client_msg_id,
            thread_id,
            text,
        } => send_message(state, ctx, client_msg_id, thread_id, text).await,
        ClientFrame::Resume {
            thread_id,
            after_seq,
        } => match state.chat.resume(ctx.user, thread_id, after_seq).await {
            Ok(frames) => frames,
            Err(e) => vec![error_frame(&e, None)],
        },
        ClientFrame::Retry { message_id } => match state.chat.retry(ctx.user, message_id).await {
            Ok(()) => vec![],
            Err(e) => {
                let mut f = error_frame(&e, None);
                if let ServerFrame::Error { message_id: m, .. } = &mut f {
                    *m = Some(message_id);
                }
                vec![f]
            }
        },
    }
}

fn with_client_id(mut frame: ServerFrame, id: Option<String>) -> ServerFrame {
    if let ServerFrame::Error { client_msg_id, .. } = &mut frame {
        *client_msg_id = id;
    }
    frame
}

fn error_frame(e: &Error, client_msg_id: Option<String>) -> ServerFrame {
    if e.is_internal() {
        tracing::error!(error = %e, "socket request failed");
    }
    let code = match e {
        Error::NotFound(_) => "not_found",
        other => other.code(),
    };
    with_client_id(
        ServerFrame::error(code, e.public_message(), e.is_internal()),
        client_msg_id,
    )
}

async fn reauth(state: &AppState, ctx: &mut Ctx, token: &str) -> Result<i64, Error> {
    let claims: Claims = identity::authenticate(state, token).await?;
    if claims.sub != ctx.user || claims.sid != ctx.sid {
        return Err(Error::invalid(
            "token_mismatch",
            None,
            "A reauth token must belong to the same user and session as the socket.",
        ));
    }
    ctx.expires_at = claims.exp;
    Ok(claims.exp)
}

async fn send_message(
    state: &AppState,
    ctx: &Ctx,
    client_msg_id: String,
    thread_id: Option<confab_core::ids::ThreadId>,
    text: String,
) -> Vec<ServerFrame> {
    let id_ok = !client_msg_id.is_empty()
        && client_msg_id.chars().count() <= 128
        && !client_msg_id.chars().any(char::is_control);
    if !id_ok {
        return vec![ServerFrame::error(
            "invalid_message",
            "client_msg_id must be 1–128 printable characters.",
            false,
        )];
    }
    let fail = |code: &str, message: String| {
        vec![with_client_id(
            ServerFrame::error(code, message, false),
            Some(client_msg_id.clone()),
        )]
    };
    if text.trim().is_empty() {
        return fail("invalid_message", "The message is empty.".into());
    }
    let max = state.config.max_message_chars;
    if text.chars().count() > max {
        return fail(
            "message_too_long",
            format!("The message is longer than {max} characters; shorten it or split it up."),
        );
    }
    match state
        .chat
        .send(ctx.user, &client_msg_id, thread_id, &text)
        .await
    {
        Ok(sent) => {
            let ack = ServerFrame::Ack {
                client_msg_id: client_msg_id.clone(),
                thread_id: sent.thread_id,
                message_id: sent.message_id,
                seq: sent.seq,
                duplicate: sent.duplicate,
            };
            if let Some(stored) = sent.stored {
                // Published, so it reaches this socket only after the ack
                // (see below) and the user's other sockets right away.
                state.chat.announce(ctx.user, stored).await;
            }
            if !sent.duplicate {
                // Deltas reach this socket through the hub's channel, which the
                // session loop reads only after it has written the frames
                // returned here: the ack always precedes the first delta.
                state
                    .chat
                    .start_reply(ctx.user, sent.thread_id, sent.message_id);
            }
            vec![ack]
        }
        Err(e) => vec![error_frame(&e, Some(client_msg_id))],
    }
}
