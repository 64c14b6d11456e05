//! Export benchmark: throughput (messages per second) and the backend's peak
//! memory while one user's whole history is exported, for 10,000 and
//! 100,000 messages (or the sizes given). The history is written straight
//! into the backend's database (100 messages per thread, ~230 bytes each),
//! then exported through the real HTTP API of a real backend process; the
//! client reads the body as it streams. Results go in docs/benchmarks.md.
//!
//! `cargo build --release -p confab && cargo run --release -p confab-testkit --bin bench-export -- target/release/confab 10000 100000`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_testkit::{bench::proc_kb, Agent, Harness, Options};
use futures::StreamExt;

const PER_THREAD: i64 = 100;

async fn seed(h: &Harness, user: &str, messages: i64) {
    let threads = (messages / PER_THREAD).max(1);
    let ws: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM workspaces WHERE owner_id = $1::uuid AND is_default")
            .bind(user)
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    sqlx::query(
        "WITH t AS (
           INSERT INTO threads (id, workspace_id, user_id, title, last_seq)
           SELECT gen_random_uuid(), $1, $2::uuid, 'Benchmark conversation ' || g, $4
           FROM generate_series(1, $3) g RETURNING id)
         INSERT INTO messages (id, thread_id, user_id, role, content, status, seq, model, provider)
         SELECT gen_random_uuid(), t.id, $2::uuid,
                CASE WHEN s % 2 = 1 THEN 'user' ELSE 'assistant' END,
                repeat('The quick brown fox jumps over the lazy dog. ', 5) || s,
                'complete', s,
                CASE WHEN s % 2 = 0 THEN 'bench-model' END, CASE WHEN s % 2 = 0 THEN 'openai' END
         FROM t, generate_series(1, $4) s",
    )
    .bind(ws)
    .bind(user)
    .bind(threads)
    .bind(PER_THREAD)
    .execute(&h.dbs.backend)
    .await
    .unwrap();
    sqlx::query("ANALYZE")
        .execute(&h.dbs.backend)
        .await
        .unwrap();
}

async fn export(h: &Harness, token: &str, format: &str) -> (f64, u64) {
    let start = confab_core::clock::instant();
    let resp = h
        .http
        .get(format!("{}/v1/export?format={format}", h.backend_url))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        bytes += chunk.expect("export body").len() as u64;
    }
    (start.elapsed().as_secs_f64(), bytes)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let build = confab_testkit::bench::build(args.next());
    let mut sizes: Vec<i64> = args.filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    for n in sizes {
        let h = Harness::start_with(
            build,
            &format!("bench_export_{n}"),
            Options {
                agent: Agent::Offline,
                env: vec![("CONFAB_LOG".into(), "warn".into())],
                ..Default::default()
            },
        )
        .await;
        let user = h.sign_up().await;
        let (s, _) = h
            .get(
                &format!("{}/v1/me", h.backend_url),
                Some(&user.access_token),
            )
            .await;
        assert_eq!(s, 200);
        seed(&h, &user.id, n).await;
        let pid = h.pid("backend").expect("backend pid");
        // Warm up (connections, code paths) on a tiny export, then measure.
        let (s, _) = h
            .get(
                &format!("{}/v1/threads", h.backend_url),
                Some(&user.access_token),
            )
            .await;
        assert_eq!(s, 200);
        let rss_before = proc_kb(pid, "VmRSS");
        for format in ["json", "markdown", "zip"] {
            let (secs, bytes) = export(&h, &user.access_token, format).await;
            let peak = proc_kb(pid, "VmHWM");
            println!(
                "export {format:<8} messages={n:>7} time={secs:>6.2}s throughput={:>8.0} msgs/s size={:>6.1} MB \
                 backend RSS before={:.1} MB peak so far={:.1} MB (+{:.1} MB)",
                n as f64 / secs,
                bytes as f64 / 1e6,
                rss_before as f64 / 1024.0,
                peak as f64 / 1024.0,
                peak.saturating_sub(rss_before) as f64 / 1024.0,
            );
        }
        drop(h);
    }
}
