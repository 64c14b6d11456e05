//! The web service: the browser's single origin.
//!
//! It owns three things and nothing else:
//! - server-rendered pages and the static assets they use ([`pages`], [`assets`]),
//!   all embedded in the binary so a release is one file;
//! - an HTTP reverse proxy ([`proxy`]) that sends `/v1/auth/*` and
//!   `/.well-known/*` to the auth service and every other `/v1/*` to the
//!   backend, so cookies stay first-party and no CORS is needed;
//! - a WebSocket proxy ([`ws`]) for `/v1/ws`, which checks `Origin` (the
//!   browser does not apply the same-origin policy to WebSockets) and then
//!   relays frames to the backend untouched.
//!
//! It holds no user state: any number of web processes can run side by side.

mod admin;
mod assets;
mod backends;
mod config;
mod pages;
mod proxy;
mod sign_in;
mod ws;

#[cfg(test)]
mod tests;

pub use config::Config;

use axum::{
    routing::{any, get},
    Router,
};
use confab_core::http::{bind, readiness, shutdown_signal, with_common_layers};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::sync::{mpsc, watch, Semaphore};

/// Why the web server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("web: i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("web: could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("web: a page template does not compile: {0}")]
    Template(#[from] minijinja::Error),
    #[error("web: the browser client is broken: {0}")]
    Module(#[from] assets::BadImport),
}

/// Everything a handler needs; cheap to clone (all shared).
#[derive(Clone)]
pub(crate) struct AppState {
    pub config: Arc<Config>,
    /// One pooled client for all proxied requests and readiness checks.
    pub http: reqwest::Client,
    pub templates: Arc<minijinja::Environment<'static>>,
    /// Flips to `true` when the process is asked to stop, so open sockets
    /// can tell the browser to reconnect elsewhere instead of just vanishing.
    pub shutdown: watch::Receiver<bool>,
    /// Every socket relay holds a clone; when all are dropped, `run` knows
    /// the relays have finished (the mini-redis shutdown pattern).
    pub relays_done: mpsc::Sender<()>,
    /// One permit per open socket relay (`Config::max_sockets`): past the cap
    /// an upgrade is refused with 503 instead of running out of descriptors
    /// (mini-redis's connection limit).
    pub sockets: Arc<Semaphore>,
    /// The backend instances, their health and their socket counts.
    pub backends: backends::Backends,
}

impl AppState {
    fn new(
        config: Config,
        shutdown: watch::Receiver<bool>,
        relays_done: mpsc::Sender<()>,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            // Redirects belong to the browser (OIDC hops through them); the
            // proxy must hand a 302 back, not follow it.
            .redirect(reqwest::redirect::Policy::none())
            // An `HTTP_PROXY` in the environment must not reroute internal calls.
            .no_proxy()
            // Not a total timeout: exports and other streamed bodies may
            // legitimately take long. Each read waits at most this long, so
            // a stalled body is cut; `proxy::forward` bounds the wait for
            // the response headers with the same duration.
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(config.upstream_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        assets::check_modules()?;
        Ok(Self {
            sockets: Arc::new(Semaphore::new(config.max_sockets)),
            backends: backends::Backends::new(&config.backend_urls),
            config: Arc::new(config),
            http,
            templates: Arc::new(pages::templates()?),
            shutdown,
            relays_done,
        })
    }
}

/// The whole router, with the shared layers (request ids, tracing, metrics,
/// `/healthz`, `/metrics`).
pub(crate) fn app(state: AppState) -> Router {
    let proxied = Router::new()
        .route("/readyz", get(readyz))
        .route("/v1/ws", get(ws::upgrade))
        // Served here, not proxied: web is what knows every backend.
        .route("/v1/admin/status", get(admin::status))
        .route("/v1/{*rest}", any(proxy::forward))
        .route("/.well-known/{*rest}", any(proxy::forward));
    let router = pages::router().merge(proxied);
    with_common_layers(router.with_state(state), "web")
}

/// Ready when auth and at least one backend instance are ready: a web
/// server that can only show pages whose every action fails should not get
/// traffic. The backends are checked afresh, not read from the last
/// periodic check, so a harness waiting on this sees the truth.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    let (auth, ()) = tokio::join!(
        check_ready(&state.http, &state.config.auth_url),
        state.backends.check_all(&state.http),
    );
    let states = state.backends.states();
    let backend = if state.backends.any_up() {
        Ok(())
    } else {
        Err(format!(
            "no backend instance is ready ({})",
            states
                .iter()
                .map(|(url, _)| url.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    readiness(vec![("auth", auth), ("backend", backend)]).await
}

async fn check_ready(http: &reqwest::Client, base: &str) -> Result<(), String> {
    let res = http
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    match res {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(r) => Err(format!("{base}/readyz answered {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!("{base}/readyz timed out")),
        Err(_) => Err(format!("{base} is not reachable")),
    }
}

/// Serve until Ctrl-C or SIGTERM, then stop accepting, let in-flight
/// requests finish, and close open sockets with 1012 (service restart) so
/// browsers reconnect — to another instance if there is one.
pub async fn run(config: Config) -> Result<(), Error> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (relays_tx, mut relays_rx) = mpsc::channel::<()>(1);
    let (listener, _addr) = bind("web", &config.host, config.port).await?;
    let state = AppState::new(config, shutdown_rx.clone(), relays_tx)?;
    let health = tokio::spawn(
        state
            .backends
            .clone()
            .watch_health(state.http.clone(), shutdown_rx),
    );
    let app = app(state);

    axum::serve(
        confab_core::http::nodelay(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    })
    .await?;

    // Upgraded connections are detached from the HTTP server, so graceful
    // shutdown does not wait for them; wait here (bounded) for the relays to
    // send their close frames. `recv` yields `None` once every relay's sender
    // clone is gone — the last one was dropped together with the router.
    let _ = tokio::time::timeout(Duration::from_secs(5), relays_rx.recv()).await;
    health.abort();
    tracing::info!("web stopped");
    Ok(())
}
