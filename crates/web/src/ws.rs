//! The WebSocket proxy for `/v1/ws`: browser ⇄ web ⇄ backend.
//!
//! Browsers do not apply the same-origin policy to WebSockets, and the
//! backend authenticates the socket with a token the page sends in its first
//! frame — so without an `Origin` check any site could open a socket from a
//! signed-in visitor's browser (cross-site WebSocket hijacking). The check
//! lives here, at the origin the browser sees.
//!
//! After the check the proxy is a relay: frames pass unchanged in both
//! directions, including close frames with their code and reason, because the
//! client acts on them (4001 token expired → refresh, 4003 session revoked →
//! log in again, 1009 message too big). When either side ends, the other is
//! closed too, so neither holds a half-dead connection.
//!
//! At most `Config::max_sockets` relays are open at once: each holds a
//! permit from `AppState::sockets` for its whole life, and an upgrade that
//! finds none left is refused with 503 `too_many_sockets` before the backend
//! is contacted. The browser's client reconnects with backoff.

use crate::{
    backends::SocketSlot,
    proxy::{self, Upstream},
    AppState,
};
use axum::{
    extract::{
        ws::{self, WebSocket, WebSocketUpgrade},
        FromRequestParts, Request, State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use confab_core::{http::ws_buffers, REQUEST_ID_HEADER};
use futures::{SinkExt, StreamExt};
use std::{net::IpAddr, time::Duration};
use tokio::{
    net::TcpStream,
    sync::{watch, OwnedSemaphorePermit},
};
use tokio_tungstenite::{
    tungstenite::{
        self as ts,
        client::IntoClientRequest,
        protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig},
    },
    MaybeTlsStream, WebSocketStream,
};

/// The largest frame (and message) accepted from the browser. Chat input is
/// small; this stops a page from making us buffer megabytes per socket. The
/// backend applies its own, possibly lower, limit and answers with 1009.
pub(crate) const MAX_FROM_BROWSER: usize = 64 * 1024;

/// The largest frame accepted from the backend. Larger than the browser limit
/// on purpose: a `done` frame carries the whole rendered reply, and resume
/// replays whole messages, both of which can pass 64 KiB for a long answer.
/// The backend is trusted; this only bounds memory if it misbehaves.
pub(crate) const MAX_FROM_BACKEND: usize = 1024 * 1024;

/// How long to wait for the backend's WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for the peers' close replies before dropping both sockets.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

type BackendSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `GET /v1/ws`: check the origin, open the backend socket, then accept the
/// browser's upgrade and relay.
///
/// The backend socket is opened *before* answering the browser so that a
/// backend that is down (or refuses the handshake) shows up as an HTTP error
/// on the upgrade, not as a socket that opens and immediately dies.
pub(crate) async fn upgrade(State(s): State<AppState>, req: Request) -> Response {
    if !same_origin(req.headers()) {
        tracing::warn!(
            origin = ?req.headers().get(header::ORIGIN),
            host = ?req.headers().get(header::HOST),
            "websocket rejected: cross-origin"
        );
        return (
            StatusCode::FORBIDDEN,
            "WebSocket connections are only accepted from this site's own pages (Origin mismatch).",
        )
            .into_response();
    }
    let peer = proxy::peer_ip(&req);
    let (mut parts, _body) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &s).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(permit) = RelayPermit::try_new(&s) else {
        return too_many_sockets(s.config.max_sockets);
    };

    let (upstream, selected_protocol, slot) =
        match connect_upstream(&s, &parts.headers, parts.uri.query(), peer).await {
            Ok(u) => u,
            Err(response) => return response,
        };

    let mut upgrade = confab_core::http::ws_upgrade(upgrade)
        .max_frame_size(MAX_FROM_BROWSER)
        .max_message_size(MAX_FROM_BROWSER);
    if let Some(p) = selected_protocol {
        upgrade = upgrade.protocols([p]);
    }
    let shutdown = s.shutdown.clone();
    let guard = s.relays_done.clone();
    upgrade.on_upgrade(move |browser| async move {
        relay(browser, upstream, shutdown).await;
        drop(slot);
        drop(permit);
        drop(guard);
    })
}

/// A relay's claim on one of the `Config::max_sockets` slots; the slot and the
/// `web_relayed_sockets` gauge are given back when it is dropped, however the
/// relay ends (including an upgrade the browser never completed).
struct RelayPermit {
    _slot: OwnedSemaphorePermit,
}

impl RelayPermit {
    fn try_new(s: &AppState) -> Option<Self> {
        let permit = s.sockets.clone().try_acquire_owned().ok()?;
        metrics::gauge!("web_relayed_sockets").increment(1.0);
        Some(Self { _slot: permit })
    }
}

impl Drop for RelayPermit {
    fn drop(&mut self) {
        metrics::gauge!("web_relayed_sockets").decrement(1.0);
    }
}

/// The refusal past the socket cap: 503 with our JSON error shape, and a
/// `Retry-After` so well-behaved clients back off.
fn too_many_sockets(limit: usize) -> Response {
    tracing::warn!(
        limit,
        "websocket refused: CONFAB_WEB_MAX_SOCKETS relays already open"
    );
    metrics::counter!("web_sockets_refused_total").increment(1);
    let mut res = proxy::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_sockets",
        "This server has too many chat connections open right now. Try again in a moment.",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    res
}

/// Whether `Origin` names this server, as the browser reached it. Both
/// schemes are accepted because a TLS-terminating proxy may sit in front; what
/// matters for hijacking is the host, which a foreign page cannot forge. A
/// request without `Origin` is refused: every browser sends one on WebSocket
/// upgrades, and non-browser clients can talk to the backend directly.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    // A front proxy may rewrite `Host` to our internal name and put the
    // public one in `X-Forwarded-Host`; a page cannot set that header on a
    // WebSocket, so accepting it opens nothing to other sites.
    [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map(|host| host.trim().to_ascii_lowercase())
        .filter(|host| !host.is_empty())
        .any(|host| origin == format!("http://{host}") || origin == format!("https://{host}"))
}

/// Open `/v1/ws` on a backend instance: the live one with the fewest
/// relayed sockets, or, when it cannot be reached, the next (a connection
/// that fails takes its instance out until a health check brings it back).
/// An instance that answers the upgrade with an HTTP error (say 429) is not
/// skipped: that answer is the user's.
async fn connect_upstream(
    s: &AppState,
    incoming: &HeaderMap,
    query: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<(BackendSocket, Option<String>, SocketSlot), Response> {
    for index in s.backends.for_socket() {
        match connect_instance(s.backends.url(index), incoming, query, peer).await {
            Ok((socket, protocol)) => {
                return Ok((socket, protocol, s.backends.claim_socket(index)))
            }
            Err(Refused::Answer(response)) => return Err(response),
            Err(Refused::Unreachable) => s.backends.mark_down(index),
        }
    }
    Err(proxy::unavailable(Upstream::Backend))
}

enum Refused {
    /// The instance answered; pass its answer on.
    Answer(Response),
    /// The instance could not be reached; try another.
    Unreachable,
}

/// Open one instance's `/v1/ws`, forwarding the request id (so the socket's
/// logs line up across services), the forwarding headers and any requested
/// subprotocol. `Origin` is not forwarded: it was checked here, and the
/// backend's own origin is not the browser's.
async fn connect_instance(
    base: &str,
    incoming: &HeaderMap,
    query: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<(BackendSocket, Option<String>), Refused> {
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    let url = match query {
        Some(q) => format!("{ws_base}/v1/ws?{q}"),
        None => format!("{ws_base}/v1/ws"),
    };
    let mut request = url.as_str().into_client_request().map_err(|e| {
        tracing::error!(%url, error = %e, "bad backend websocket url");
        Refused::Unreachable
    })?;
    let forwarded = proxy::upstream_request_headers(incoming, peer);
    let out = request.headers_mut();
    for name in [
        REQUEST_ID_HEADER,
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "user-agent",
        "sec-websocket-protocol",
    ] {
        if let Some(v) = forwarded.get(name) {
            out.insert(name, v.clone());
        }
    }

    let config = WebSocketConfig::default()
        .read_buffer_size(ws_buffers::READ)
        .write_buffer_size(ws_buffers::WRITE)
        .max_write_buffer_size(ws_buffers::MAX_WRITE)
        .max_frame_size(Some(MAX_FROM_BACKEND))
        .max_message_size(Some(MAX_FROM_BACKEND));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok((socket, response))) => {
            let protocol = response
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok((socket, protocol))
        }
        // The backend answered the upgrade with an HTTP error (say 429 or
        // 503): pass its status and body on rather than hiding it as a 502.
        Ok(Err(ts::Error::Http(res))) => {
            let status =
                StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = res
                .headers()
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8"));
            let body = res.into_body().unwrap_or_default();
            Err(Refused::Answer(
                (status, [(header::CONTENT_TYPE, content_type)], body).into_response(),
            ))
        }
        Ok(Err(e)) => {
            tracing::warn!(%url, error = %e, "backend websocket unreachable");
            Err(Refused::Unreachable)
        }
        Err(_) => {
            tracing::warn!(%url, "backend websocket handshake timed out");
            Err(Refused::Unreachable)
        }
    }
}

/// How the relay ended, which decides what each side is told.
enum Ending {
    /// A side sent a close frame; it was forwarded to the other side.
    Forwarded,
    /// The browser's socket ended without a close frame or with an error.
    BrowserGone { too_big: bool },
    /// The backend's socket ended without a close frame or with an error.
    BackendGone { too_big: bool },
    /// This process is shutting down.
    Shutdown,
}

/// How long relaying one frame may take. The relay reads one side only
/// after writing to the other, so a peer that stops reading would otherwise
/// stall both directions for good.
const RELAY_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

async fn sent<E>(send: impl std::future::Future<Output = Result<(), E>>) -> bool {
    matches!(
        tokio::time::timeout(RELAY_WRITE_TIMEOUT, send).await,
        Ok(Ok(()))
    )
}

/// Frames relayed to the browser with one flush, at most.
const BURST: usize = 64;

type BrowserSink = futures::stream::SplitSink<WebSocket, ws::Message>;
type BackendStream = futures::stream::SplitStream<BackendSocket>;
type FromBackend = Result<ts::Message, ts::Error>;

/// Relay what the backend sent, with the frames already read behind it (up
/// to [`BURST`]) in one write to the browser: the backend writes a burst of
/// deltas together, and they stay together. A lone frame leaves at once.
/// Anything but a data frame ends the burst and is left in `carried`.
/// `Some` when the relay ends.
async fn from_backend(
    msg: Option<FromBackend>,
    b_tx: &mut BrowserSink,
    u_rx: &mut BackendStream,
    carried: &mut Option<FromBackend>,
) -> Option<Ending> {
    use futures::FutureExt;
    match msg {
        Some(Ok(ts::Message::Close(frame))) => {
            let _ = b_tx
                .send(ws::Message::Close(frame.map(close_to_browser)))
                .await;
            Some(Ending::Forwarded)
        }
        Some(Ok(m)) => {
            let burst = async {
                if let Some(m) = to_browser(m) {
                    b_tx.feed(m).await?;
                }
                for _ in 1..BURST {
                    match u_rx.next().now_or_never() {
                        Some(Some(Ok(m))) if !matches!(m, ts::Message::Close(_)) => {
                            if let Some(m) = to_browser(m) {
                                b_tx.feed(m).await?;
                            }
                        }
                        Some(Some(other)) => {
                            *carried = Some(other);
                            break;
                        }
                        // Nothing more read yet, or the stream ended (the
                        // next read says so).
                        Some(None) | None => break,
                    }
                }
                b_tx.flush().await
            };
            (!sent(burst).await).then_some(Ending::BrowserGone { too_big: false })
        }
        Some(Err(e)) => Some(Ending::BackendGone {
            too_big: is_too_big(Some(&e)),
        }),
        None => Some(Ending::BackendGone { too_big: false }),
    }
}

/// Pump frames both ways until one side ends, then close the other.
async fn relay(browser: WebSocket, upstream: BackendSocket, mut shutdown: watch::Receiver<bool>) {
    let (mut b_tx, mut b_rx) = browser.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    // What a burst read from the backend stopped at (a close, an error):
    // handled next, as if just read.
    let mut carried = None;

    let ending = loop {
        if let Some(msg) = carried.take() {
            if let Some(end) = from_backend(Some(msg), &mut b_tx, &mut u_rx, &mut carried).await {
                break end;
            }
            continue;
        }
        tokio::select! {
            msg = b_rx.next() => match msg {
                Some(Ok(ws::Message::Close(frame))) => {
                    let _ = u_tx.send(ts::Message::Close(frame.map(close_to_backend))).await;
                    break Ending::Forwarded;
                }
                Some(Ok(m)) => {
                    if !sent(u_tx.send(to_backend(m))).await {
                        break Ending::BackendGone { too_big: false };
                    }
                }
                Some(Err(e)) => {
                    let too_big = is_too_big(e.into_inner().downcast_ref::<ts::Error>());
                    break Ending::BrowserGone { too_big };
                }
                None => break Ending::BrowserGone { too_big: false },
            },
            msg = u_rx.next() => {
                if let Some(end) = from_backend(msg, &mut b_tx, &mut u_rx, &mut carried).await {
                    break end;
                }
            }
            _ = stopping(&mut shutdown) => break Ending::Shutdown,
        }
    };

    // Tell whichever side did not close why the conversation ended. Codes
    // other than 4001/4003 make the client reconnect with backoff.
    let (to_browser_close, to_backend_close) = match ending {
        Ending::Forwarded => (None, None),
        Ending::BrowserGone { too_big: true } => (
            Some(browser_close(1009, "Message too big")),
            Some(backend_close(
                CloseCode::Away,
                "client sent an oversized message",
            )),
        ),
        Ending::BrowserGone { too_big: false } => (
            None,
            Some(backend_close(CloseCode::Away, "client went away")),
        ),
        Ending::BackendGone { too_big } => (
            Some(browser_close(1011, "The chat service connection was lost")),
            too_big.then(|| backend_close(CloseCode::Size, "frame too big for proxy")),
        ),
        Ending::Shutdown => (
            Some(browser_close(1012, "Server restarting, reconnect")),
            Some(backend_close(CloseCode::Away, "proxy shutting down")),
        ),
    };

    // Send our close frames, then give both peers a moment to answer theirs
    // (a clean close handshake keeps the code visible to the browser), and
    // drop both connections whatever happens.
    let finish = async {
        if let Some(frame) = to_browser_close {
            let _ = b_tx.send(ws::Message::Close(Some(frame))).await;
        }
        if let Some(frame) = to_backend_close {
            let _ = u_tx.send(ts::Message::Close(Some(frame))).await;
        }
        let browser_side = async {
            let _ = b_tx.flush().await;
            while let Some(Ok(m)) = b_rx.next().await {
                if matches!(m, ws::Message::Close(_)) {
                    break;
                }
            }
        };
        let backend_side = async {
            let _ = u_tx.flush().await;
            while let Some(Ok(m)) = u_rx.next().await {
                if matches!(m, ts::Message::Close(_)) {
                    break;
                }
            }
            let _ = u_tx.close().await;
        };
        tokio::join!(browser_side, backend_side);
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
}

async fn stopping(rx: &mut watch::Receiver<bool>) {
    // A dropped sender means nobody will ever ask us to stop.
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn is_too_big(e: Option<&ts::Error>) -> bool {
    matches!(e, Some(ts::Error::Capacity(_)))
}

/// A code the WebSocket protocol allows on the wire; others (1005, 1006,
/// 1015 are reserved for "no frame"/"abnormal"/"TLS") are replaced, since a
/// browser receiving one fails the connection instead of reporting it.
fn sendable(code: u16) -> u16 {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => code,
        _ => 1011,
    }
}

fn browser_close(code: u16, reason: &'static str) -> ws::CloseFrame {
    ws::CloseFrame {
        code,
        reason: reason.into(),
    }
}

fn backend_close(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

fn close_to_backend(f: ws::CloseFrame) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(sendable(f.code)),
        reason: ts::Utf8Bytes::from(f.reason.as_str()),
    }
}

fn close_to_browser(f: CloseFrame) -> ws::CloseFrame {
    ws::CloseFrame {
        code: sendable(u16::from(f.code)),
        reason: ws::Utf8Bytes::from(f.reason.as_str()),
    }
}

fn to_backend(m: ws::Message) -> ts::Message {
    match m {
        ws::Message::Text(t) => ts::Message::Text(ts::Utf8Bytes::from(t.as_str())),
        ws::Message::Binary(b) => ts::Message::Binary(b),
        ws::Message::Ping(b) => ts::Message::Ping(b),
        ws::Message::Pong(b) => ts::Message::Pong(b),
        ws::Message::Close(f) => ts::Message::Close(f.map(close_to_backend)),
    }
}

fn to_browser(m: ts::Message) -> Option<ws::Message> {
    Some(match m {
        ts::Message::Text(t) => ws::Message::Text(ws::Utf8Bytes::from(t.as_str())),
        ts::Message::Binary(b) => ws::Message::Binary(b),
        ts::Message::Ping(b) => ws::Message::Ping(b),
        ts::Message::Pong(b) => ws::Message::Pong(b),
        ts::Message::Close(f) => ws::Message::Close(f.map(close_to_browser)),
        // Raw frames only appear when writing; never on reads.
        ts::Message::Frame(_) => return None,
    })
}
