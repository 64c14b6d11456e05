//! A stand-in for the LLM provider — an external system — speaking the real
//! OpenAI-compatible wire protocol (`POST /v1/chat/completions`, server-sent
//! events) over a real socket. Tests script its replies, delays and faults
//! (each kind of provider failure, one scripted reply per request), take it
//! down and up again (refused connections), and read the requests it
//! received and how many responses the client abandoned.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use futures::StreamExt;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

pub const API_KEY: &str = "sk-test-stand-in";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Stream these chunks, waiting `delay` before each.
    Chunks {
        chunks: Vec<String>,
        delay: Duration,
    },
    /// Answer with this HTTP status and an OpenAI-style error body.
    Status(u16),
    /// Stream these chunks, then end the response without a finish reason
    /// or `[DONE]`, as when a provider's stream is cut. (Ending it cleanly
    /// rather than resetting the connection keeps the test deterministic: a
    /// reset can race the response head and look like a refused request.)
    CutAfter(Vec<String>),
    /// Send a stream whose data is not JSON.
    Malformed,
    /// Stream these chunks, then one whose data is not JSON.
    MalformedAfter(Vec<String>),
    /// 429 with `Retry-After: <secs>` (no header when `None`).
    RateLimited { retry_after: Option<u64> },
    /// Answer at once (status and headers), then wait `delay` before the
    /// first chunk: a model slow to start.
    Delayed {
        delay: Duration,
        chunks: Vec<String>,
    },
    /// Stream `before`, then say nothing more (until the client gives up):
    /// a model that hangs mid-reply.
    Stall { before: Vec<String> },
    /// Stream these chunks, then end with `finish_reason: content_filter`.
    Filtered(Vec<String>),
    /// Stream `before`, wait until the gate is opened, then stream `after`:
    /// lets a test look at a reply while it is still being generated.
    Gated {
        before: Vec<String>,
        gate: Arc<tokio::sync::Notify>,
        after: Vec<String>,
    },
}

impl Reply {
    /// A reply streamed word by word.
    pub fn text(text: &str) -> Self {
        Self::slow(text, Duration::from_millis(5))
    }

    pub fn slow(text: &str, delay: Duration) -> Self {
        let mut chunks = Vec::new();
        let mut cur = String::new();
        for ch in text.chars() {
            cur.push(ch);
            if ch == ' ' {
                chunks.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            chunks.push(cur);
        }
        Reply::Chunks { chunks, delay }
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Reply>,
    requests: Vec<serde_json::Value>,
    /// When each request arrived.
    arrivals: Vec<std::time::Instant>,
    /// Streamed responses the client closed before their end.
    abandoned: usize,
    /// What to answer when the script is empty (else the echo).
    default: Option<Reply>,
}

#[derive(Clone)]
pub struct LlmStandIn {
    pub url: String,
    addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// Stops the server while it is "down".
    up: Arc<Mutex<Option<tokio_util::sync::CancellationToken>>>,
}

impl LlmStandIn {
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let addr = listener.local_addr().expect("addr");
        let this = Self {
            url: format!("http://{addr}"),
            addr,
            shared,
            up: Arc::new(Mutex::new(None)),
        };
        this.serve(listener);
        this
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(self.shared.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        *self.up.lock().expect("lock") = Some(stop.clone());
        tokio::spawn(async move {
            // Like a real provider's server, it writes each event at once.
            let _ = axum::serve(confab_core::http::nodelay(listener), app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
    }

    /// Take the provider down: its port is closed, so connections are
    /// refused, and idle kept-alive connections are closed too. (Replies
    /// already streaming finish.)
    pub async fn go_down(&self) {
        if let Some(stop) = self.up.lock().expect("lock").take() {
            stop.cancel();
        }
        // The listener is closed as soon as the server sees the signal.
        for _ in 0..200 {
            if std::net::TcpStream::connect(self.addr).is_err() {
                return;
            }
            confab_core::clock::sleep(Duration::from_millis(10)).await;
        }
        panic!("the stand-in kept accepting connections");
    }

    /// Bring it back on the same address.
    pub async fn come_back(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("re-bind the stand-in's port");
        self.serve(listener);
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.shared.lock().expect("lock").arrivals.clone()
    }

    /// How many streamed responses the client closed before their end
    /// (a stopped reply cancels its upstream request).
    pub fn abandoned(&self) -> usize {
        self.shared.lock().expect("lock").abandoned
    }

    /// Queue replies; when the queue is empty the stand-in echoes.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().expect("lock").script.extend(replies);
    }

    /// Answer every unscripted request with `reply` instead of the echo
    /// (benchmarks: a model that streams a fixed answer at once).
    pub fn answer_with(&self, reply: Reply) {
        self.shared.lock().expect("lock").default = Some(reply);
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.shared.lock().expect("lock").requests.clone()
    }
}

/// The default answer: deterministic, derived from the last user message.
pub fn echo_reply(last_user: &str) -> String {
    format!("You said: {last_user}")
}

const FINISH: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
const FILTERED: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\ndata: [DONE]\n\n";

/// Counts a streamed body as abandoned if it is dropped before its end.
struct EndGuard {
    shared: Arc<Mutex<Shared>>,
    ended: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.shared.lock().expect("lock").abandoned += 1;
        }
    }
}

type Chunks = futures::stream::BoxStream<'static, Result<String, std::io::Error>>;

/// An SSE response of `body`, watched for being abandoned.
fn sse(shared: &Arc<Mutex<Shared>>, body: Chunks) -> Response {
    let guard = EndGuard {
        shared: shared.clone(),
        ended: false,
    };
    let watched = futures::stream::unfold((body, guard), |(mut body, mut guard)| async move {
        match body.next().await {
            Some(item) => Some((item, (body, guard))),
            None => {
                guard.ended = true;
                drop(guard);
                None
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(watched))
        .expect("response")
}

fn chunks_of(chunks: Vec<String>) -> Chunks {
    futures::stream::iter(chunks)
        .map(|c| Ok(sse_chunk(&c)))
        .boxed()
}

/// Nothing but SSE comments (which carry no event) until `gate` opens: the
/// comments make a client's disconnect visible here at once, as a failed
/// write, the way a real provider notices a cancelled request.
fn hold(gate: Arc<tokio::sync::Notify>) -> Chunks {
    futures::stream::unfold(Some(gate), |gate| async move {
        let g = gate?;
        tokio::select! {
            _ = g.notified() => None,
            _ = confab_core::clock::sleep(Duration::from_millis(50)) => {
                Some((Ok(": waiting\n\n".to_string()), Some(g)))
            }
        }
    })
    .boxed()
}

fn ending(text: &'static str) -> Chunks {
    futures::stream::iter([Ok(text.to_string())]).boxed()
}

fn sse_chunk(text: &str) -> String {
    let v = serde_json::json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "model": "stand-in-model",
        "choices": [{ "index": 0, "delta": { "content": text }, "finish_reason": null }]
    });
    format!("data: {v}\n\n")
}

async fn completions(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": {"message": "bad key", "type": "invalid_request_error"}})),
        )
            .into_response();
    }
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let reply = {
        let mut s = shared.lock().expect("lock");
        s.requests.push(body);
        s.arrivals.push(confab_core::clock::instant());
        s.script.pop_front().or_else(|| s.default.clone())
    }
    .unwrap_or_else(|| Reply::text(&echo_reply(&last_user)));

    let body: Chunks = match reply {
        Reply::Status(code) => {
            return (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(serde_json::json!({"error": {"message": "scripted failure", "type": "server_error"}})),
            )
                .into_response()
        }
        Reply::RateLimited { retry_after } => {
            let mut resp = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({"error": {"message": "rate limit reached", "type": "rate_limit_error"}})),
            )
                .into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", secs.to_string().parse().expect("header"));
            }
            return resp;
        }
        Reply::Malformed => {
            return ([("content-type", "text/event-stream")], "data: {not json\n\n").into_response();
        }
        Reply::Chunks { chunks, delay } => futures::stream::iter(chunks)
            .then(move |c| async move {
                if !delay.is_zero() {
                    confab_core::clock::sleep(delay).await;
                }
                Ok(sse_chunk(&c))
            })
            .chain(ending(FINISH))
            .boxed(),
        Reply::CutAfter(chunks) => chunks_of(chunks),
        Reply::MalformedAfter(chunks) => chunks_of(chunks)
            .chain(futures::stream::iter([Ok("data: {\"choices\": [\n\n".to_string())]))
            .boxed(),
        Reply::Delayed { delay, chunks } => futures::stream::once(async move {
            confab_core::clock::sleep(delay).await;
            Ok(String::new())
        })
        .chain(chunks_of(chunks))
        .chain(ending(FINISH))
        .boxed(),
        Reply::Stall { before } => chunks_of(before)
            .chain(hold(Arc::new(tokio::sync::Notify::new())))
            .boxed(),
        Reply::Filtered(chunks) => chunks_of(chunks).chain(ending(FILTERED)).boxed(),
        Reply::Gated { before, gate, after } => {
            chunks_of(before)
                .chain(hold(gate))
                .chain(chunks_of(after))
                .chain(ending(FINISH))
                .boxed()
        }
    };
    sse(&shared, body)
}
