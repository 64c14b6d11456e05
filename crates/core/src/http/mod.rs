//! HTTP plumbing every service shares: binding (with the machine-readable
//! "listening" line), the request-id / tracing / metrics layers, `/healthz`,
//! `/metrics`, readiness and graceful shutdown. [`api`] holds what handlers
//! share: the JSON body extractor, the Bearer token and the error body.

pub mod api;
pub mod probe;

use axum::serve::{ListenerExt, TapIo};
use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::{io::Write, net::SocketAddr, sync::OnceLock};
use tokio::net::{TcpListener, TcpStream};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder was installed first (nothing of ours
        // does that); the service still runs, with an empty `/metrics`.
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::error!(error = %e, "metrics recorder not installed; /metrics stays empty");
        }
        handle
    })
}

/// Bind `host:port` (port 0 picks a free one) and print one JSON line on
/// stdout naming the bound address, which harnesses and `confab up` read.
pub async fn bind(
    service: &str,
    host: &str,
    port: u16,
) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((host, port)).await?;
    let addr = listener.local_addr()?;
    let line = serde_json::json!({
        "event": "listening",
        "service": service,
        "addr": addr.to_string(),
        "url": format!("http://{addr}"),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    tracing::info!(service, %addr, "listening");
    Ok((listener, addr))
}

/// The listener a service serves: every accepted connection has
/// `TCP_NODELAY` set. Without it a small write (a chat delta, a JSON answer)
/// that follows another waits for the peer's delayed ACK — up to 40 ms on
/// Linux — before it leaves the machine.
pub fn nodelay(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(set_nodelay as fn(&mut TcpStream))
}

fn set_nodelay(stream: &mut TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(error = %e, "could not set TCP_NODELAY on an accepted connection");
    }
}

/// Buffer sizes of every WebSocket a service holds (the backend's chat
/// sockets; both sides of web's relay). Tungstenite's defaults allocate a
/// 128 KiB read buffer per socket up front, which was most of the memory an
/// idle socket cost; a larger frame still fits (the buffer grows to the
/// frame, up to the frame limit).
pub mod ws_buffers {
    /// Bytes read from the socket at a time (the buffer's starting size).
    pub const READ: usize = 4 * 1024;
    /// Outgoing frames fed without a flush collect up to this many bytes
    /// before they are written, so frames sent together leave in one write;
    /// a frame that is sent (flushed) still leaves at once.
    pub const WRITE: usize = 16 * 1024;
    /// The most that may be waiting to be written to a peer that does not
    /// read; past it a send fails and the socket ends (a slow client is
    /// dropped rather than buffered without bound). Larger than the largest
    /// frame a service sends.
    pub const MAX_WRITE: usize = 4 * 1024 * 1024;
}

/// A WebSocket upgrade with the [`ws_buffers`] sizes.
pub fn ws_upgrade(upgrade: axum::extract::WebSocketUpgrade) -> axum::extract::WebSocketUpgrade {
    upgrade
        .read_buffer_size(ws_buffers::READ)
        .write_buffer_size(ws_buffers::WRITE)
        .max_write_buffer_size(ws_buffers::MAX_WRITE)
}

/// Wrap a service's router with request ids (taken from `x-request-id` when a
/// caller sent one, so an id crosses services), a tracing span per request,
/// request metrics, and the `/healthz` and `/metrics` endpoints.
pub fn with_common_layers(router: Router, service: &'static str) -> Router {
    // Install the recorder now: metrics recorded before it exists are lost.
    prometheus();
    let header = HeaderName::from_static(crate::REQUEST_ID_HEADER);
    router
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(|| async { prometheus().render() }))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            track_metrics(service, req, next)
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(move |req: &Request| {
                let request_id = req
                    .headers()
                    .get(crate::REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "request",
                    service,
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(SetRequestIdLayer::new(header, MakeRequestUuid))
}

async fn track_metrics(service: &'static str, req: Request, next: Next) -> Response {
    let start = crate::clock::instant();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_string()),
        ("method", method),
        ("path", path),
        ("status", status),
    ];
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    // The access log line; it carries the request span (and so its id).
    if matches!(labels[2].1.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(status = %labels[3].1, latency_ms, "request finished");
    } else {
        tracing::info!(status = %labels[3].1, latency_ms, "request finished");
    }
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The body of `/readyz`: each named check and whether it passed.
pub async fn readiness(checks: Vec<(&'static str, Result<(), String>)>) -> Response {
    let ok = checks.iter().all(|(_, r)| r.is_ok());
    let body: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => serde_json::json!("ok"),
                Err(e) => serde_json::json!(e),
            };
            (name.to_string(), v)
        })
        .collect();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": ok, "checks": body })),
    )
        .into_response()
}

/// The checks every service's `/readyz` starts with, run concurrently, each
/// bounded: the database answers, Redis answers, and the newest migration
/// this binary knows is applied.
pub async fn standard_checks(
    pool: &sqlx::PgPool,
    redis: &redis::aio::ConnectionManager,
    migrator: &sqlx::migrate::Migrator,
) -> Vec<(&'static str, Result<(), String>)> {
    let (database, redis, migrations) = tokio::join!(
        crate::db::ping(pool),
        crate::redis_conn::ping(redis),
        crate::db::migrations_applied(pool, migrator),
    );
    vec![
        ("database", database),
        ("redis", redis),
        ("migrations", migrations),
    ]
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}

/// The local `$ref`s (`#/…`) of an OpenAPI document that point at nothing,
/// for each service's test of its own document.
pub fn unresolved_refs(doc: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, doc: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    let resolves = r
                        .strip_prefix('#')
                        .is_some_and(|pointer| doc.pointer(pointer).is_some());
                    if !resolves {
                        out.push(r.clone());
                    }
                }
                map.values().for_each(|v| walk(v, doc, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, doc, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, doc, &mut out);
    out
}
