//! Event pipeline benchmark: profile updates through the real auth API at a
//! fixed rate, each one a `user.updated` in auth's outbox → relay → Redis
//! stream → the backend's consumer group → applied. Propagation is measured
//! per event, from the outbox row's time (the change's commit) to the
//! backend's `processed_events` row (applied), both read from the databases
//! of one machine; throughput is events applied per second over the run.
//! Results go in docs/benchmarks.md.
//!
//! `cargo build --release -p confab && cargo run --release -p confab-testkit --bin bench-events -- target/release/confab 500 10`
//! (updates per second, seconds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_testkit::{Agent, Harness, Options};
use serde_json::json;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let build = confab_testkit::bench::build(args.next());
    let rate: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(500);
    let secs: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let h = Harness::start_with(
        build,
        "bench_events",
        Options {
            agent: Agent::Offline,
            env: vec![
                ("CONFAB_LOG".into(), "warn".into()),
                // `CONFAB_EVENT_PARALLELISM=1 bench-events …` measures the
                // consumer applying one event at a time.
                (
                    "CONFAB_EVENT_PARALLELISM".into(),
                    std::env::var("CONFAB_EVENT_PARALLELISM").unwrap_or_else(|_| "8".into()),
                ),
            ],
            ..Default::default()
        },
    )
    .await;
    // Several users, so updates of different users interleave as in life.
    let mut users = Vec::new();
    for _ in 0..20 {
        users.push(h.sign_up().await);
    }
    h.events_settled().await;

    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let url = format!("{}/v1/auth/me", h.auth_url);
    let start = confab_core::clock::instant();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        confab_core::clock::sleep_until(start + interval * i as u32).await;
        let user = &users[(i as usize) % users.len()];
        let (http, url, token) = (h.http.clone(), url.clone(), user.access_token.clone());
        tasks.spawn(async move {
            let r = http
                .patch(&url)
                .bearer_auth(token)
                .json(&json!({"display_name": format!("Bench {i}")}))
                .send()
                .await
                .expect("update");
            assert!(r.status().is_success(), "update failed: {}", r.status());
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let sent_in = start.elapsed();
    h.events_settled().await;

    let created: Vec<(uuid::Uuid, f64)> = sqlx::query_as(
        "SELECT id, (extract(epoch FROM created_at) * 1000)::float8 FROM outbox
         WHERE type = 'user.updated'",
    )
    .fetch_all(&h.dbs.auth)
    .await
    .unwrap();
    let applied: std::collections::HashMap<uuid::Uuid, f64> = sqlx::query_as(
        "SELECT event_id, (extract(epoch FROM processed_at) * 1000)::float8 FROM processed_events
         WHERE event_type = 'user.updated'",
    )
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(created.len() as u64, total, "every update wrote its event");
    assert_eq!(applied.len() as u64, total, "every event was applied once");
    let mut lat: Vec<f64> = created.iter().map(|(id, at)| applied[id] - at).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let first = created.iter().map(|c| c.1).fold(f64::MAX, f64::min);
    let last = applied.values().copied().fold(f64::MIN, f64::max);
    println!(
        "events: {total} user.updated at {rate}/s offered ({:.0}/s sent); applied {:.0} events/s; \
         propagation outbox→applied p50={:.1}ms p99={:.1}ms max={:.1}ms",
        total as f64 / sent_in.as_secs_f64(),
        total as f64 / ((last - first) / 1000.0),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1],
    );
}
