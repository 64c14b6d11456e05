//! Session benchmarks (issue 7), against the real release binaries started
//! the way the end-to-end harness starts them. Bounded in count and time,
//! loopback only. Results go in docs/benchmarks.md.
//!
//! `cargo build --release -p confab -p confab-testkit && target/release/bench-sessions target/release/confab`
//!
//! 1. Access-token verification (EdDSA, JWKS-cached keys) alone, and with
//!    the Redis revocation check every request makes, on one core (a
//!    current-thread runtime, one request after the other).
//! 2. Refreshes per second: concurrent clients, each rotating its own
//!    session's refresh token over HTTP, for a fixed time.
//! 3. Sign-out → socket closed on the *other* backend instance: a socket on
//!    backend B, `POST /v1/auth/logout` to auth, time until B's close frame
//!    arrives; p50/p99 over 200 runs.

// Test-support binary: a panic with a message is how it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_core::{keys::Keys, revocation, tokens::Verifier};
use confab_testkit::{bench::percentile, Agent, Build, Harness, Options, Socket, TestUser};
use serde_json::{json, Value};
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let build = confab_testkit::bench::build(args.next());
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    // The services are separate processes; this process's one thread is the
    // "one core" of the verification figure.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(build, runs));
}

/// Log `user` in once more (a session of its own): the login's body.
async fn log_in(h: &Harness, user: &TestUser) -> Value {
    let (status, body) = h
        .post(
            &format!("{}/v1/auth/login", h.auth_url),
            None,
            json!({"email": user.email, "password": user.password}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A new session's refresh token.
async fn new_session(h: &Harness, user: &TestUser) -> String {
    log_in(h, user).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn run(build: Build, runs: usize) {
    let mut h = Harness::start_with(
        build,
        "bench_sessions",
        Options {
            agent: Agent::Offline,
            ..Default::default()
        },
    )
    .await;
    let user = h.sign_up().await;

    // 1. Verification, and verification + revocation check.
    let verifier = Verifier::new(
        format!("{}/.well-known/jwks.json", h.auth_url),
        "confab".to_string(),
    )
    .expect("verifier");
    verifier.refresh().await.expect("JWKS");
    let keys = Keys::new(h.redis_prefix.clone());
    let token = user.access_token.clone();
    let n = 20_000;
    let started = confab_core::clock::instant();
    for _ in 0..n {
        verifier.verify(&token).await.expect("valid token");
    }
    let verify_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let started = confab_core::clock::instant();
    for _ in 0..n {
        let claims = verifier.verify(&token).await.expect("valid token");
        let revoked = revocation::is_revoked(&h.redis, &keys, claims.sid)
            .await
            .expect("Redis");
        assert!(!revoked);
    }
    let both_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "verification of a token seen before (remembered): {verify_us:.1} µs/token ({:.0}/s); with the revocation check: {both_us:.1} µs ({:.0}/s) on one core",
        1e6 / verify_us,
        1e6 / both_us
    );
    // A token's first verification (its signature checked): 2,000 distinct
    // tokens, from refreshing the session again and again.
    let fresh = 2_000;
    let mut tokens = Vec::with_capacity(fresh);
    let mut refresh = new_session(&h, &user).await;
    for _ in 0..fresh {
        let (status, body) = h
            .post(
                &format!("{}/v1/auth/refresh", h.auth_url),
                None,
                json!({"refresh_token": refresh}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        refresh = body["refresh_token"].as_str().unwrap().to_string();
        tokens.push(body["access_token"].as_str().unwrap().to_string());
    }
    let started = confab_core::clock::instant();
    for t in &tokens {
        verifier.verify(t).await.expect("valid token");
    }
    let first_us = started.elapsed().as_secs_f64() * 1e6 / fresh as f64;
    println!(
        "first verification of a token (EdDSA signature checked): {first_us:.1} µs/token ({:.0}/s) on one core",
        1e6 / first_us
    );

    // 2. Refreshes per second: 16 clients, each its own session, 5 s.
    let clients = 16;
    let window = Duration::from_secs(5);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut refresh = new_session(&h, &user).await;
        let http = h.http.clone();
        let url = format!("{}/v1/auth/refresh", h.auth_url);
        tasks.push(tokio::spawn(async move {
            let until = confab_core::clock::instant() + window;
            let mut done = 0u64;
            while confab_core::clock::instant() < until {
                let r = http
                    .post(&url)
                    .json(&json!({"refresh_token": refresh}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                refresh = v["refresh_token"].as_str().unwrap().to_string();
                done += 1;
            }
            done
        }));
    }
    let started = confab_core::clock::instant();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "refreshes: {total} in {secs:.1} s with {clients} clients = {:.0}/s",
        total as f64 / secs
    );

    // 3. Sign-out on auth → socket closed on the other backend instance.
    let other = h.add_backend().await;
    let ws = other.replacen("http://", "ws://", 1) + "/v1/ws";
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let body = log_in(&h, &user).await;
        let access = body["access_token"].as_str().unwrap().to_string();
        let mut socket = Socket::connect(&ws, None).await;
        socket.authenticate(&access).await;
        let started = confab_core::clock::instant();
        assert_eq!(h.log_out(&access).await, 204);
        let logged_out = started.elapsed();
        assert_eq!(socket.expect_close().await, 4003);
        let closed = started.elapsed();
        samples.push((closed.as_secs_f64() * 1e3, logged_out.as_secs_f64() * 1e3));
    }
    let mut close: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mut after_response: Vec<f64> = samples.iter().map(|s| (s.0 - s.1).max(0.0)).collect();
    close.sort_by(|a, b| a.partial_cmp(b).unwrap());
    after_response.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "logout sent → socket on the other backend closed: runs={runs} p50={:.2} ms p99={:.2} ms max={:.2} ms (of which after logout's 204: p50={:.2} ms p99={:.2} ms)",
        percentile(&close, 0.5),
        percentile(&close, 0.99),
        close[close.len() - 1],
        percentile(&after_response, 0.5),
        percentile(&after_response, 0.99),
    );
}
