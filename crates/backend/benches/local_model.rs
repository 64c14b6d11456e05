//! The local model's speed and memory on this machine: load time, time to
//! first token, tokens per second for one stream and for four at once, and
//! resident memory with the model loaded. Not a test: it prints figures
//! (docs/benchmarks.md keeps them).
//!
//!     ./scripts/deps.sh --model
//!     cargo bench -p confab-backend --bench local_model
//!
//! `CONFAB_BENCH_MODEL=/path.gguf` measures another file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops at its first failure"
)]

use confab_backend::agent::{
    local::{Local, LocalConfig, Model, ModelSource, DEFAULT_MODEL_FILE, DEFAULT_WORKERS},
    ChatMessage, Provider, Role,
};
use futures::StreamExt;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Confab's own system prompt, so the prompt is the size the chat sends.
const SYSTEM: &str = "You are Confab, a helpful assistant. Answer clearly and concisely. \
Use Markdown for structure when it helps.";

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn chat(question: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: Role::System,
            content: SYSTEM.into(),
        },
        ChatMessage {
            role: Role::User,
            content: question.into(),
        },
    ]
}

fn config(path: &Path, max_tokens: usize, workers: usize) -> LocalConfig {
    LocalConfig {
        model: ModelSource::Chosen(path.to_path_buf()),
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(1),
        max_tokens,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        workers,
        queue: 8,
    }
}

struct Run {
    first_token: Duration,
    total: Duration,
}

async fn run(local: &Local, question: &str) -> Run {
    let started = confab_core::clock::instant();
    let mut stream = local.stream(chat(question)).await.expect("stream");
    let mut first_token = None;
    while let Some(piece) = stream.next().await {
        piece.expect("no error");
        first_token.get_or_insert_with(|| started.elapsed());
    }
    Run {
        first_token: first_token.unwrap_or_default(),
        total: started.elapsed(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let path = std::env::var("CONFAB_BENCH_MODEL").map_or_else(
        |_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../.confab/models")
                .join(DEFAULT_MODEL_FILE)
        },
        PathBuf::from,
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "model: {}  cores: {cores}  CANDLE_NUM_THREADS: {}  workers: {DEFAULT_WORKERS} (the default) unless named",
        path.display(),
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "unset (a thread per core)".into())
    );
    let rss_before = rss_mib("VmRSS:");

    let started = confab_core::clock::instant();
    let model = Model::load(&ModelSource::Chosen(path.clone())).expect("load the model");
    let mut loads = vec![ms(started.elapsed())];
    let rss_loaded = rss_mib("VmRSS:");

    // Time to first token: a short question with Confab's system prompt.
    let local = Local::start(&model, config(&path, 16, DEFAULT_WORKERS)).unwrap();
    run(&local, "Hi!").await; // warm-up
    let ttft: Vec<f64> = {
        let mut v = Vec::new();
        for q in [
            "What is the capital of France?",
            "How do I boil an egg?",
            "Name three colours.",
            "What is Rust?",
            "Tell me a joke.",
            "Why is the sky blue?",
            "What is 2 + 2?",
            "Give me a tip for sleeping well.",
            "Who wrote Hamlet?",
            "What is a noun?",
        ] {
            v.push(ms(run(&local, q).await.first_token));
        }
        v
    };
    let mut sorted = ttft.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "time to first token: median {:.0} ms, worst {:.0} ms (10 questions)",
        median(ttft),
        sorted[sorted.len() - 1]
    );
    drop(local);

    // One stream: a long answer, tokens counted exactly by the workers.
    let tokens = 256;
    let local = Local::start(&model, config(&path, tokens, DEFAULT_WORKERS)).unwrap();
    let before = local.generated_tokens();
    let r = run(
        &local,
        "Write a long story about a dragon who learns to cook.",
    )
    .await;
    let n = local.generated_tokens() - before;
    let decode = r.total - r.first_token;
    println!(
        "one stream: {n} tokens in {:.2} s = {:.1} tokens/s ({:.1} tokens/s after the first)",
        r.total.as_secs_f64(),
        n as f64 / r.total.as_secs_f64(),
        (n - 1) as f64 / decode.as_secs_f64()
    );
    drop(local);

    // Four streams at once, with 1, 2 and 4 workers.
    for workers in [1, 2, 4] {
        let local = Local::start(&model, config(&path, tokens, workers)).unwrap();
        let before = local.generated_tokens();
        let started = confab_core::clock::instant();
        let runs = futures::future::join_all(
            [
                "Write a long story about a dragon who learns to cook.",
                "Write a long story about a robot who plants a garden.",
                "Write a long story about a cat who sails the sea.",
                "Write a long story about a girl who builds a bridge.",
            ]
            .map(|q| run(&local, q)),
        )
        .await;
        let wall = started.elapsed();
        let n = local.generated_tokens() - before;
        let firsts: Vec<f64> = runs.iter().map(|r| ms(r.first_token)).collect();
        println!(
            "four streams, {workers} worker(s): {n} tokens in {:.2} s = {:.1} tokens/s in all, \
             {:.1} per stream; first tokens {:.0}..{:.0} ms",
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64() / 4.0,
            firsts.iter().cloned().fold(f64::MAX, f64::min),
            firsts.iter().cloned().fold(0.0, f64::max),
        );
    }

    let peak = rss_mib("VmHWM:");
    for _ in 0..2 {
        let started = confab_core::clock::instant();
        drop(Model::load(&ModelSource::Chosen(path.clone())).expect("load the model"));
        loads.push(ms(started.elapsed()));
    }
    println!(
        "load: {:.0} ms (median of 3 loads; the first {:.0} ms)  context: {} tokens",
        median(loads.clone()),
        loads[0],
        model.context()
    );
    println!(
        "memory: {rss_before:.0} MiB resident before loading, {rss_loaded:.0} MiB with the model \
         loaded, {peak:.0} MiB peak while generating (4 streams at once)"
    );
}
