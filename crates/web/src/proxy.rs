//! The HTTP reverse proxy: `/v1/auth/*` and `/.well-known/*` go to the auth
//! service, every other `/v1/*` to the backend.
//!
//! Going through one origin is what lets the refresh token be a first-party,
//! httpOnly, SameSite cookie, and spares us CORS. The proxy is deliberately
//! dumb: it streams bodies both ways, passes `Set-Cookie` and redirects back
//! untouched, and only adds what a proxy must (forwarding headers, a request
//! id that the next service logs under the same id) and a bound on how long
//! it waits (`Config::upstream_timeout`): a hung upstream answers 504 instead
//! of holding the browser's request open for good.

use crate::AppState;
use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use std::net::{IpAddr, SocketAddr};

/// Which service a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream {
    Auth,
    Backend,
}

impl Upstream {
    pub(crate) fn for_path(path: &str) -> Self {
        if path == "/v1/auth" || path.starts_with("/v1/auth/") || path.starts_with("/.well-known/")
        {
            Upstream::Auth
        } else {
            Upstream::Backend
        }
    }

    /// Said to the person using the app, so it names what they feel, not
    /// which process failed.
    fn unavailable_message(self) -> &'static str {
        match self {
            Upstream::Auth => "Sign-in is not reachable right now. Try again in a moment.",
            Upstream::Backend => {
                "The chat service is not reachable right now. Try again in a moment."
            }
        }
    }

    fn timeout_message(self) -> &'static str {
        match self {
            Upstream::Auth => "Sign-in is taking too long to answer. Try again in a moment.",
            Upstream::Backend => {
                "The chat service is taking too long to answer. Try again in a moment."
            }
        }
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1); they
/// must not be forwarded. `host` is set by the client for the upstream.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &HeaderName, listed_in_connection: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || listed_in_connection.iter().any(|c| c == name.as_str())
}

/// Header names the `Connection` header declares hop-by-hop for this message.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The request headers to send upstream: end-to-end headers as they came,
/// plus `X-Forwarded-*` so the upstream sees the browser's view (client
/// address for rate limits and session lists, host and scheme for absolute
/// URLs and cookie flags).
pub(crate) fn upstream_request_headers(incoming: &HeaderMap, peer: Option<IpAddr>) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 3);
    for (name, value) in incoming {
        if name == header::HOST || is_hop_by_hop(name, &listed) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    // Append our peer to any chain a front proxy started; the upstream trusts
    // the rightmost entries it knows to be proxies.
    if let Some(ip) = peer {
        let chain = incoming
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(|prev| format!("{prev}, {ip}"))
            .unwrap_or_else(|| ip.to_string());
        if let Ok(v) = HeaderValue::from_str(&chain) {
            out.insert("x-forwarded-for", v);
        }
    }
    // A TLS-terminating proxy in front of us already said what the browser
    // used; otherwise it was plain HTTP to us.
    if !incoming.contains_key("x-forwarded-proto") {
        out.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !incoming.contains_key("x-forwarded-host") {
        if let Some(host) = incoming.get(header::HOST) {
            out.insert("x-forwarded-host", host.clone());
        }
    }
    out
}

/// Whether the incoming request carries a body. Without this check an empty
/// GET would go out with `Transfer-Encoding: chunked`.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

pub(crate) fn peer_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Forward one request and stream the answer back. A backend request goes
/// to the next live instance; when that instance refuses the connection (it
/// just died) a request without a body is tried on the next one, since
/// nothing of it reached the first. A request with a body is not: its
/// body has been handed to the first attempt.
pub(crate) async fn forward(State(s): State<AppState>, req: Request) -> Response {
    let upstream = Upstream::for_path(req.uri().path());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let peer = peer_ip(&req);
    let (parts, body) = req.into_parts();
    let headers = upstream_request_headers(&parts.headers, peer);
    let with_body = has_body(&parts.headers);
    let mut body = Some(body);

    let candidates: Vec<Option<usize>> = match upstream {
        Upstream::Auth => vec![None],
        Upstream::Backend => s.backends.for_request().into_iter().map(Some).collect(),
    };
    let last = candidates.len() - 1;
    for (attempt, instance) in candidates.into_iter().enumerate() {
        let base = match instance {
            None => s.config.auth_url.as_str(),
            Some(i) => s.backends.url(i),
        };
        let url = format!("{base}{path_and_query}");
        let mut outgoing = s
            .http
            .request(parts.method.clone(), &url)
            .headers(headers.clone());
        if with_body {
            if let Some(body) = body.take() {
                outgoing = outgoing.body(reqwest::Body::wrap_stream(body.into_data_stream()));
            }
        }
        // Bounds the wait for the response headers (the body's reads are
        // bounded by the client's read timeout). Sending the request body is
        // part of the wait, so a browser that stalls an upload is cut too.
        let timeout = s.config.upstream_timeout;
        return match tokio::time::timeout(timeout, outgoing.send()).await {
            Ok(Ok(res)) => into_response(res),
            Ok(Err(e)) if e.is_timeout() => {
                tracing::warn!(?upstream, %url, error = %e, "upstream request timed out");
                timed_out(upstream)
            }
            Ok(Err(e)) => {
                tracing::warn!(?upstream, %url, error = %e, "upstream request failed");
                if e.is_connect() {
                    if let Some(i) = instance {
                        s.backends.mark_down(i);
                        if !with_body && attempt < last {
                            continue;
                        }
                    }
                }
                unavailable(upstream)
            }
            Err(_) => {
                tracing::warn!(?upstream, %url, ?timeout, "upstream did not answer in time");
                timed_out(upstream)
            }
        };
    }
    unavailable(upstream)
}

fn into_response(res: reqwest::Response) -> Response {
    let status = res.status();
    let listed = connection_listed(res.headers());
    let mut headers = HeaderMap::with_capacity(res.headers().len());
    // `append`, not `insert`: several `Set-Cookie` headers must all arrive.
    for (name, value) in res.headers() {
        if !is_hop_by_hop(name, &listed) {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut out = Response::new(Body::from_stream(res.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// An error of the proxy's own, in the shape every Confab API error has, so
/// the client needs no special case.
pub(crate) fn error(status: StatusCode, code: &'static str, message: &'static str) -> Response {
    (
        status,
        Json(serde_json::json!({
            "error": { "code": code, "message": message }
        })),
    )
        .into_response()
}

/// The service is down or refused the connection.
pub(crate) fn unavailable(upstream: Upstream) -> Response {
    error(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        upstream.unavailable_message(),
    )
}

/// The service accepted the request but did not answer within
/// `Config::upstream_timeout`.
fn timed_out(upstream: Upstream) -> Response {
    error(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        upstream.timeout_message(),
    )
}
