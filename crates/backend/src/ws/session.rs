//! One socket's life: authentication, then the loop that writes what the
//! client, the hub and the token's expiry call for, until one side ends it.

use super::{
    handler::handle,
    hub::Outbound,
    protocol::{close, ClientFrame, Limits, ServerFrame},
};
use crate::{error::Error, identity, AppState};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use confab_core::{
    clock::{self, Clock},
    ids::{SessionId, UserId},
    tokens::{TokenError, LEEWAY_SECS},
};
use futures::{stream::SplitSink, SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a new socket may take to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Frames written with one flush, at most (see [`write_queued`]).
const BATCH: usize = 64;

/// Write `first` and the frames already queued behind it (up to [`BATCH`])
/// with one flush, so a burst of deltas costs one write to the kernel, not
/// one each; a lone frame leaves at once, as with [`write`]. A close found
/// in the queue is returned, after the frames before it were written.
/// `Err` when the client cannot be written to.
async fn write_queued(
    sink: &mut Sink,
    first: String,
    queue: &mut mpsc::Receiver<Outbound>,
) -> Result<Option<(u16, &'static str)>, ()> {
    let batch = async {
        sink.feed(Message::Text(first.into())).await?;
        let mut closing = None;
        for _ in 1..BATCH {
            match queue.try_recv() {
                Ok(Outbound::Frame(s)) => sink.feed(Message::Text(s.into())).await?,
                Ok(Outbound::Close(code, reason)) => {
                    closing = Some((code, reason));
                    break;
                }
                // Empty, or dropped by the hub (the next `recv` says so).
                Err(_) => break,
            }
        }
        sink.flush().await?;
        Ok::<_, axum::Error>(closing)
    };
    match tokio::time::timeout(WRITE_TIMEOUT, batch).await {
        Ok(Ok(closing)) => Ok(closing),
        _ => Err(()),
    }
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

/// Refuse an authentication: the error frame, then the close code that
/// says whether to refresh, sign in again or just retry later.
async fn refuse(sink: &mut Sink, e: &Error) {
    let code = match e {
        Error::Token(TokenError::Expired) => close::TOKEN_EXPIRED,
        Error::Token(TokenError::Revoked) | Error::AccountDeleted => close::SESSION_REVOKED,
        // Our side is down (JWKS, Redis, database): not the token's fault.
        Error::Token(TokenError::Jwks(_)) => close::UNAVAILABLE,
        e if e.is_internal() => close::UNAVAILABLE,
        _ => close::INVALID_TOKEN,
    };
    send(sink, &ServerFrame::from(e)).await;
    close_with(sink, code, e.code()).await;
}

fn remaining(clock: &Clock, exp: i64) -> Duration {
    let now = clock.now().timestamp();
    Duration::from_secs(exp.saturating_sub(now).max(0) as u64)
}

/// What the socket knows about its caller.
pub(super) struct Ctx {
    pub(super) user: UserId,
    pub(super) sid: SessionId,
    pub(super) expires_at: i64,
}

pub(super) async fn run(state: AppState, socket: WebSocket) {
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
    // The larger futures a socket awaits are boxed (here, and each frame's
    // handling below): a future awaited inline is part of the socket's task
    // for as long as the socket lives, and that task was most of an idle
    // socket's memory (8 KB of about 15, heaptrack; docs/benchmarks.md).
    let claims = match Box::pin(state.verifier.verify(&token)).await {
        Ok(c) => c,
        Err(e) => return refuse(&mut sink, &Error::from(e)).await,
    };
    let mut ctx = Ctx {
        user: claims.sub,
        sid: claims.sid,
        expires_at: claims.exp,
    };
    // Registered before the revocation check: a sign-out announced from now
    // on reaches this socket through the hub, and one announced before is
    // in Redis for the check, which fails closed (a Redis error or timeout
    // refuses the socket, as it refuses an HTTP request).
    let Some((_registration, mut outbound)) =
        state
            .hub
            .register(ctx.user, ctx.sid, state.config.max_sockets_per_user)
    else {
        metrics::counter!("ws_refused_total", "why" => "user").increment(1);
        let e = Error::TooManySockets(
            "You have too many chat connections open. Close a few tabs or devices and reconnect.",
        );
        send(&mut sink, &ServerFrame::from(&e)).await;
        return close_with(&mut sink, close::TOO_MANY_SOCKETS, e.code()).await;
    };
    if let Err(e) = Box::pin(identity::admit(&state, &claims)).await {
        return refuse(&mut sink, &e).await;
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
        // A token is honoured until `exp` plus the verifiers' leeway, on the
        // socket as over HTTP; a `reauth` in that time keeps the connection.
        let deadline = ctx.expires_at.saturating_add_unsigned(LEEWAY_SECS);
        let expiry = clock::sleep(remaining(&state.config.clock, deadline));
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
                Some(Outbound::Frame(s)) => match write_queued(&mut sink, s, &mut outbound).await {
                    Ok(None) => {}
                    Ok(Some((code, reason))) => return close_with(&mut sink, code, reason).await,
                    Err(()) => return,
                },
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
                    // From a frame's arrival to its answers written: the
                    // socket latency the operator's p99 alert watches.
                    let started = confab_core::clock::instant();
                    for frame in Box::pin(handle(&state, &mut ctx, &t)).await {
                        if !send(&mut sink, &frame).await {
                            return;
                        }
                    }
                    metrics::histogram!("ws_frame_seconds").record(started.elapsed().as_secs_f64());
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
