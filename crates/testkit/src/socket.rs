//! A chat socket client speaking the real protocol over a real WebSocket.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::CloseFrame, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long a test waits for any one frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// A reply collected from delta frames up to its `done` frame.
#[derive(Debug)]
pub struct ReplyText {
    pub message_id: String,
    pub text: String,
    pub deltas: usize,
    pub done: Value,
}

impl Socket {
    /// Connect (optionally with an `Origin` header, as a browser would).
    pub async fn connect(url: &str, origin: Option<&str>) -> Self {
        Self::try_connect(url, origin)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    pub async fn try_connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request()?;
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", o.parse().expect("origin header"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Self { ws })
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send frame");
    }

    /// The next JSON frame; panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("socket ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(&t).expect("server frames are JSON")
                }
                Message::Close(c) => panic!("socket closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Frames until one of `kind` arrives; returns that one.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let f = self.recv().await;
            if f["type"] == kind {
                return f;
            }
            assert!(
                !(f["type"] == "error" && kind != "error"),
                "expected {kind}, got error frame {f}"
            );
        }
    }

    /// Wait for the server to close; returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code.into(),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error instead of close: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    /// The close frame's code and reason (the revocation reason for 4003).
    pub async fn expect_close_with_reason(&mut self) -> (u16, String) {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return (code.into(), reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error instead of close: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    pub async fn authenticate(&mut self, token: &str) -> Value {
        self.send(json!({"type": "auth", "token": token})).await;
        let ready = self.recv().await;
        assert_eq!(ready["type"], "ready", "expected ready, got {ready}");
        ready
    }

    /// Send a chat message; returns the ack.
    pub async fn send_message(
        &mut self,
        client_msg_id: &str,
        thread_id: Option<&str>,
        text: &str,
    ) -> Value {
        let mut frame = json!({"type": "send", "client_msg_id": client_msg_id, "text": text});
        if let Some(t) = thread_id {
            frame["thread_id"] = t.into();
        }
        self.send(frame).await;
        let ack = self.recv_type("ack").await;
        assert_eq!(ack["client_msg_id"], client_msg_id);
        ack
    }

    /// Collect delta frames into the reply text until `done` (panics on an
    /// error frame).
    pub async fn collect_reply(&mut self) -> ReplyText {
        let mut text = String::new();
        let mut deltas = 0;
        let mut message_id = String::new();
        loop {
            let f = self.recv().await;
            match f["type"].as_str() {
                Some("delta") => {
                    if message_id.is_empty() {
                        message_id = f["message_id"].as_str().unwrap_or_default().to_string();
                    }
                    assert_eq!(
                        f["message_id"].as_str(),
                        Some(message_id.as_str()),
                        "deltas of two replies interleaved"
                    );
                    assert_eq!(
                        f["index"].as_u64(),
                        Some(deltas as u64),
                        "delta out of order: {f}"
                    );
                    text.push_str(f["text"].as_str().unwrap_or_default());
                    deltas += 1;
                }
                Some("done") => {
                    if !message_id.is_empty() {
                        assert_eq!(f["message_id"].as_str(), Some(message_id.as_str()));
                    }
                    return ReplyText {
                        message_id: f["message_id"].as_str().unwrap_or_default().to_string(),
                        text,
                        deltas,
                        done: f,
                    };
                }
                Some("error") => panic!("error frame while waiting for a reply: {f}"),
                _ => continue,
            }
        }
    }

    /// Send a `ping` and return every frame that arrives before its `pong`:
    /// what the server had sent this socket up to now.
    pub async fn frames_until_pong(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        let mut frames = Vec::new();
        loop {
            let f = self.recv().await;
            if f["type"] == "pong" {
                return frames;
            }
            frames.push(f);
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
