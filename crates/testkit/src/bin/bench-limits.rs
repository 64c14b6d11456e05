//! Rate-limit benchmark: decisions per second and the latency each one adds,
//! against a real Redis (`CONFAB_TEST_REDIS_URL`, default local), with the
//! code the services run: the backend's admission script
//! (`plans::limiter::Limiter`: GCRA rate + sliding-window quota +
//! concurrency slot, one `EVALSHA`) and auth's two-key GCRA throttle.
//! Results go in docs/benchmarks.md.
//!
//! `cargo run --release -p confab-testkit --bin bench-limits -- 20000 16`
//! (decisions per run, concurrent callers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_backend::plans::{limiter::Limiter, Plans};
use confab_core::{
    clock::{self, Clock},
    config::Env,
    ids::UserId,
    keys::Keys,
    ratelimit::{Rate, Throttle},
};
use confab_testkit::bench;
use std::{sync::Arc, time::Duration};

fn report(what: &str, lat: Vec<Duration>, wall: Duration) {
    let mut ms: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{what:<52} {:>8.0} decisions/s   p50 {:>6.3} ms   p99 {:>6.3} ms   max {:>6.3} ms",
        ms.len() as f64 / wall.as_secs_f64(),
        bench::percentile(&ms, 0.50),
        bench::percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let callers: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(16);
    let url =
        std::env::var("CONFAB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = confab_core::redis_conn::connect(&url).await.expect("Redis");
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    let keys = Keys::new(prefix.clone());
    let mut env = Env::new();
    // Limits high enough that every decision is a full one (all three
    // checked, all three written): the refused path does less.
    env.set("CONFAB_PLAN_FREE_RATE_PER_MINUTE", "100000000");
    env.set("CONFAB_PLAN_FREE_DAILY_MESSAGES", "100000000");
    env.set("CONFAB_PLAN_FREE_CONCURRENT", "100000000");
    let plans = Arc::new(Plans::from_env(&env).unwrap());
    let limiter = Limiter::new(redis.clone(), keys.clone(), plans.clone());
    let plan = plans.get("free").clone();
    let clock = Clock::system();
    let users: Vec<UserId> = (0..500).map(|_| UserId::new()).collect();
    println!(
        "{n} decisions per run, {} users, Redis {url}, load average {}",
        users.len(),
        bench::load_average()
    );

    // Warm-up: the script is loaded (EVALSHA from then on).
    for u in users.iter().take(50) {
        limiter
            .admit(*u, &plan, clock.now().timestamp_millis())
            .await
            .unwrap();
    }

    // One caller: the latency a message pays.
    let mut lat = Vec::with_capacity(n);
    let start = clock::instant();
    for i in 0..n {
        let t = clock::instant();
        limiter
            .admit(
                users[i % users.len()],
                &plan,
                clock.now().timestamp_millis(),
            )
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    report(
        "admission (rate+quota+slot), 1 caller",
        lat,
        start.elapsed(),
    );

    // Many callers at once: what one backend instance can decide.
    let start = clock::instant();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let limiter = limiter.clone();
            let plan = plan.clone();
            let users = users.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (c..n).step_by(callers) {
                    let t = clock::instant();
                    limiter
                        .admit(
                            users[i % users.len()],
                            &plan,
                            clock.now().timestamp_millis(),
                        )
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    report(
        &format!("admission (rate+quota+slot), {callers} callers"),
        lat,
        start.elapsed(),
    );

    // Auth's throttle: two GCRA keys per attempt.
    let throttle = Throttle::new(redis.clone());
    let mut lat = Vec::with_capacity(n);
    let start = clock::instant();
    for i in 0..n {
        let limits = [
            (
                keys.throttle("login:ip", &format!("10.0.{}.{}", i % 200, i % 250)),
                Rate::per_minute(100_000_000),
            ),
            (
                keys.throttle("login:account", &format!("{}", i % 500)),
                Rate::per_minute(100_000_000),
            ),
        ];
        let t = clock::instant();
        throttle
            .check(&limits, clock.now().timestamp_millis())
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    report(
        "auth throttle (IP + account GCRA), 1 caller",
        lat,
        start.elapsed(),
    );

    // A Redis round trip for comparison (PING).
    let mut conn = redis.clone();
    let mut lat = Vec::with_capacity(n);
    let start = clock::instant();
    for _ in 0..n {
        let t = clock::instant();
        let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        lat.push(t.elapsed());
    }
    report(
        "plain PING round trip, 1 caller (baseline)",
        lat,
        start.elapsed(),
    );

    // Clean up the benchmark's keys.
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !found.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(found)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
}
