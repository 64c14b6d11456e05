//! What the admin console's status page costs the services while it is
//! open (issue 16: under 1 % CPU). Starts auth, two backends and web from
//! the given binary the way the end-to-end harness does, signs the admin in
//! with headless Chromium and opens `/admin` (which polls
//! `GET /v1/admin/status` every 2 s); reads the CPU time (utime + stime,
//! `/proc/<pid>/stat`) of every service process over `seconds` with the
//! page open, then over `seconds` with the tab on `about:blank`.
//! Results go in docs/benchmarks.md.
//!
//! `cargo build --release -p confab -p confab-testkit --bin confab --bin bench-admin-status && target/release/bench-admin-status target/release/confab 60`

// Test-support binary: a panic with a message is how it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_testkit::{browser::by_testid, eventually, Build, Harness, Options};
use std::{collections::BTreeMap, time::Duration};

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; 3 is the first after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn snapshot(procs: &[(String, u32)]) -> BTreeMap<String, u64> {
    procs
        .iter()
        .map(|(name, pid)| (name.clone(), cpu_ticks(*pid)))
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let build = confab_testkit::bench::build(args.next());
    let secs: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(build, secs));
}

async fn run(build: Build, secs: u64) {
    let h = Harness::start_with(
        build,
        "bench_admin_status",
        Options {
            backends: 2,
            ..Options::default()
        },
    )
    .await;
    let admin = h.sign_up().await;
    let mut procs = vec![
        ("auth".to_string(), h.pid("auth").unwrap()),
        ("web".to_string(), h.pid("web").unwrap()),
    ];
    for (i, pid) in h.pids("backend").into_iter().enumerate() {
        procs.push((format!("backend {}", i + 1), pid));
    }
    let ticks = clock_ticks();
    let browser = h.browser().await;
    let (h, admin, procs) = (&h, &admin, &procs);
    browser
        .run(|c| async move {
            confab_testkit::browser::log_in(&c, &h.web_url, admin).await;
            c.goto(&format!("{}/admin", h.web_url)).await.unwrap();
            by_testid(&c, "admin-content").await;
            eventually(10, "the first reading", || async {
                let t = by_testid(&c, "status-updated").await.text().await.ok()?;
                t.starts_with("Live").then_some(())
            })
            .await;
            let window = Duration::from_secs(secs);
            let measure = |label: &'static str| async move {
                let before = snapshot(procs);
                let started = confab_core::clock::instant();
                confab_core::clock::sleep(window).await;
                let elapsed = started.elapsed().as_secs_f64();
                let after = snapshot(procs);
                (label, elapsed, before, after)
            };
            let open = measure("page open").await;
            c.goto("about:blank").await.unwrap();
            let closed = measure("page closed").await;
            println!(
                "CPU of each service over {secs} s (utime+stime from /proc/<pid>/stat, {ticks} ticks/s), the status page polling every 2 s vs. no page:"
            );
            println!("| process | page open | page closed | difference |");
            println!("|---|---|---|---|");
            let pct = |r: &(&str, f64, BTreeMap<String, u64>, BTreeMap<String, u64>), name: &str| {
                (r.3[name] - r.2[name]) as f64 / ticks / r.1 * 100.0
            };
            let (mut total_open, mut total_closed) = (0.0, 0.0);
            for (name, _) in procs {
                let (o, z) = (pct(&open, name), pct(&closed, name));
                total_open += o;
                total_closed += z;
                println!("| {name} | {o:.2} % | {z:.2} % | {:+.2} % |", o - z);
            }
            println!(
                "| all services | {total_open:.2} % | {total_closed:.2} % | {:+.2} % |",
                total_open - total_closed
            );
            let _ = (open.0, closed.0);
        })
        .await;
}
