//! A stand-in for the LLM provider — an external system — speaking the real
//! OpenAI-compatible wire protocol (`POST /v1/chat/completions`, server-sent
//! events) over a real socket. Tests script its replies, delays and faults,
//! and read the requests it received.

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
}

#[derive(Clone)]
pub struct LlmStandIn {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl LlmStandIn {
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared }
    }

    /// Queue replies; when the queue is empty the stand-in echoes.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().expect("lock").script.extend(replies);
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
        s.script.pop_front()
    }
    .unwrap_or_else(|| Reply::text(&echo_reply(&last_user)));

    let (chunks, delay, cut) = match reply {
        Reply::Status(code) => {
            return (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(serde_json::json!({"error": {"message": "scripted failure", "type": "server_error"}})),
            )
                .into_response()
        }
        Reply::Malformed => {
            return ([("content-type", "text/event-stream")], "data: {not json\n\n").into_response();
        }
        Reply::Chunks { chunks, delay } => (chunks, delay, false),
        Reply::CutAfter(chunks) => (chunks, Duration::ZERO, true),
        Reply::Gated { before, gate, after } => {
            let first = futures::stream::iter(before).map(|c| Ok::<_, std::io::Error>(sse_chunk(&c)));
            let wait = futures::stream::once(async move {
                gate.notified().await;
                Ok::<_, std::io::Error>(String::new())
            });
            let rest = futures::stream::iter(after).map(|c| Ok::<_, std::io::Error>(sse_chunk(&c)));
            let end = futures::stream::iter([Ok::<_, std::io::Error>(FINISH.to_string())]);
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(first.chain(wait).chain(rest).chain(end)))
                .expect("response");
        }
    };
    let body = futures::stream::iter(chunks)
        .then(move |c| async move {
            if !delay.is_zero() {
                confab_core::clock::sleep(delay).await;
            }
            Ok::<_, std::io::Error>(sse_chunk(&c))
        })
        .chain(futures::stream::iter(if cut {
            vec![]
        } else {
            vec![Ok(FINISH.to_string())]
        }));
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .expect("response")
}
