//! Router tests: each builds the real router (as `run` does) and drives it
//! with `tower::ServiceExt::oneshot`, or, where a real socket is needed (the
//! WebSocket relay), serves it on a loopback port next to a stand-in backend.

use crate::{app, pages::CSP, proxy, ws, AppState, Config};
use axum::{
    body::{to_bytes, Body},
    extract::ws::{CloseFrame, Message, WebSocketUpgrade},
    http::{header, HeaderMap, Request, StatusCode},
    response::{AppendHeaders, IntoResponse},
    routing::{any, get},
    Router,
};
use futures::{SinkExt, StreamExt};
use std::{net::SocketAddr, time::Duration};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self as ts, client::IntoClientRequest};
use tower::ServiceExt;

fn config(auth_url: &str, backend_url: &str) -> Config {
    Config {
        host: "127.0.0.1".into(),
        port: 0,
        auth_url: auth_url.into(),
        backend_urls: vec![backend_url.into()],
        upstream_timeout: Duration::from_secs(crate::config::DEFAULT_UPSTREAM_TIMEOUT_SECS),
        max_sockets: crate::config::DEFAULT_MAX_SOCKETS,
    }
}

fn state(auth_url: &str, backend_url: &str) -> AppState {
    state_with(config(auth_url, backend_url))
}

fn state_with(config: Config) -> AppState {
    // The senders are leaked on purpose: a dropped shutdown sender must not
    // look like "stop now" to a relay under test.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    std::mem::forget(shutdown_tx);
    let (relays_tx, _relays_rx) = mpsc::channel(1);
    AppState::new(config, shutdown_rx, relays_tx).unwrap()
}

/// An address nothing listens on: bind a port, then free it.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

async fn serve(router: Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            l,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn get_page(router: Router, path: &str) -> (StatusCode, HeaderMap, String) {
    let res = router
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn pages_render_with_their_test_ids_and_security_headers() {
    let cases: &[(&str, &[&str])] = &[
        ("/", &["cta-signup", "cta-login"]),
        (
            "/signup",
            &[
                "signup-display-name",
                "signup-email",
                "signup-password",
                "signup-submit",
                "form-error",
            ],
        ),
        (
            "/login",
            &[
                "login-email",
                "login-password",
                "login-submit",
                "form-error",
            ],
        ),
        (
            "/app",
            &[
                "new-chat",
                "thread-list",
                "user-display-name",
                "logout",
                "message-list",
                "chat-input",
                "chat-send",
                "connection-status",
                "message-content",
            ],
        ),
        (
            "/app/t/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            &["message-list", "chat-input"],
        ),
        (
            "/settings",
            &[
                "settings-display-name",
                "settings-email",
                "email-change-open",
                "email-new",
                "email-password",
                "email-submit",
                "logout",
            ],
        ),
        (
            "/email/confirm",
            &[
                "email-confirm",
                "email-confirm-submit",
                "email-confirm-message",
            ],
        ),
    ];
    let router = app(state("http://127.0.0.1:9", "http://127.0.0.1:9"));
    for (path, ids) in cases {
        let (status, headers, body) = get_page(router.clone(), path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin", "{path}");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        for id in *ids {
            assert!(
                body.contains(&format!("data-testid=\"{id}\"")),
                "{path} lacks {id}"
            );
        }
        // The CSP forbids inline script; a page that had one would break.
        assert!(!body.contains("<script>"), "{path} has an inline script");
        assert!(!body.contains("style=\""), "{path} has an inline style");
    }
}

#[tokio::test]
async fn the_password_field_is_a_new_password_of_eight_or_more() {
    let (_, _, body) = get_page(app(state("http://x", "http://x")), "/signup").await;
    let input = body
        .split("<input")
        .find(|i| i.contains("data-testid=\"signup-password\""))
        .unwrap();
    for attr in [
        "type=\"password\"",
        "autocomplete=\"new-password\"",
        "minlength=\"8\"",
    ] {
        assert!(input.contains(attr), "missing {attr}");
    }
}

#[tokio::test]
async fn unknown_pages_are_a_404_page() {
    let router = app(state("http://x", "http://x"));
    for path in ["/nope", "/app/t/not%20an%20id", "/static/missing.js"] {
        let (status, headers, _) = get_page(router.clone(), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let (_, headers, body) = get_page(router, "/nope").await;
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("data-testid=\"not-found\""));
}

#[tokio::test]
async fn assets_have_their_types_and_are_cached_by_version() {
    let router = app(state("http://x", "http://x"));
    let version = crate::assets::VERSION.as_str();
    for (file, ty) in [
        ("app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
        ("js/api.js", "text/javascript"),
        ("js/pages/app.js", "text/javascript"),
        ("js/pages/auth.js", "text/javascript"),
        ("js/pages/settings.js", "text/javascript"),
    ] {
        // Bare, and under a version that is not the current one (a page
        // from before a deploy): today's file, revalidated every time.
        for path in [
            format!("/static/{file}"),
            format!("/static/0123456789ab/{file}"),
        ] {
            let (status, headers, _) = get_page(router.clone(), &path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with(ty),
                "{path}"
            );
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
        }

        let versioned = format!("/static/{version}/{file}");
        let (status, headers, _) = get_page(router.clone(), &versioned).await;
        assert_eq!(status, StatusCode::OK, "{versioned}");
        assert!(headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));

        let etag = headers[header::ETAG].clone();
        let res = router
            .clone()
            .oneshot(
                Request::get(format!("/static/{file}"))
                    .header(header::IF_NONE_MATCH, etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    }
    // Pages link the current version, so a deploy changes every asset URL.
    let (_, _, page) = get_page(router.clone(), "/").await;
    assert!(page.contains(&format!("/static/{version}/app.css")));
    assert!(page.contains(&format!("/static/{version}/favicon.svg")));
    // A version with nothing behind it, and a versioned path to nothing.
    for path in [
        format!("/static/{version}/js/missing.js"),
        format!("/static/{version}/js"),
        "/static/js/pages".to_string(),
    ] {
        let (status, _, _) = get_page(router.clone(), &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

/// The `src`/`href` of every `/static/` URL a page links, in order.
fn static_links(html: &str) -> Vec<String> {
    html.split(['"', '\''])
        .filter(|s| s.starts_with("/static/"))
        .map(str::to_owned)
        .collect()
}

/// Load a page's module graph the way a browser does: fetch the entry named
/// by the page's `<script type="module">`, then every import, resolved
/// against the importing module's URL, until nothing new turns up. Every
/// module must be served as current (immutable) JavaScript. Returns the URLs
/// loaded, the entry first.
async fn crawl_modules(router: &Router, page: &str) -> Vec<String> {
    let (_, _, html) = get_page(router.clone(), page).await;
    let entry = html
        .split("<script type=\"module\" src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{page} has no module script"))
        .to_owned();
    let base = reqwest::Url::parse("http://confab.test").unwrap();
    let mut loaded: Vec<String> = Vec::new();
    let mut queue = vec![entry];
    while let Some(url) = queue.pop() {
        if loaded.contains(&url) {
            continue;
        }
        let (status, headers, body) = get_page(router.clone(), &url).await;
        assert_eq!(status, StatusCode::OK, "{page}: {url}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript"),
            "{url}"
        );
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable"),
            "{url} is not the current version: its imports are not cache-busted"
        );
        let here = base.join(&url).unwrap();
        for specifier in crate::assets::imports(&body) {
            queue.push(here.join(specifier).unwrap().path().to_owned());
        }
        loaded.push(url);
    }
    loaded
}

#[tokio::test]
async fn each_page_preloads_exactly_the_modules_its_script_imports() {
    let router = app(state("http://x", "http://x"));
    let version = crate::assets::VERSION.as_str();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "/app",
            "js/pages/app.js",
            &[
                "api.js",
                "account.js",
                "banners.js",
                "chat.js",
                "data.js",
                "outbox.js",
                "plan.js",
                "render.js",
                "socket.js",
                "thread-actions.js",
                "threads.js",
                "util.js",
            ],
        ),
        (
            "/app/t/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "js/pages/app.js",
            &[
                "api.js",
                "account.js",
                "banners.js",
                "chat.js",
                "data.js",
                "outbox.js",
                "plan.js",
                "render.js",
                "socket.js",
                "thread-actions.js",
                "threads.js",
                "util.js",
            ],
        ),
        (
            "/settings",
            "js/pages/settings.js",
            &[
                "api.js",
                "account.js",
                "banners.js",
                "data.js",
                "settings-data.js",
                "sessions.js",
                "identities.js",
                "plan.js",
                "plan-settings.js",
                "email-change.js",
                "util.js",
            ],
        ),
        (
            "/admin",
            "js/pages/admin.js",
            &[
                "admin-audit.js",
                "admin-status.js",
                "admin-users.js",
                "api.js",
                "banners.js",
                "chart.js",
                "util.js",
            ],
        ),
        (
            "/email/confirm",
            "js/pages/email-confirm.js",
            &["api.js", "util.js"],
        ),
        ("/login", "js/pages/auth.js", &["api.js"]),
        ("/signup", "js/pages/auth.js", &["api.js"]),
    ];
    let mut used = std::collections::BTreeSet::new();
    for (page, entry, modules) in cases {
        let loaded = crawl_modules(&router, page).await;
        assert_eq!(loaded[0], format!("/static/{version}/{entry}"), "{page}");
        let mut imported: Vec<String> = loaded[1..].to_vec();
        imported.sort();
        let mut expected: Vec<String> = modules
            .iter()
            .map(|m| format!("/static/{version}/js/{m}"))
            .collect();
        expected.sort();
        assert_eq!(imported, expected, "{page} loads other modules");

        // The page asks for the whole graph up front, and nothing else.
        let (_, _, html) = get_page(router.clone(), page).await;
        let mut preloaded: Vec<String> = html
            .split("<link rel=\"modulepreload\" href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect();
        preloaded.sort();
        assert_eq!(preloaded, expected, "{page} preloads");
        // Every static URL the page links is served.
        for link in static_links(&html) {
            let (status, _, _) = get_page(router.clone(), &link).await;
            assert_eq!(status, StatusCode::OK, "{page} links {link}");
        }
        used.extend(loaded);
    }
    // Every embedded module belongs to some page.
    let (_, _, auth) = get_page(router.clone(), "/login").await;
    assert!(!auth.contains("socket.js"), "the auth pages load the chat");
    for module in [
        "util.js",
        "api.js",
        "banners.js",
        "account.js",
        "socket.js",
        "outbox.js",
        "render.js",
        "threads.js",
        "chat.js",
        "pages/app.js",
        "pages/auth.js",
        "pages/settings.js",
        "pages/email-confirm.js",
        "email-change.js",
    ] {
        assert!(
            used.contains(&format!("/static/{version}/js/{module}")),
            "no page loads {module}"
        );
    }
    // The landing and 404 pages need no script.
    for page in ["/", "/nope"] {
        let (_, _, html) = get_page(router.clone(), page).await;
        assert!(!html.contains("<script"), "{page} loads a script");
    }
}

#[tokio::test]
async fn a_down_backend_is_a_502_with_a_json_error() {
    let down = dead_url().await;
    let res = app(state(&down, &down))
        .oneshot(Request::get("/v1/threads").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let body: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert_eq!(
        body["error"]["message"],
        "The chat service is not reachable right now. Try again in a moment."
    );
}

#[tokio::test]
async fn readyz_fails_while_an_upstream_is_down() {
    let down = dead_url().await;
    let res = app(state(&down, &down))
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn paths_route_to_the_service_that_owns_them() {
    use proxy::Upstream::*;
    assert_eq!(proxy::Upstream::for_path("/v1/auth/login"), Auth);
    assert_eq!(proxy::Upstream::for_path("/.well-known/jwks.json"), Auth);
    assert_eq!(proxy::Upstream::for_path("/v1/threads"), Backend);
    // A prefix match on "auth" alone would send this to the wrong service.
    assert_eq!(proxy::Upstream::for_path("/v1/authors"), Backend);
}

#[test]
fn hop_by_hop_headers_stay_behind_and_forwarding_headers_are_added() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, "chat.example.com".parse().unwrap());
    h.insert(
        header::CONNECTION,
        "keep-alive, x-secret-hop".parse().unwrap(),
    );
    h.insert("x-secret-hop", "1".parse().unwrap());
    h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
    h.insert(header::COOKIE, "refresh=abc".parse().unwrap());
    h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let out = proxy::upstream_request_headers(&h, Some("10.0.0.7".parse().unwrap()));
    assert!(out.get(header::HOST).is_none());
    assert!(out.get(header::CONNECTION).is_none());
    assert!(out.get("x-secret-hop").is_none());
    assert!(out.get(header::TRANSFER_ENCODING).is_none());
    assert_eq!(out[header::COOKIE], "refresh=abc");
    assert_eq!(out["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
    assert_eq!(out["x-forwarded-host"], "chat.example.com");
    assert_eq!(out["x-forwarded-proto"], "http");
}

/// A stand-in upstream that reports what it received and sets two cookies.
fn echo_upstream() -> Router {
    Router::new().route(
        "/{*rest}",
        any(|req: Request<Body>| async move {
            let (parts, body) = req.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            let h = |n: &str| {
                parts
                    .headers
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            let json = serde_json::json!({
                "method": parts.method.as_str(),
                "uri": parts.uri.to_string(),
                "body": String::from_utf8_lossy(&body),
                "request_id": h("x-request-id"),
                "forwarded_host": h("x-forwarded-host"),
                "forwarded_for": h("x-forwarded-for"),
                "authorization": h("authorization"),
            });
            (
                StatusCode::CREATED,
                AppendHeaders([
                    (header::SET_COOKIE, "a=1; HttpOnly"),
                    (header::SET_COOKIE, "b=2; HttpOnly"),
                ]),
                axum::Json(json),
            )
        }),
    )
}

#[tokio::test]
async fn requests_are_forwarded_with_body_cookies_and_request_id() {
    let auth = serve(echo_upstream()).await;
    let backend = serve(echo_upstream()).await;
    let router = app(state(
        &format!("http://{auth}"),
        &format!("http://{backend}"),
    ));

    let res = router
        .clone()
        .oneshot(
            Request::post("/v1/auth/login?next=%2Fapp")
                .header(header::HOST, "chat.example.com")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, "9")
                .header("x-request-id", "req-123")
                .body(Body::from("{\"a\":\"b\"}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let cookies: Vec<_> = res.headers().get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1; HttpOnly", "b=2; HttpOnly"]);
    assert_eq!(res.headers()["x-request-id"], "req-123");
    let seen: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/v1/auth/login?next=%2Fapp");
    assert_eq!(seen["body"], "{\"a\":\"b\"}");
    assert_eq!(seen["request_id"], "req-123");
    assert_eq!(seen["forwarded_host"], "chat.example.com");

    // No id from the browser: one is made here and crosses to the backend.
    let res = router
        .oneshot(
            Request::get("/v1/threads")
                .header(header::AUTHORIZATION, "Bearer t")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert!(!id.is_empty());
    assert_eq!(seen["request_id"], id);
    assert_eq!(seen["authorization"], "Bearer t");
    assert_eq!(seen["uri"], "/v1/threads");
}

#[test]
fn only_this_sites_own_pages_may_open_a_socket() {
    let h = |origin: Option<&str>, host: &str| {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            m.insert(header::ORIGIN, o.parse().unwrap());
        }
        m
    };
    assert!(ws::same_origin(&h(
        Some("http://localhost:3000"),
        "localhost:3000"
    )));
    assert!(ws::same_origin(&h(
        Some("https://Chat.Example.com"),
        "chat.example.com"
    )));
    assert!(!ws::same_origin(&h(
        Some("http://evil.example"),
        "localhost:3000"
    )));
    assert!(!ws::same_origin(&h(
        Some("http://localhost:3001"),
        "localhost:3000"
    )));
    assert!(!ws::same_origin(&h(Some("null"), "localhost:3000")));
    assert!(!ws::same_origin(&h(None, "localhost:3000")));
}

#[tokio::test]
async fn a_socket_from_a_foreign_origin_is_refused() {
    let res = app(state("http://x", "http://x"))
        .oneshot(
            Request::get("/v1/ws")
                .header(header::HOST, "localhost:3000")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_VERSION, "13")
                .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

/// A stand-in backend socket: echoes text, answers "expire" by closing with
/// 4001 (as the real one does when a token lapses), "burst N" with N frames
/// and a 4009 close written together (as the real one writes queued
/// deltas), and reports the request id and origin it was opened with.
fn ws_backend() -> Router {
    Router::new().route(
        "/v1/ws",
        get(|upgrade: WebSocketUpgrade, headers: HeaderMap| async move {
            let request_id = headers
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let origin = headers.get(header::ORIGIN).is_some();
            upgrade
                .on_upgrade(move |mut socket| async move {
                    while let Some(Ok(msg)) = socket.recv().await {
                        match msg {
                            Message::Text(t) if t.as_str() == "expire" => {
                                let _ = socket
                                    .send(Message::Close(Some(CloseFrame {
                                        code: 4001,
                                        reason: "token expired".into(),
                                    })))
                                    .await;
                                break;
                            }
                            Message::Text(t) if t.as_str().starts_with("burst ") => {
                                let n: usize = t.as_str()["burst ".len()..].parse().unwrap();
                                for i in 0..n {
                                    socket
                                        .feed(Message::Text(i.to_string().into()))
                                        .await
                                        .unwrap();
                                }
                                let close = CloseFrame {
                                    code: 4009,
                                    reason: "reconnect and resume".into(),
                                };
                                let _ = socket.feed(Message::Close(Some(close))).await;
                                let _ = socket.flush().await;
                                break;
                            }
                            Message::Text(t) if t.as_str() == "who" => {
                                let reply = format!("{request_id}|origin={origin}");
                                let _ = socket.send(Message::Text(reply.into())).await;
                            }
                            Message::Text(t) => {
                                let _ = socket.send(Message::Text(t)).await;
                            }
                            Message::Close(_) => break,
                            _ => {}
                        }
                    }
                })
                .into_response()
        }),
    )
}

async fn open_socket(
    web: SocketAddr,
    origin: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{web}/v1/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert(header::ORIGIN, origin.parse().unwrap());
    req.headers_mut()
        .insert("x-request-id", "ws-req-7".parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    socket
}

async fn next_non_ping(
    s: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> ts::Message {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("no error");
        if !matches!(m, ts::Message::Ping(_) | ts::Message::Pong(_)) {
            return m;
        }
    }
}

/// A socket through web's relay to [`ws_backend`], from web's own origin.
async fn through_relay(
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let backend = serve(ws_backend()).await;
    let web = serve(app(state(
        "http://127.0.0.1:9",
        &format!("http://{backend}"),
    )))
    .await;
    open_socket(web, &format!("http://{web}")).await
}

/// The next frame, which must be a close: its code and reason.
async fn next_close(
    s: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (u16, String) {
    match next_non_ping(s).await {
        ts::Message::Close(Some(f)) => (u16::from(f.code), f.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_and_close_codes_cross_the_relay() {
    let mut s = through_relay().await;
    s.send(ts::Message::text("hello")).await.unwrap();
    assert_eq!(next_non_ping(&mut s).await, ts::Message::text("hello"));

    // The request id crosses; the browser's Origin does not.
    s.send(ts::Message::text("who")).await.unwrap();
    assert_eq!(
        next_non_ping(&mut s).await,
        ts::Message::text("ws-req-7|origin=false")
    );

    s.send(ts::Message::text("expire")).await.unwrap();
    assert_eq!(
        next_close(&mut s).await,
        (4001, "token expired".to_string())
    );
}

/// Frames the backend writes together are relayed in bursts: all of them,
/// in order, and the close written with them still arrives after them,
/// with its code.
#[tokio::test]
async fn a_burst_of_frames_and_its_close_cross_the_relay_in_order() {
    let mut s = through_relay().await;
    s.send(ts::Message::text("burst 1000")).await.unwrap();
    for i in 0..1000 {
        assert_eq!(
            next_non_ping(&mut s).await,
            ts::Message::text(i.to_string())
        );
    }
    assert_eq!(
        next_close(&mut s).await,
        (4009, "reconnect and resume".to_string())
    );
}

#[tokio::test]
async fn an_oversized_browser_frame_closes_with_1009() {
    let mut s = through_relay().await;
    let big = "x".repeat(ws::MAX_FROM_BROWSER + 1);
    s.send(ts::Message::text(big)).await.unwrap();
    match next_non_ping(&mut s).await {
        ts::Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1009),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_socket_to_a_down_backend_is_a_502() {
    let down = dead_url().await;
    let web = serve(app(state(&down, &down))).await;
    let mut req = format!("ws://{web}/v1/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert(header::ORIGIN, format!("http://{web}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(ts::Error::Http(res)) => assert_eq!(res.status(), StatusCode::BAD_GATEWAY),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

/// A stand-in upstream that accepts requests and never answers: `/v1/hang`
/// sends no headers, `/v1/stall` sends headers and a first chunk, then nothing.
fn hung_upstream() -> Router {
    Router::new()
        .route("/v1/hang", get(std::future::pending::<()>))
        .route(
            "/v1/stall",
            get(|| async {
                let first = futures::stream::once(async {
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"partial"))
                });
                Body::from_stream(first.chain(futures::stream::pending()))
            }),
        )
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_is_a_504_with_a_json_error() {
    let backend = serve(hung_upstream()).await;
    let mut c = config("http://127.0.0.1:9", &format!("http://{backend}"));
    c.upstream_timeout = Duration::from_millis(300);
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        app(state_with(c)).oneshot(Request::get("/v1/hang").body(Body::empty()).unwrap()),
    )
    .await
    .expect("the proxy gives up by itself")
    .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert_eq!(
        body["error"]["message"],
        "The chat service is taking too long to answer. Try again in a moment."
    );
}

#[tokio::test]
async fn a_streamed_body_that_stalls_is_cut() {
    let backend = serve(hung_upstream()).await;
    let mut c = config("http://127.0.0.1:9", &format!("http://{backend}"));
    c.upstream_timeout = Duration::from_millis(300);
    let res = app(state_with(c))
        .oneshot(Request::get("/v1/stall").body(Body::empty()).unwrap())
        .await
        .unwrap();
    // The headers arrived in time, so the answer is the upstream's; its body
    // ends in an error once no byte came for the timeout.
    assert_eq!(res.status(), StatusCode::OK);
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        to_bytes(res.into_body(), usize::MAX),
    )
    .await
    .expect("the proxy cuts the body by itself");
    assert!(body.is_err(), "a stalled body must not end as if complete");
}

#[tokio::test]
async fn sockets_past_the_cap_are_refused_with_a_503_until_one_closes() {
    let backend = serve(ws_backend()).await;
    let mut c = config("http://127.0.0.1:9", &format!("http://{backend}"));
    c.max_sockets = 1;
    let state = state_with(c);
    let web = serve(app(state.clone())).await;
    let origin = format!("http://{web}");

    let mut first = open_socket(web, &origin).await;
    first.send(ts::Message::text("hello")).await.unwrap();
    assert_eq!(next_non_ping(&mut first).await, ts::Message::text("hello"));

    let mut req = format!("ws://{web}/v1/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert(header::ORIGIN, origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(ts::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(res.headers()[header::RETRY_AFTER], "5");
            let body: serde_json::Value =
                serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_sockets");
            assert_eq!(
                body["error"]["message"],
                "This server has too many chat connections open right now. Try again in a moment."
            );
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    // The refused upgrade never reached the backend: the one relay is still fine.
    first.send(ts::Message::text("still here")).await.unwrap();
    assert_eq!(
        next_non_ping(&mut first).await,
        ts::Message::text("still here")
    );

    // Closing the first gives its slot back (waited for, not slept on) and
    // the next socket is accepted.
    first.close(None).await.unwrap();
    drop(first);
    let slot = tokio::time::timeout(
        Duration::from_secs(5),
        state.sockets.clone().acquire_owned(),
    )
    .await
    .expect("the closed relay frees its slot")
    .unwrap();
    drop(slot);
    let mut again = open_socket(web, &origin).await;
    again.send(ts::Message::text("hi again")).await.unwrap();
    assert_eq!(
        next_non_ping(&mut again).await,
        ts::Message::text("hi again")
    );
}

#[tokio::test]
async fn sockets_and_requests_spread_over_live_backends_and_skip_a_dead_one() {
    // Two live instances that say which one they are, and one dead one.
    let named = |name: &'static str| {
        Router::new()
            .route(
                "/v1/ws",
                get(move |upgrade: WebSocketUpgrade| async move {
                    upgrade.on_upgrade(move |mut socket| async move {
                        let _ = socket.send(Message::Text(name.into())).await;
                        while let Some(Ok(m)) = socket.recv().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                }),
            )
            .route("/v1/who", get(move || async move { name }))
    };
    let a = format!("http://{}", serve(named("a")).await);
    let b = format!("http://{}", serve(named("b")).await);
    let dead = dead_url().await;
    let mut config = config("http://127.0.0.1:9", &a);
    config.backend_urls = vec![dead.clone(), a, b];
    let web = serve(app(state_with(config))).await;

    // Four sockets: none fails (the dead instance is skipped), and they are
    // spread evenly over the two live ones.
    let mut sockets = Vec::new();
    let mut landed = Vec::new();
    for _ in 0..4 {
        let mut s = open_socket(web, &format!("http://{web}")).await;
        match next_non_ping(&mut s).await {
            ts::Message::Text(t) => landed.push(t.to_string()),
            other => panic!("expected the instance's name, got {other:?}"),
        }
        sockets.push(s);
    }
    landed.sort();
    assert_eq!(landed, vec!["a", "a", "b", "b"]);

    // Requests take turns over the live instances and never fail on the dead one.
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..6 {
        let res = http
            .get(format!("http://{web}/v1/who"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        answers.push(res.text().await.unwrap());
    }
    assert!(
        answers.contains(&"a".to_string()) && answers.contains(&"b".to_string()),
        "{answers:?}"
    );
}
