//! The auth service over real HTTP, against a real PostgreSQL (a fresh
//! database per test) and Redis (a fresh key prefix per test).
//!
//! Needs PostgreSQL at `CONFAB_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432`) and Redis at `CONFAB_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`).

// Test code: a panic with a message is how a test fails (clippy's
// allow-unwrap-in-tests does not reach helpers in integration-test crates).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_auth::{Config, MIGRATOR};
use confab_core::{
    clock::{self, ManualClock},
    config::Env,
    keys::Keys,
    tokens::Verifier,
};
use redis::aio::ConnectionManager;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::oneshot;

// ---------------------------------------------------------------- harness

struct TestApp {
    url: String,
    http: reqwest::Client,
    config: Config,
    redis: ConnectionManager,
    stop: Option<oneshot::Sender<()>>,
}

fn postgres_url() -> String {
    std::env::var("CONFAB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn redis_url() -> String {
    std::env::var("CONFAB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn test_config(extra: &[(&str, &str)]) -> Config {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut env = Env::new();
    env.set(
        "CONFAB_AUTH_DATABASE_URL",
        confab_core::db::with_database(&postgres_url(), &format!("confab_auth_test_{id}")),
    );
    env.set("CONFAB_REDIS_URL", redis_url());
    env.set("CONFAB_REDIS_PREFIX", format!("test:{id}:"));
    env.set("CONFAB_HOST", "127.0.0.1");
    env.set("CONFAB_AUTH_PORT", "0");
    env.set("CONFAB_ISSUER", "confab-test");
    // Cheap hashing keeps the suite fast; the cost is not what is tested.
    env.set("CONFAB_ARGON2_M_KIB", "256");
    env.set("CONFAB_ARGON2_T", "1");
    // High enough that no test but the throttle's own is throttled.
    env.set("CONFAB_AUTH_THROTTLE_IP_PER_MINUTE", "100000");
    env.set("CONFAB_AUTH_THROTTLE_ACCOUNT_PER_MINUTE", "100000");
    for (k, v) in extra {
        env.set(k, *v);
    }
    Config::from_env(&env).expect("test configuration")
}

async fn spawn_app(extra: &[(&str, &str)]) -> TestApp {
    spawn_with(test_config(extra)).await
}

async fn spawn_with(config: Config) -> TestApp {
    let app = confab_auth::build(config.clone())
        .await
        .expect("auth starts");
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let redis = confab_core::redis_conn::connect(&config.common.redis_url)
        .await
        .unwrap();
    TestApp {
        url,
        http: reqwest::Client::new(),
        config,
        redis,
        stop: Some(stop),
    }
}

/// Drops the test's database and Redis keys even when the test panicked.
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let db_url = self.config.database_url.clone();
        let redis_url = self.config.common.redis_url.clone();
        let prefix = self.config.common.redis_prefix.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                let name = confab_core::db::database_name(&db_url).unwrap();
                let admin = confab_core::db::with_database(&db_url, "postgres");
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        confab_core::db::quote_ident(&name)
                    );
                    let _ = sqlx::query(&sql).execute(&mut conn).await;
                }
                if let Ok(client) = redis::Client::open(redis_url) {
                    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{prefix}*"))
                            .query_async(&mut conn)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _ = redis::cmd("DEL")
                                .arg(keys)
                                .query_async::<()>(&mut conn)
                                .await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// A response with its status, JSON body and refresh cookie.
struct Reply {
    status: StatusCode,
    body: Value,
    set_cookie: Option<String>,
    headers: header::HeaderMap,
}

impl Reply {
    async fn from(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let set_cookie = headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
        };
        Reply {
            status,
            body,
            set_cookie,
            headers,
        }
    }

    fn access(&self) -> &str {
        self.body["access_token"].as_str().expect("access_token")
    }

    fn refresh(&self) -> &str {
        self.body["refresh_token"].as_str().expect("refresh_token")
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }

    /// The value of the `confab_refresh` cookie set by this response.
    fn cookie(&self) -> String {
        let c = self.set_cookie.as_deref().expect("a Set-Cookie header");
        c.strip_prefix("confab_refresh=")
            .and_then(|rest| rest.split(';').next())
            .expect("a confab_refresh cookie")
            .to_string()
    }
}

impl TestApp {
    async fn post(&self, path: &str, body: Value) -> Reply {
        Reply::from(
            self.http
                .post(format!("{}{path}", self.url))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn post_raw(&self, path: &str, content_type: Option<&str>, body: &'static str) -> Reply {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        Reply::from(req.send().await.unwrap()).await
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        Reply::from(req.send().await.unwrap()).await
    }

    async fn sign_up(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/signup",
            json!({"email": email, "password": password, "display_name": "Alice"}),
        )
        .await
    }

    async fn log_in(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn me(&self, access: &str) -> Reply {
        self.get("/v1/auth/me", Some(access)).await
    }

    async fn refresh_with_body(&self, refresh: &str) -> Reply {
        self.post("/v1/auth/refresh", json!({"refresh_token": refresh}))
            .await
    }

    async fn refresh_with_cookie(&self, cookie: &str) -> Reply {
        Reply::from(
            self.http
                .post(format!("{}/v1/auth/refresh", self.url))
                .header(header::COOKIE, format!("confab_refresh={cookie}"))
                // What a browser adds to a fetch from one of our pages.
                .header("sec-fetch-site", "same-origin")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn log_out(&self, access: Option<&str>, cookie: Option<&str>) -> Reply {
        let mut req = self.http.post(format!("{}/v1/auth/logout", self.url));
        if let Some(token) = access {
            req = req.bearer_auth(token);
        }
        if let Some(c) = cookie {
            req = req
                .header(header::COOKIE, format!("confab_refresh={c}"))
                .header("sec-fetch-site", "same-origin");
        }
        Reply::from(req.send().await.unwrap()).await
    }

    fn keys(&self) -> Keys {
        Keys::new(self.config.common.redis_prefix.clone())
    }

    async fn is_revoked_in_redis(&self, access: &str) -> bool {
        let sid = claims_of(access)["sid"].as_str().unwrap().parse().unwrap();
        confab_core::revocation::is_revoked(&self.redis, &self.keys(), sid)
            .await
            .unwrap()
    }

    /// Event types on the stream, waiting up to 3 s for `want` to appear.
    async fn wait_for_events(&self, want: &[&str]) -> Vec<Value> {
        let mut conn = self.redis.clone();
        let deadline = clock::instant() + Duration::from_secs(3);
        loop {
            let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.keys().events_stream())
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            let events: Vec<Value> = entries
                .ids
                .iter()
                .map(|e| {
                    let payload: String = e.get("payload").unwrap();
                    let id: String = e.get("id").unwrap();
                    let kind: String = e.get("type").unwrap();
                    let v: Value = serde_json::from_str(&payload).unwrap();
                    assert_eq!(v["id"], id.as_str());
                    assert_eq!(v["type"], kind.as_str());
                    v
                })
                .collect();
            let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
            // Every wanted type at least as many times as it is listed.
            let have = |w: &&str| types.iter().filter(|t| *t == w).count();
            let need = |w: &&str| want.iter().filter(|x| *x == w).count();
            if want.iter().all(|w| have(w) >= need(w)) {
                return events;
            }
            assert!(
                clock::instant() < deadline,
                "events {want:?} not relayed; stream has {types:?}"
            );
            clock::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn sign_up_use_refresh_and_log_out() {
    let app = spawn_app(&[]).await;

    let alice = app.sign_up("  Alice@Example.com ", "correct horse").await;
    assert_eq!(alice.status, StatusCode::CREATED, "{}", alice.body);
    assert_eq!(alice.body["user"]["email"], "alice@example.com");
    assert_eq!(alice.body["user"]["display_name"], "Alice");
    assert_eq!(alice.body["token_type"], "Bearer");
    assert_eq!(alice.body["expires_in"], 900);
    assert_eq!(alice.headers[header::CACHE_CONTROL], "no-store");
    let cookie = alice.set_cookie.clone().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/v1/auth"), "{cookie}");
    assert!(
        cookie.contains(&format!("Max-Age={}", 30 * 24 * 3600)),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert_eq!(alice.cookie(), alice.refresh());

    // The token verifies the way the backend verifies it: through the JWKS.
    let verifier =
        Verifier::new(format!("{}/.well-known/jwks.json", app.url), "confab-test").unwrap();
    let claims = verifier.verify(alice.access()).await.unwrap();
    assert_eq!(claims.email, "alice@example.com");
    assert_eq!(claims.name, "Alice");
    assert_eq!(claims.sub.to_string(), alice.body["user"]["id"]);
    // Verified again (remembered), and a token that differs in one byte of
    // its signature is still checked in full, and refused.
    assert_eq!(verifier.verify(alice.access()).await.unwrap(), claims);
    let mut forged = alice.access().as_bytes().to_vec();
    let i = alice.access().rfind('.').unwrap() + 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(verifier.verify(&forged).await.is_err());
    assert_eq!(verifier.verify(alice.access()).await.unwrap(), claims);

    let me = app.me(alice.access()).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["email"], "alice@example.com");
    assert!(me.body["created_at"].is_string());

    // Same address, other spelling.
    let again = app.sign_up("ALICE@example.COM", "another password").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "email_taken");
    assert_eq!(again.body["error"]["field"], "email");

    // Wrong password and unknown account are indistinguishable.
    let wrong = app.log_in("alice@example.com", "wrong password").await;
    let unknown = app.log_in("nobody@example.com", "correct horse").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body,
        json!({"error":{"code":"invalid_credentials","message":"Email or password is incorrect."}})
    );
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.body, wrong.body);

    let laptop = app.log_in(" alice@EXAMPLE.com", "correct horse").await;
    assert_eq!(laptop.status, StatusCode::OK, "{}", laptop.body);
    assert_ne!(
        claims_of(laptop.access())["sid"],
        claims_of(alice.access())["sid"]
    );

    // Browser-style refresh: empty body, cookie only.
    let refreshed = app.refresh_with_cookie(&alice.cookie()).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_ne!(refreshed.refresh(), alice.refresh());
    assert_eq!(refreshed.cookie(), refreshed.refresh());
    assert_eq!(
        claims_of(refreshed.access())["sid"],
        claims_of(alice.access())["sid"]
    );
    assert_eq!(app.me(refreshed.access()).await.status, StatusCode::OK);

    // Logging out the first session leaves the laptop signed in.
    let out = app.log_out(Some(refreshed.access()), None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.set_cookie.as_deref().unwrap().contains("Max-Age=0"));
    assert!(app.is_revoked_in_redis(refreshed.access()).await);
    let me = app.me(refreshed.access()).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "session_revoked");
    let r = app.refresh_with_body(refreshed.refresh()).await;
    assert_eq!(r.code(), "session_revoked");
    assert_eq!(app.me(laptop.access()).await.status, StatusCode::OK);

    // A browser whose access token is gone logs out with its cookie.
    let out = app.log_out(None, Some(&laptop.cookie())).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(app.me(laptop.access()).await.code(), "session_revoked");

    let no_credentials = app.log_out(None, None).await;
    assert_eq!(no_credentials.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_credentials.code(), "missing_token");
    let anonymous = app.get("/v1/auth/me", None).await;
    assert_eq!(anonymous.code(), "missing_token");
    assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(
        app.get("/v1/auth/me", Some("not.a.jwt")).await.code(),
        "invalid_token"
    );

    let events = app
        .wait_for_events(&["user.registered", "session.revoked", "session.revoked"])
        .await;
    let registered = events
        .iter()
        .find(|e| e["type"] == "user.registered")
        .unwrap();
    assert_eq!(registered["data"]["email"], "alice@example.com");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "session.revoked")
            .count(),
        2
    );
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_session() {
    // Time is moved, not waited for: the service reads this clock.
    let time = ManualClock::starting_now();
    let mut config = test_config(&[("CONFAB_REFRESH_GRACE_SECS", "10")]);
    config.clock = time.clock();
    let app = spawn_with(config).await;
    let first = app.sign_up("mallory@example.com", "correct horse").await;
    let second = app.refresh_with_body(first.refresh()).await;
    assert_eq!(second.status, StatusCode::OK);

    // Up to the end of the grace window the rotated token is still honoured…
    time.advance(Duration::from_secs(10));
    let tab = app.refresh_with_body(first.refresh()).await;
    assert_eq!(tab.status, StatusCode::OK, "{:?}", tab.body);

    // …one second past it, it counts as stolen.
    time.advance(Duration::from_secs(1));
    let replay = app.refresh_with_body(first.refresh()).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.code(), "refresh_token_reused");

    // Both holders are out: the rotated successor and its access token.
    assert_eq!(
        app.refresh_with_body(second.refresh()).await.code(),
        "session_revoked"
    );
    assert_eq!(app.me(second.access()).await.code(), "session_revoked");
    assert!(app.is_revoked_in_redis(second.access()).await);

    let bogus = app.refresh_with_body("definitely-not-a-token").await;
    assert_eq!(bogus.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bogus.code(), "invalid_refresh_token");
    let nothing = app.post_raw("/v1/auth/refresh", None, "").await;
    assert_eq!(nothing.code(), "invalid_refresh_token");
    app.wait_for_events(&["session.revoked"]).await;
}

#[tokio::test]
async fn a_refresh_token_expires_after_its_lifetime_and_each_rotation_restarts_it() {
    let time = ManualClock::starting_now();
    let mut config = test_config(&[("CONFAB_REFRESH_TOKEN_TTL_SECS", "3600")]);
    config.clock = time.clock();
    let app = spawn_with(config).await;
    let first = app.sign_up("erin@example.com", "correct horse").await;

    // Rotating 59 minutes in gives a token that lives a full hour from then.
    time.advance(Duration::from_secs(59 * 60));
    let second = app.refresh_with_body(first.refresh()).await;
    assert_eq!(second.status, StatusCode::OK);
    time.advance(Duration::from_secs(59 * 60));
    let third = app.refresh_with_body(second.refresh()).await;
    assert_eq!(third.status, StatusCode::OK);

    // An hour and a second without use: refused, and nothing was rotated.
    time.advance(Duration::from_secs(3601));
    let late = app.refresh_with_body(third.refresh()).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    assert_eq!(late.code(), "invalid_refresh_token");
    assert!(late.body.get("refresh_token").is_none());
}

#[tokio::test]
async fn two_tabs_refreshing_at_once_stay_signed_in() {
    let app = spawn_app(&[]).await;
    let tab = app.sign_up("bob@example.com", "correct horse").await;
    let cookie = tab.cookie();
    let (a, b) = tokio::join!(
        app.refresh_with_cookie(&cookie),
        app.refresh_with_cookie(&cookie)
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    // One chain: the later of the two got the same successor, not a fork.
    assert_eq!(a.refresh(), b.refresh());
    for reply in [&a, &b] {
        assert_eq!(app.me(reply.access()).await.status, StatusCode::OK);
    }
    let next = app.refresh_with_body(a.refresh()).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!(app.me(next.access()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_specific_errors() {
    let app = spawn_app(&[]).await;
    let signup = "/v1/auth/signup";

    for (body, content_type) in [
        ("{not json", Some("application/json")),
        (r#"{"email":"a@example.com"}"#, Some("application/json")),
        (
            r#"{"email":5,"password":"correct horse"}"#,
            Some("application/json"),
        ),
        (
            r#"{"email":"a@example.com","password":"correct horse"}"#,
            None,
        ),
    ] {
        let r = app.post_raw(signup, content_type, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.code(), "malformed_request", "{body}");
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }

    for (body, field) in [
        (
            json!({"email": "not an email", "password": "correct horse"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "          "}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "x".repeat(257)}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "correct horse", "display_name": "  "}),
            "display_name",
        ),
        (
            json!({"email": "a@example.com", "password": "correct horse", "display_name": "n".repeat(81)}),
            "display_name",
        ),
    ] {
        let r = app.post(signup, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }

    let carol = app
        .post(
            signup,
            json!({"email": "Carol@Example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(carol.status, StatusCode::CREATED);
    assert_eq!(carol.body["user"]["display_name"], "carol");

    let missing = app.get("/v1/nope", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");

    let wrong_method = app.get(signup, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");

    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["migrations"], "ok");
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.body["openapi"], "3.1.0");
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.body["keys"][0]["kty"], "OKP");
}

#[tokio::test]
async fn concurrent_starts_create_one_signing_key() {
    let config = test_config(&[]);
    confab_auth::migrate(&config).await.unwrap();
    let pool = confab_core::db::connect(&config.database_url, 8)
        .await
        .unwrap();
    let starts = (0..6).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            confab_auth::store::signing_keys::ensure_active(
                &pool,
                confab_auth::domain::NewSigningKey::generate,
            )
            .await
            .unwrap()
        })
    });
    let mut created = 0;
    for start in starts {
        created += usize::from(start.await.unwrap());
    }
    assert_eq!(created, 1);
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_keys WHERE active")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(active, 1);
    // Migrating again is a no-op.
    MIGRATOR.run(&pool).await.unwrap();
    pool.close().await;

    let name = confab_core::db::database_name(&config.database_url).unwrap();
    let admin = confab_core::db::with_database(&config.database_url, "postgres");
    let admin = confab_core::db::connect(&admin, 1).await.unwrap();
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        confab_core::db::quote_ident(&name)
    ))
    .execute(&admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn log_in_sign_up_and_refresh_are_throttled_per_account_and_per_ip() {
    // Time is moved, not waited for: the throttle reads this clock.
    let time = ManualClock::starting_now();
    let mut config = test_config(&[
        ("CONFAB_AUTH_THROTTLE_ACCOUNT_PER_MINUTE", "3"),
        ("CONFAB_AUTH_THROTTLE_IP_PER_MINUTE", "6"),
    ]);
    config.clock = time.clock();
    let app = spawn_with(config).await;
    let up = app.sign_up("ivy@example.com", "correct horse").await;
    assert_eq!(up.status, StatusCode::CREATED);

    // Per account: three tries a minute, then 429 before any password check.
    for _ in 0..3 {
        assert_eq!(
            app.log_in("ivy@example.com", "wrong horse").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let refused = app.log_in("IVY@example.com", "correct horse").await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.code(), "too_many_attempts");
    assert_eq!(refused.headers[header::RETRY_AFTER], "20");
    assert_eq!(refused.body["error"]["retry_after"], 20);

    // Per IP: other accounts from this address, up to six a minute (the
    // refused attempt counted nowhere).
    for i in 0..3 {
        let r = app.log_in(&format!("x{i}@example.com"), "whatever1").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let by_ip = app.log_in("x9@example.com", "whatever1").await;
    assert_eq!(by_ip.status, StatusCode::TOO_MANY_REQUESTS);

    // Twenty seconds later one more try of Ivy's is allowed again.
    time.advance(Duration::from_secs(20));
    let back = app.log_in("ivy@example.com", "correct horse").await;
    assert_eq!(back.status, StatusCode::OK, "{:?}", back.body);
    assert_eq!(
        app.log_in("ivy@example.com", "correct horse").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Refresh: per presented token and per IP.
    for _ in 0..3 {
        assert_eq!(
            app.refresh_with_body("not-a-token").await.code(),
            "invalid_refresh_token"
        );
    }
    assert_eq!(
        app.refresh_with_body("not-a-token").await.code(),
        "too_many_attempts"
    );
    assert_eq!(
        app.refresh_with_body(back.refresh()).await.status,
        StatusCode::OK
    );

    // Sign-up: per address too (a full burst of six again, 20 s after Ivy's).
    for i in 0..6 {
        app.sign_up(&format!("new{i}@example.com"), "correct horse")
            .await;
    }
    assert_eq!(
        app.sign_up("new9@example.com", "correct horse")
            .await
            .code(),
        "too_many_attempts"
    );
}
