//! Start-up benchmark: how long until auth, backend and web all answer
//! `/readyz`, measured the way the end-to-end harness starts them (fresh
//! databases cloned from the migrated templates, real processes on free
//! ports). Results go in docs/benchmarks.md.
//!
//! `cargo build --release -p confab && cargo run --release -p confab-testkit --bin bench-startup -- target/release/confab 10`

// Test code: a panic with a message is how a test fails, so `unwrap` and
// `expect` are fine here (clippy's allow-unwrap-in-tests does not cover
// integration-test crates and test-support libraries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_testkit::{Agent, Harness, Options};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let build = confab_testkit::bench::build(args.next());
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = confab_core::clock::instant();
        let h = Harness::start_with(
            build,
            &format!("bench_startup_{i}"),
            Options {
                agent: Agent::Offline,
                ..Default::default()
            },
        )
        .await;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        drop(h);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let median = samples[samples.len() / 2];
    println!(
        "three services ready (incl. database clone): runs={runs} min={:.0}ms median={median:.0}ms max={:.0}ms",
        samples[0],
        samples[samples.len() - 1]
    );
}
