//! Load generator (issue 15): a client speaking the real chat protocol, with
//! tokens from the real auth service, against the real release binaries
//! started the way the end-to-end harness starts them, and the LLM stand-in
//! as the model. Bounded in count and time, loopback only. Results go in
//! docs/benchmarks.md.
//!
//! `cargo build --release -p confab -p confab-testkit --bin confab --bin bench-load`, then
//! `target/release/bench-load <mode> target/release/confab [args]` (inside
//! `scripts/bench.sh`, which provides PostgreSQL and Redis like the tests):
//!
//! - `ttft <confab> <streams> <rounds>`: time to first token added over the
//!   model. Each of `streams` users (one socket each, through web, as a
//!   browser) sends `rounds` messages one after the other; the stand-in
//!   streams 20 tokens at once, so the model itself adds nothing. Per
//!   message: send → first `delta` at the client, split into send → request
//!   at the model and request at the model → first delta.
//! - `idle <confab> <sockets> <per-process>`: authenticated sockets held idle,
//!   directly on one backend (a web relay holds two descriptors per socket
//!   and a process may hold 20,000), by worker processes of this binary,
//!   each from its own loopback source address; the backend's resident
//!   memory before, with them open (per socket), and after they closed.
//! - `active <confab> <users> <seconds> <period-ms>`: `users` sockets through
//!   web, each sending a message every `period-ms` (staggered); ack and done
//!   latency per message.
//! - `auth-mem <confab> <sign-ups> <log-ins> <concurrency>`: auth's resident
//!   memory after sign-ups and log-ins with the real Argon2 parameters.
//! - `fanout <confab> <users> <sockets-per-user> <messages-per-user>`: two
//!   backend instances; each user's sockets alternate between them
//!   (directly, as web's relay would spread them), and each user sends its
//!   messages one after the other from one socket (users alternate which
//!   instance that is). Every frame of a reply goes to every socket of its
//!   user, half of them through the other instance (Redis). Delivered
//!   frames per second over all sockets, and send → delta latency at the
//!   sending instance's sockets and at the other instance's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use confab_testkit::{
    bench::{self, proc_kb, summary},
    Agent, Build, Harness, Options, Reply,
};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{
    io::{BufRead, Write},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};
use tokio::net::TcpSocket;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::WebSocketConfig, Message},
    MaybeTlsStream, WebSocketStream,
};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long any one awaited frame may take before the run fails.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

fn now() -> Instant {
    confab_core::clock::instant()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode.as_str() {
        "idle-worker" => rt.block_on(idle_worker(rest)),
        "ttft" | "idle" | "active" | "auth-mem" | "fanout" => {
            let mut rest = rest.into_iter();
            let build = bench::build(rest.next());
            let nums: Vec<u64> = rest.map(|a| a.parse().expect("a number")).collect();
            println!("load average before: {}", bench::load_average());
            match mode.as_str() {
                "ttft" => rt.block_on(ttft(build, arg(&nums, 0, 1), arg(&nums, 1, 200))),
                "idle" => rt.block_on(idle(build, arg(&nums, 0, 5_000), arg(&nums, 1, 9_000))),
                "active" => rt.block_on(active(
                    build,
                    arg(&nums, 0, 1_000),
                    arg(&nums, 1, 20),
                    arg(&nums, 2, 2_000),
                )),
                "fanout" => rt.block_on(fanout(
                    build,
                    arg(&nums, 0, 100),
                    arg(&nums, 1, 4),
                    arg(&nums, 2, 20),
                )),
                _ => rt.block_on(auth_mem(
                    build,
                    arg(&nums, 0, 120),
                    arg(&nums, 1, 1_600),
                    arg(&nums, 2, 8),
                )),
            }
            println!("load average after: {}", bench::load_average());
        }
        other => panic!("unknown mode {other:?}: ttft, idle, active, auth-mem or fanout"),
    }
}

fn arg(nums: &[u64], i: usize, default: u64) -> u64 {
    nums.get(i).copied().unwrap_or(default)
}

/// Cheap password hashing for the benchmarks that only need many users
/// (Argon2's cost is measured by `auth-mem`, with the real parameters).
fn cheap_hashing() -> Vec<(String, String)> {
    vec![
        ("CONFAB_ARGON2_M_KIB".into(), "64".into()),
        ("CONFAB_ARGON2_T".into(), "1".into()),
        ("CONFAB_LOG".into(), "warn".into()),
    ]
}

/// The backend's socket caps (per process, per user) raised to fit the run.
fn socket_caps(total: u64, per_user: u64) -> Vec<(String, String)> {
    vec![
        ("CONFAB_WS_MAX_SOCKETS".into(), total.to_string()),
        (
            "CONFAB_WS_MAX_SOCKETS_PER_USER".into(),
            per_user.to_string(),
        ),
    ]
}

/// A socket as a browser opens one: `TCP_NODELAY` (browsers set it), an
/// `Origin` when going through web, small buffers (thousands are held).
async fn connect(url: &str, origin: Option<&str>, from: Option<IpAddr>) -> Ws {
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let addr: SocketAddr = {
        let host = req.uri().host().unwrap().to_string();
        let port = req.uri().port_u16().unwrap();
        format!("{host}:{port}").parse().unwrap()
    };
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        req,
        MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await
    .unwrap();
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(FRAME_TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended")
            .expect("socket error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("socket closed: {c:?}"),
            _ => {}
        }
    }
}

async fn authenticate(ws: &mut Ws, token: &str) {
    send(ws, json!({"type": "auth", "token": token})).await;
    let ready = recv(ws).await;
    assert_eq!(ready["type"], "ready", "{ready}");
}

async fn tokens(h: &Harness, n: u64) -> Vec<String> {
    let mut out = Vec::with_capacity(n as usize);
    let mut set = tokio::task::JoinSet::new();
    for chunk in 0..n.div_ceil(100) {
        let count = (n - chunk * 100).min(100);
        for _ in 0..count {
            let h = (h.http.clone(), h.auth_url.clone());
            set.spawn(async move {
                let email = confab_testkit::user::unique_email("bench");
                let r = h
                    .0
                    .post(format!("{}/v1/auth/signup", h.1))
                    .json(&json!({"email": email, "password": "correct horse battery staple", "display_name": "Bench"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let v: Value = r.json().await.unwrap();
                v["access_token"].as_str().unwrap().to_string()
            });
        }
        while let Some(t) = set.join_next().await {
            out.push(t.unwrap());
        }
    }
    out
}

/// Twenty tokens at once: the model adds (almost) no time of its own.
fn twenty_tokens() -> Reply {
    Reply::Chunks {
        chunks: (0..20).map(|i| format!("tok{i} ")).collect(),
        delay: Duration::ZERO,
    }
}

async fn start(build: Build, name: &str, env: Vec<(String, String)>) -> Harness {
    start_n(build, name, env, 1).await
}

async fn start_n(build: Build, name: &str, env: Vec<(String, String)>, backends: usize) -> Harness {
    let h = Harness::start_with(
        build,
        name,
        Options {
            agent: Agent::StandIn,
            env,
            backends,
            ..Default::default()
        },
    )
    .await;
    h.llm.as_ref().unwrap().answer_with(twenty_tokens());
    h
}

// ---------------------------------------------------------------- ttft

async fn ttft(build: Build, streams: u64, rounds: u64) {
    let h = start(build, &format!("bench_ttft_{streams}"), cheap_hashing()).await;
    let tokens = tokens(&h, streams).await;
    let mut sockets = Vec::new();
    for t in &tokens {
        let mut ws = connect(&h.web_ws_url(), Some(&h.web_url), None).await;
        authenticate(&mut ws, t).await;
        sockets.push(ws);
    }
    // One warm-up message per socket (connections, the thread row).
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut ws = ws;
            let mut thread: Option<String> = None;
            let mut samples = Vec::new();
            for r in 0..=rounds {
                let text = format!("stream {i} round {r}");
                let mut frame = json!({"type": "send", "client_msg_id": uuid::Uuid::new_v4().to_string(), "text": text});
                if let Some(t) = &thread {
                    frame["thread_id"] = Value::String(t.clone());
                }
                let sent = now();
                send(&mut ws, frame).await;
                let mut first = None;
                loop {
                    let f = recv(&mut ws).await;
                    match f["type"].as_str() {
                        Some("ack") => thread = f["thread_id"].as_str().map(str::to_owned),
                        Some("delta") if first.is_none() => first = Some(now()),
                        Some("done") => break,
                        Some("error") => panic!("error frame: {f}"),
                        _ => {}
                    }
                }
                if r > 0 {
                    samples.push((text, sent, first.expect("a delta before done")));
                }
            }
            samples
        });
    }
    let mut all = Vec::new();
    while let Some(s) = tasks.join_next().await {
        all.extend(s.unwrap());
    }
    // When each request reached the model, by its text.
    let llm = h.llm.as_ref().unwrap();
    let arrived: std::collections::HashMap<String, Instant> = llm
        .requests()
        .iter()
        .zip(llm.arrivals())
        .filter_map(|(body, at)| {
            let last = body["messages"].as_array()?.last()?["content"].as_str()?;
            Some((last.to_string(), at))
        })
        .collect();
    let (mut total, mut to_model, mut from_model) = (Vec::new(), Vec::new(), Vec::new());
    for (text, sent, first) in &all {
        total.push(ms(*first - *sent));
        if let Some(at) = arrived.get(text) {
            to_model.push(ms(*at - *sent));
            from_model.push(ms(*first - *at));
        }
    }
    println!(
        "ttft streams={streams} rounds={rounds}: send → first delta {}",
        summary(&mut total)
    );
    println!("  send → request at the model {}", summary(&mut to_model));
    println!(
        "  request at the model (its 20 tokens at once) → first delta {}",
        summary(&mut from_model)
    );
}

// ---------------------------------------------------------------- idle

async fn idle(build: Build, sockets: u64, per_process: u64) {
    let h = start(
        build,
        "bench_idle",
        [cheap_hashing(), socket_caps(sockets + 100, sockets + 100)].concat(),
    )
    .await;
    let pid = h.pid("backend").unwrap();
    // Ten sockets per user, as tabs and devices of a few thousand people.
    let users = sockets.div_ceil(10);
    let tokens = tokens(&h, users).await;
    let file = std::env::temp_dir().join(format!("confab-bench-tokens-{}", std::process::id()));
    std::fs::write(&file, tokens.join("\n")).unwrap();
    let ws_url = h.backend_url.replacen("http://", "ws://", 1) + "/v1/ws";
    // Warm the backend's paths (one socket, authenticated, closed).
    {
        let mut ws = connect(&ws_url, None, None).await;
        authenticate(&mut ws, &tokens[0]).await;
        let _ = ws.close(None).await;
    }
    confab_core::clock::sleep(Duration::from_millis(500)).await;
    let before = proc_kb(pid, "VmRSS");
    let started = now();
    let me = std::env::current_exe().unwrap();
    let mut workers = Vec::new();
    let mut left = sockets;
    let mut n = 0u8;
    while left > 0 {
        let count = left.min(per_process);
        left -= count;
        n += 1;
        let from = format!("127.0.0.{}", 10 + n);
        let child = std::process::Command::new(&me)
            .args([
                "idle-worker",
                &ws_url,
                &from,
                &file.display().to_string(),
                &count.to_string(),
                &((n as u64 - 1) * per_process).to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        workers.push(child);
    }
    // Each worker prints one line once all its sockets are ready.
    for w in &mut workers {
        let mut line = String::new();
        std::io::BufReader::new(w.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready"), "worker said {line:?}");
    }
    let opened = started.elapsed();
    let held = h.backend_sockets(0).await;
    assert_eq!(held, sockets, "the backend holds every socket");
    confab_core::clock::sleep(Duration::from_secs(1)).await;
    let with = proc_kb(pid, "VmRSS");
    let peak = proc_kb(pid, "VmHWM");
    // Closing: the workers close their sockets and exit when stdin ends.
    for w in &mut workers {
        drop(w.stdin.take());
    }
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    confab_testkit::eventually(30, "every socket closed", || async {
        (h.backend_sockets(0).await == 0).then_some(())
    })
    .await;
    confab_core::clock::sleep(Duration::from_secs(2)).await;
    let after = proc_kb(pid, "VmRSS");
    // And once it has been idle a while (the allocator returns memory as
    // its threads go idle, not at once).
    confab_core::clock::sleep(Duration::from_secs(8)).await;
    let settled = proc_kb(pid, "VmRSS");
    let _ = std::fs::remove_file(&file);
    println!(
        "idle sockets={sockets} held by the backend (opened and authenticated in {:.1}s): \
         backend RSS before={:.1} MB, with them={:.1} MB (peak {:.1} MB) → {:.1} KB per socket; \
         2 s after all closed={:.1} MB, 10 s after={:.1} MB",
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        with as f64 / 1024.0,
        peak as f64 / 1024.0,
        (with.saturating_sub(before)) as f64 / sockets as f64,
        after as f64 / 1024.0,
        settled as f64 / 1024.0,
    );
}

/// A worker of `idle`: open `count` sockets from `from`, authenticate them
/// with tokens from the file (starting at line `offset`, round robin), say
/// `ready`, hold them until stdin closes, then close them all.
async fn idle_worker(args: Vec<String>) {
    let [url, from, file, count, offset] = <[String; 5]>::try_from(args).unwrap();
    let from: IpAddr = from.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let offset: usize = offset.parse().unwrap();
    let tokens: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let url: &'static str = Box::leak(url.into_boxed_str());
    let mut held = Vec::with_capacity(count);
    // A few hundred handshakes at a time.
    let mut next = 0;
    while next < count {
        let mut set = tokio::task::JoinSet::new();
        for i in next..(next + 200).min(count) {
            let token = tokens[(offset + i) / 10 % tokens.len()].clone();
            set.spawn(async move {
                let mut ws = connect(url, None, Some(from)).await;
                authenticate(&mut ws, &token).await;
                ws
            });
        }
        while let Some(ws) = set.join_next().await {
            held.push(ws.unwrap());
        }
        next = (next + 200).min(count);
    }
    println!("ready {count}");
    std::io::stdout().flush().unwrap();
    // Hold until told (stdin ends), reading nothing: the sockets stay idle.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
    })
    .await
    .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for mut ws in held {
        set.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
        });
    }
    while set.join_next().await.is_some() {}
}

// ---------------------------------------------------------------- active

async fn active(build: Build, users: u64, secs: u64, period_ms: u64) {
    let h = start(
        build,
        &format!("bench_active_{users}"),
        [
            cheap_hashing(),
            vec![("CONFAB_WEB_MAX_SOCKETS".into(), (users + 100).to_string())],
        ]
        .concat(),
    )
    .await;
    let tokens = tokens(&h, users).await;
    let web_ws: &'static str = Box::leak(h.web_ws_url().into_boxed_str());
    let origin: &'static str = Box::leak(h.web_url.clone().into_boxed_str());
    let mut sockets = Vec::new();
    for t in &tokens {
        let mut ws = connect(web_ws, Some(origin), None).await;
        authenticate(&mut ws, t).await;
        sockets.push(ws);
    }
    let period = Duration::from_millis(period_ms);
    let rounds = (secs * 1000 / period_ms).max(1);
    let begin = now() + Duration::from_millis(200);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        // Staggered evenly over one period.
        let offset = period.mul_f64(i as f64 / users as f64);
        tasks.spawn(async move {
            let mut thread: Option<String> = None;
            let (mut acks, mut dones) = (Vec::new(), Vec::new());
            for r in 0..rounds {
                confab_core::clock::sleep_until(begin + offset + period * r as u32).await;
                let mut frame = json!({"type": "send", "client_msg_id": uuid::Uuid::new_v4().to_string(),
                                       "text": format!("user {i} message {r}")});
                if let Some(t) = &thread {
                    frame["thread_id"] = Value::String(t.clone());
                }
                let sent = now();
                send(&mut ws, frame).await;
                loop {
                    let f = recv(&mut ws).await;
                    match f["type"].as_str() {
                        Some("ack") => {
                            acks.push(ms(sent.elapsed()));
                            thread = f["thread_id"].as_str().map(str::to_owned);
                        }
                        Some("done") => {
                            dones.push(ms(sent.elapsed()));
                            break;
                        }
                        Some("error") => panic!("error frame: {f}"),
                        _ => {}
                    }
                }
            }
            (acks, dones)
        });
    }
    let (mut acks, mut dones) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (a, d) = r.unwrap();
        acks.extend(a);
        dones.extend(d);
    }
    let took = begin.elapsed();
    println!(
        "active users={users} one message each per {period_ms} ms for {rounds} rounds ({:.0} messages/s offered, {:.1}s): \
         ack {}; done {}",
        users as f64 * 1000.0 / period_ms as f64,
        took.as_secs_f64(),
        summary(&mut acks),
        summary(&mut dones),
    );
}

// ---------------------------------------------------------------- auth-mem

async fn auth_mem(build: Build, signups: u64, logins: u64, concurrency: u64) {
    let h = Harness::start_with(
        build,
        "bench_auth_mem",
        Options {
            agent: Agent::Offline,
            env: vec![("CONFAB_LOG".into(), "warn".into())],
            ..Default::default()
        },
    )
    .await;
    let pid = h.pid("auth").unwrap();
    let mb = |kb: u64| kb as f64 / 1024.0;
    let idle = proc_kb(pid, "VmRSS");
    let started = now();
    let mut users = Vec::new();
    for chunk in (0..signups)
        .collect::<Vec<_>>()
        .chunks(concurrency as usize)
    {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let (http, url) = (h.http.clone(), h.auth_url.clone());
            set.spawn(async move {
                let email = confab_testkit::user::unique_email("mem");
                let r = http
                    .post(format!("{url}/v1/auth/signup"))
                    .json(&json!({"email": email, "password": "correct horse battery staple", "display_name": "Mem"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                email
            });
        }
        while let Some(e) = set.join_next().await {
            users.push(e.unwrap());
        }
    }
    let signed_up = started.elapsed();
    let after_signups = proc_kb(pid, "VmRSS");
    let started = now();
    let per_client = logins / concurrency;
    let mut set = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let (http, url, users) = (h.http.clone(), h.auth_url.clone(), users.clone());
        set.spawn(async move {
            for i in 0..per_client {
                let email = &users[((c * per_client + i) as usize) % users.len()];
                let r = http
                    .post(format!("{url}/v1/auth/login"))
                    .json(&json!({"email": email, "password": "correct horse battery staple"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let logged_in = started.elapsed();
    let after_logins = proc_kb(pid, "VmRSS");
    let peak = proc_kb(pid, "VmHWM");
    confab_core::clock::sleep(Duration::from_secs(5)).await;
    let settled = proc_kb(pid, "VmRSS");
    println!(
        "auth RSS: idle={:.1} MB; after {signups} sign-ups ({:.1}s, {concurrency} at a time)={:.1} MB; \
         after {} log-ins ({:.1}s, {:.0}/s)={:.1} MB (peak {:.1} MB); 5 s later={:.1} MB",
        mb(idle),
        signed_up.as_secs_f64(),
        mb(after_signups),
        per_client * concurrency,
        logged_in.as_secs_f64(),
        (per_client * concurrency) as f64 / logged_in.as_secs_f64(),
        mb(after_logins),
        mb(peak),
        mb(settled),
    );
}

// ---------------------------------------------------------------- fanout

/// What one socket of `fanout` saw: every frame counted, and the arrival of
/// each delta with the round (message) it belongs to.
struct Seen {
    frames: u64,
    deltas: Vec<(u64, Instant)>,
    last: Instant,
}

async fn fanout(build: Build, users: u64, per_user: u64, messages: u64) {
    let sockets = users * per_user;
    let h = start_n(
        build,
        "bench_fanout",
        [
            cheap_hashing(),
            socket_caps(sockets + 100, per_user + 10),
            vec![
                // The plan's limits are not what is measured here.
                (
                    "CONFAB_PLAN_FREE_RATE_PER_MINUTE".into(),
                    "unlimited".into(),
                ),
                ("CONFAB_PLAN_FREE_DAILY_MESSAGES".into(), "unlimited".into()),
            ],
        ]
        .concat(),
        2,
    )
    .await;
    let tokens = tokens(&h, users).await;
    let urls: Vec<String> = h
        .backend_urls
        .iter()
        .map(|u| u.replacen("http://", "ws://", 1) + "/v1/ws")
        .collect();
    let begin = now();
    let mut tasks = tokio::task::JoinSet::new();
    for (u, token) in tokens.into_iter().enumerate() {
        let urls = urls.clone();
        tasks.spawn(async move {
            // Socket j is on instance (u + j) % 2: socket 0, the sender, is
            // on instance 0 for even users and 1 for odd ones.
            let mut sinks = Vec::new();
            let mut streams = Vec::new();
            for j in 0..per_user as usize {
                let mut ws = connect(&urls[(u + j) % 2], None, None).await;
                authenticate(&mut ws, &token).await;
                let (sink, stream) = ws.split();
                sinks.push(sink);
                streams.push(stream);
            }
            let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let mut readers = Vec::new();
            for (j, mut stream) in streams.into_iter().enumerate() {
                let done_tx = (j == 0).then(|| done_tx.clone());
                readers.push(tokio::spawn(async move {
                    let mut seen = Seen { frames: 0, deltas: Vec::new(), last: now() };
                    let mut dones = 0;
                    while dones < messages {
                        let m = tokio::time::timeout(FRAME_TIMEOUT, stream.next())
                            .await
                            .expect("timed out waiting for a frame")
                            .expect("socket ended")
                            .expect("socket error");
                        let Message::Text(t) = m else { continue };
                        let at = now();
                        seen.frames += 1;
                        seen.last = at;
                        let f: Value = serde_json::from_str(&t).unwrap();
                        match f["type"].as_str() {
                            Some("delta") => seen.deltas.push((dones, at)),
                            Some("done") => {
                                dones += 1;
                                if let Some(tx) = &done_tx {
                                    let thread = f["thread_id"].as_str().unwrap_or_default();
                                    let _ = tx.send(thread.to_owned());
                                }
                            }
                            Some("error") => panic!("error frame: {f}"),
                            _ => {}
                        }
                    }
                    seen
                }));
            }
            drop(done_tx);
            let mut thread: Option<String> = None;
            let sender = &mut sinks[0];
            for r in 0..messages {
                let mut frame = json!({"type": "send", "client_msg_id": uuid::Uuid::new_v4().to_string(),
                                       "text": format!("user {u} message {r}")});
                if let Some(t) = &thread {
                    frame["thread_id"] = Value::String(t.clone());
                }
                sent.lock().unwrap().push(now());
                sender.send(Message::Text(frame.to_string().into())).await.unwrap();
                // One thread per user: later messages go where the first went.
                let t = done_rx.recv().await.expect("the sender's reader ended early");
                thread.get_or_insert(t);
            }
            let mut seen = Vec::new();
            for r in readers {
                seen.push(r.await.unwrap());
            }
            for mut s in sinks {
                let _ = s.close().await;
            }
            let sent = sent.lock().unwrap().clone();
            (sent, seen)
        });
    }
    let (mut local, mut remote, mut hop) = (Vec::new(), Vec::new(), Vec::new());
    let (mut frames, mut last) = (0u64, begin);
    let mut first_send: Option<Instant> = None;
    while let Some(r) = tasks.join_next().await {
        let (sent, seen) = r.unwrap();
        first_send = Some(first_send.map_or(sent[0], |f| f.min(sent[0])));
        // The same delta at the sender's socket (instance A) and at each
        // socket on instance B: the extra time the hop through Redis takes.
        for s in seen.iter().skip(1).step_by(2) {
            assert_eq!(
                s.deltas.len(),
                seen[0].deltas.len(),
                "every delta on both instances"
            );
            hop.extend(
                s.deltas
                    .iter()
                    .zip(&seen[0].deltas)
                    .map(|((_, there), (_, here))| ms(*there - *here)),
            );
        }
        for (j, s) in seen.iter().enumerate() {
            frames += s.frames;
            last = last.max(s.last);
            let into = if j % 2 == 0 { &mut local } else { &mut remote };
            into.extend(
                s.deltas
                    .iter()
                    .map(|(round, at)| ms(*at - sent[*round as usize])),
            );
        }
    }
    let window = last - first_send.unwrap();
    println!(
        "fanout users={users} sockets={sockets} ({per_user} each, alternating over 2 backends) \
         messages={} (each user one after the other): {frames} frames delivered in {:.2}s = {:.0} frames/s",
        users * messages,
        window.as_secs_f64(),
        frames as f64 / window.as_secs_f64(),
    );
    println!(
        "  send → delta at the sending instance's sockets {}",
        summary(&mut local)
    );
    println!(
        "  send → delta at the other instance's sockets {}",
        summary(&mut remote)
    );
    println!(
        "  the same delta at the other instance's sockets after the sending instance's (the hop through Redis) {}",
        summary(&mut hop)
    );
}
