//! Limits that protect the box and the bill (issue 15), each answered with a
//! clear error frame, close code or HTTP status (docs/websocket-protocol.md,
//! "Limits"): sockets per user and per process, the longest reply, and the
//! overall generation deadline.

use crate::BUILD;
use confab_testkit::{Harness, Options, Reply, Socket};
use serde_json::json;
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A user past `CONFAB_WS_MAX_SOCKETS_PER_USER` gets `too_many_sockets` and
/// close 4029 (others are unaffected, and closing one makes room); a
/// process past `CONFAB_WS_MAX_SOCKETS` refuses the upgrade with 503 before
/// any work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_sockets_per_user_and_per_process() {
    let h = Harness::start_with(
        BUILD,
        "limits_sockets",
        Options {
            env: env(&[
                ("CONFAB_WS_MAX_SOCKETS_PER_USER", "2"),
                ("CONFAB_WS_MAX_SOCKETS", "4"),
            ]),
            ..Default::default()
        },
    )
    .await;
    let (ada, bob) = (h.sign_up().await, h.sign_up().await);
    let first = h.socket(&ada).await;
    let _second = h.socket(&ada).await;
    let mut third = h.raw_socket().await;
    third
        .send(json!({"type": "auth", "token": ada.access_token}))
        .await;
    let err = third.recv_type("error").await;
    assert_eq!(err["code"], "too_many_sockets", "{err}");
    assert_eq!(
        third.expect_close_with_reason().await,
        (4029, "too_many_sockets".into())
    );
    // Another user still gets in ...
    let mut bobs = h.socket(&bob).await;
    bobs.send(json!({"type": "ping"})).await;
    assert_eq!(bobs.recv().await["type"], "pong");
    // ... until the process holds 4: then the upgrade is refused. (The
    // refused socket's slot is given back when its task ends, so whether
    // one more fits depends on that; any that fits is held.)
    let backend_ws = h.backend_url.replacen("http://", "ws://", 1) + "/v1/ws";
    let mut held = Vec::new();
    let res = loop {
        match Socket::try_connect(&backend_ws, None).await {
            Ok(s) => held.push(s),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => break res,
            Err(e) => panic!("expected a 503 refusal, got {e}"),
        }
        assert!(held.len() < 2, "the process cap let more in");
    };
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: serde_json::Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "too_many_sockets");
    drop(held);
    // A closed socket gives its slots back.
    first.close().await;
    confab_testkit::eventually(3, "a slot freed", || async {
        let mut s = Socket::try_connect(&backend_ws, None).await.ok()?;
        s.send(json!({"type": "auth", "token": ada.access_token}))
            .await;
        (s.recv().await["type"] == "ready").then_some(())
    })
    .await;
}

/// A reply that reaches `CONFAB_MAX_REPLY_CHARS` is stopped there (the
/// provider's request is closed): the text up to the limit is kept and the
/// reply fails with `agent_reply_too_long`. A reply that takes longer than
/// `CONFAB_LLM_DEADLINE_SECS` fails with `agent_deadline`, keeping what came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_reply_length_and_deadline() {
    let h = Harness::start_with(
        BUILD,
        "limits_reply",
        Options {
            env: env(&[
                ("CONFAB_MAX_REPLY_CHARS", "12"),
                ("CONFAB_LLM_DEADLINE_SECS", "1"),
            ]),
            ..Default::default()
        },
    )
    .await;
    let llm = h.llm.clone().unwrap();
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;

    llm.script([Reply::Chunks {
        chunks: vec![
            "12345 ".into(),
            "6789 ".into(),
            "abcdef ".into(),
            "never".into(),
        ],
        delay: Duration::from_millis(50),
    }]);
    ws.send_message("c-1", None, "talk a lot").await;
    let mut text = String::new();
    let err = loop {
        let f = ws.recv().await;
        match f["type"].as_str() {
            Some("delta") => text.push_str(f["text"].as_str().unwrap()),
            Some("error") => break f,
            Some("done") => panic!("a reply past the limit completed: {f}"),
            _ => {}
        }
    };
    assert_eq!(err["code"], "agent_reply_too_long", "{err}");
    assert_eq!(err["retryable"], true);
    assert!(
        err["message"].as_str().unwrap().contains("12 characters"),
        "{err}"
    );
    assert_eq!(text, "12345 6789 a");
    let (status, content): (String, String) =
        sqlx::query_as("SELECT status, content FROM messages WHERE id = $1::uuid")
            .bind(err["message_id"].as_str().unwrap())
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), content.as_str()),
        ("failed", "12345 6789 a")
    );
    // The model was not left writing: its response was abandoned.
    confab_testkit::eventually(3, "the provider request closed", || async {
        (llm.abandoned() >= 1).then_some(())
    })
    .await;

    llm.script([Reply::Chunks {
        chunks: vec![".".into(); 6],
        delay: Duration::from_millis(300),
    }]);
    ws.send_message("c-2", None, "take your time").await;
    let err = ws.recv_type("error").await;
    assert_eq!(err["code"], "agent_deadline", "{err}");
    let (status, content): (String, String) =
        sqlx::query_as("SELECT status, content FROM messages WHERE id = $1::uuid")
            .bind(err["message_id"].as_str().unwrap())
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(content.starts_with(".."), "{content}");
}
