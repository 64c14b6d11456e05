//! The chat socket and the backend's HTTP API against the real services:
//! the message life cycle, deduplicated resends, and every kind of bad input
//! (malformed and unknown frames, oversized frames, missing or foreign
//! credentials), each of which gets a clear error and changes nothing.

use crate::BUILD;
use confab_testkit::{llm::echo_reply, Agent, Harness, Options, Reply, Socket};
use serde_json::{json, Value};

async fn count_messages(h: &Harness) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_life_cycle_and_resend_dedup() {
    let h = Harness::start(BUILD, "api_chat_life_cycle").await;
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;
    // The same user on another device.
    let mut other = h.socket(&user).await;

    let ack = ws.send_message("c-1", None, "first question").await;
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["duplicate"], false);
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let reply = ws.collect_reply().await;
    assert_eq!(reply.text, echo_reply("first question"));
    assert!(reply.deltas > 1, "the reply streamed in one piece");
    assert_eq!(reply.done["seq"], 2);
    assert!(reply.done["html"]
        .as_str()
        .unwrap()
        .contains("You said: first question"));

    // The other device saw the question and the whole reply, live.
    let seen = other.recv_type("message").await;
    assert_eq!(seen["message"]["role"], "user");
    assert_eq!(seen["message"]["content"], "first question");
    assert_eq!(seen["message"]["id"], ack["message_id"]);
    let mirrored = other.collect_reply().await;
    assert_eq!(mirrored.text, reply.text);
    assert_eq!(mirrored.message_id, reply.message_id);

    // A resend of the same client id (say, after a drop) neither doubles the
    // message nor starts a second reply.
    let again = ws.send_message("c-1", None, "first question").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message_id"], ack["message_id"]);
    assert_eq!(count_messages(&h).await, 2);

    // Follow-up in the same thread: the provider gets the earlier turns.
    let sneaky = "second <script>alert(1)</script><img src=x onerror=alert(2)> question'; DROP TABLE messages;--";
    let ack2 = ws.send_message("c-2", Some(&thread), sneaky).await;
    assert_eq!(ack2["seq"], 3);
    let reply2 = ws.collect_reply().await;
    let html = reply2.done["html"].as_str().unwrap();
    assert!(
        reply2.text.contains("<script>"),
        "the stand-in echoed the raw text"
    );
    assert!(
        !html.contains("<script") && !html.contains("onerror"),
        "unsafe HTML survived: {html}"
    );
    let requests = h.llm.as_ref().unwrap().requests();
    let last = requests.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .clone();
    let contents: Vec<&str> = last
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(contents.contains(&"first question"), "{contents:?}");
    assert!(
        contents.contains(&"You said: first question"),
        "{contents:?}"
    );

    // History over HTTP, in order, the way a second device sees it.
    let token = Some(user.access_token.as_str());
    let (_, body) = h
        .get(
            &format!("{}/v1/threads/{thread}/messages", h.backend_url),
            token,
        )
        .await;
    let msgs = body["messages"].as_array().unwrap();
    let seqs: Vec<i64> = msgs.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(msgs[2]["content"], sneaky, "text is stored verbatim");
    let (_, threads) = h.get(&format!("{}/v1/threads", h.backend_url), token).await;
    assert_eq!(threads["threads"][0]["id"], thread.as_str());
    assert_eq!(threads["threads"][0]["title"], "first question");

    // A request id given at the edge crosses web → backend and is logged there.
    let request_id = format!("req-{}", uuid::Uuid::new_v4().simple());
    let r = h
        .http
        .get(format!("{}/v1/threads", h.web_url))
        .bearer_auth(&user.access_token)
        .header("x-request-id", &request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], request_id.as_str());
    confab_testkit::eventually(5, "the request id in the backend's log", || async {
        h.log("backend").contains(&request_id).then_some(())
    })
    .await;

    // Every service exposes Prometheus metrics that saw this traffic.
    for (service, url, metric) in [
        ("backend", &h.backend_url, "chat_messages_total"),
        ("auth", &h.auth_url, "http_requests_total"),
        ("web", &h.web_url, "http_requests_total"),
    ] {
        let text = h
            .http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains(metric),
            "{service} /metrics lacks {metric}:\n{text}"
        );
    }

    // The socket takes a fresh token without reconnecting (reauth), but only
    // one for the same user and session.
    let (status, refreshed) = h
        .post(
            &format!("{}/v1/auth/refresh", h.auth_url),
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    ws.send(json!({"type": "reauth", "token": refreshed["access_token"]}))
        .await;
    let reauthed = ws.recv_type("reauthed").await;
    assert!(
        reauthed["expires_at"].as_i64().unwrap()
            > confab_core::clock::Clock::system().now().timestamp()
    );

    // Another user cannot see or write to this thread.
    let mallory = h.sign_up().await;
    let r = h
        .http
        .get(format!("{}/v1/threads/{thread}/messages", h.backend_url))
        .bearer_auth(&mallory.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    ws.send(json!({"type": "reauth", "token": mallory.access_token}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "token_mismatch");
    let mut ws2 = h.socket(&mallory).await;
    ws2.send(json!({"type": "send", "client_msg_id": "m-1", "thread_id": thread, "text": "hi"}))
        .await;
    let err = ws2.recv_type("error").await;
    assert_eq!(err["code"], "not_found");
    assert_eq!(err["client_msg_id"], "m-1");
    assert_eq!(count_messages(&h).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_socket_survives() {
    let h = Harness::start(BUILD, "api_chat_bad_frames").await;
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;

    let cases: [(&str, &str); 6] = [
        ("{not json", "malformed_frame"),
        ("[1,2,3]", "invalid_frame"),
        (r#"{"type":"launch_missiles"}"#, "unknown_type"),
        (r#"{"type":"send","client_msg_id":"x"}"#, "invalid_frame"),
        (
            r#"{"type":"send","client_msg_id":"x","text":"   "}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"auth","token":"again"}"#,
            "already_authenticated",
        ),
    ];
    for (frame, code) in cases {
        ws.send_raw(frame).await;
        let err = ws.recv_type("error").await;
        assert_eq!(err["code"], code, "{frame} → {err}");
        assert!(
            err["message"].as_str().unwrap().len() > 10,
            "error without a clear message: {err}"
        );
        // Still usable.
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.recv().await["type"], "pong");
    }
    let long = "x".repeat(16_001);
    ws.send(json!({"type": "send", "client_msg_id": "long", "text": long}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "message_too_long");
    assert_eq!(count_messages(&h).await, 0, "bad frames changed nothing");

    // An oversized frame closes the socket with 1009 (documented).
    ws.send_raw(&format!(
        r#"{{"type":"send","client_msg_id":"big","text":"{}"}}"#,
        "y".repeat(70_000)
    ))
    .await;
    assert_eq!(ws.expect_close().await, 1009);
    assert_eq!(count_messages(&h).await, 0);

    // The first frame must authenticate.
    let mut anon = h.raw_socket().await;
    anon.send(json!({"type": "ping"})).await;
    assert_eq!(anon.recv_type("error").await["code"], "auth_required");
    assert_eq!(anon.expect_close().await, 4000);
    let mut forged = h.raw_socket().await;
    forged
        .send(json!({"type": "auth", "token": "eyJhbGciOiJub25lIn0.e30."}))
        .await;
    assert_eq!(forged.recv_type("error").await["code"], "invalid_token");
    assert_eq!(forged.expect_close().await, 4002);

    // A page on another origin cannot open the socket, directly or via web.
    let backend_ws = h.backend_url.replacen("http://", "ws://", 1) + "/v1/ws";
    assert!(
        Socket::try_connect(&backend_ws, Some("https://evil.example"))
            .await
            .is_err()
    );
    assert!(
        Socket::try_connect(&h.web_ws_url(), Some("https://evil.example"))
            .await
            .is_err()
    );
    // Without an Origin (not a browser) web refuses too: only its own pages
    // use its socket; other clients talk to the backend directly.
    assert!(Socket::try_connect(&h.web_ws_url(), None).await.is_err());
    let mut direct = Socket::connect(&backend_ws, None).await;
    direct.authenticate(&user.access_token).await;

    // HTTP: malformed JSON body and unknown routes get our error shape.
    let r = h
        .http
        .post(format!("{}/v1/threads", h.backend_url))
        .bearer_auth(&user.access_token)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_request"
    );
    let r = h
        .http
        .get(format!("{}/v1/threads/not-a-uuid/messages", h.backend_url))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .delete(format!("{}/v1/threads", h.backend_url))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_assistant_streams_without_any_configuration() {
    let h = Harness::start_with(
        BUILD,
        "api_offline_assistant",
        Options {
            agent: Agent::Offline,
            ..Default::default()
        },
    )
    .await;
    let user = h.sign_up().await;
    let mut ws = h.raw_socket().await;
    let ready = ws.authenticate(&user.access_token).await;
    assert_eq!(ready["agent"]["offline"], true, "{ready}");
    // No model file in its data folder: the notice says how to get one.
    let notice = ready["agent"]["notice"].as_str().unwrap_or_default();
    assert!(notice.contains("./scripts/deps.sh --model"), "{ready}");
    ws.send_message("o-1", None, "12 * (3 + 4)").await;
    let reply = ws.collect_reply().await;
    assert!(reply.text.contains("84"), "{}", reply.text);
    assert!(reply.deltas > 1);
    ws.send_message("o-2", None, "hello").await;
    let reply = ws.collect_reply().await;
    assert!(reply.text.contains("offline assistant"), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_become_retryable_errors() {
    let h = Harness::start(BUILD, "api_chat_provider_failures").await;
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;

    // 5xx three times: two automatic retries before the first token, then a
    // failed reply with a specific, friendly message.
    llm.script([Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
    let ack = ws.send_message("f-1", None, "will this work?").await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let err = ws.recv_type("error").await;
    assert_eq!(err["code"], "agent_unavailable", "{err}");
    assert_eq!(err["retryable"], true);
    assert!(err["message"].as_str().unwrap().contains("(500)"), "{err}");
    assert_eq!(llm.requests().len(), 3);
    let failed = err["message_id"].as_str().unwrap().to_string();
    let (status, code): (String, Option<String>) =
        sqlx::query_as("SELECT status, error_code FROM messages WHERE id = $1::uuid")
            .bind(&failed)
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("agent_unavailable"))
    );

    // Retry: a fresh reply in the same thread.
    ws.send(json!({"type": "retry", "message_id": failed}))
        .await;
    let reply = ws.collect_reply().await;
    assert_eq!(reply.text, echo_reply("will this work?"));
    assert_ne!(reply.message_id, failed);

    // Cut mid-stream: the partial text is kept and the error says so.
    llm.script([Reply::CutAfter(vec!["Half ".into(), "an answer".into()])]);
    ws.send_message("f-2", Some(&thread), "and now?").await;
    let err = ws.recv_type("error").await;
    assert_eq!(err["code"], "agent_interrupted", "{err}");
    let partial: String = sqlx::query_scalar("SELECT content FROM messages WHERE id = $1::uuid")
        .bind(err["message_id"].as_str().unwrap())
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap();
    assert_eq!(partial, "Half an answer");

    // A stream that is not JSON is not retried automatically.
    let before = llm.requests().len();
    llm.script([Reply::Malformed]);
    ws.send_message("f-3", Some(&thread), "once more").await;
    assert_eq!(ws.recv_type("error").await["code"], "agent_bad_response");
    assert_eq!(llm.requests().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_without_losing_the_reply() {
    let h = Harness::start(BUILD, "api_chat_resume").await;
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.script([Reply::Gated {
        before: vec!["The first ".into(), "half, ".into()],
        gate: gate.clone(),
        after: vec!["and the ".into(), "second half.".into()],
    }]);

    // A reply starts streaming, then the connection drops.
    let mut ws = h.socket(&user).await;
    let ack = ws.send_message("r-1", None, "tell me something long").await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let first = ws.recv_type("delta").await;
    let reply_seq = first["seq"].as_i64().unwrap();
    drop(ws);

    // Generation goes on without the socket; a new one resumes from the last
    // seq held in its final state (the question), and gets the reply so far.
    let mut ws = h.socket(&user).await;
    ws.send(json!({"type": "resume", "thread_id": thread, "after_seq": reply_seq - 1}))
        .await;
    let stored = ws.recv_type("message").await;
    assert_eq!(stored["message"]["status"], "streaming", "{stored}");
    assert_eq!(stored["message"]["seq"], reply_seq);
    // A delta can arrive twice (replayed and live) — clients apply each
    // index once, as the protocol says; so does this test.
    let mut parts: Vec<String> = Vec::new();
    fn apply(parts: &mut Vec<String>, d: &Value) {
        let index = d["index"].as_u64().unwrap() as usize;
        assert!(index <= parts.len(), "a gap before delta {index}: {d}");
        if index == parts.len() {
            parts.push(d["text"].as_str().unwrap().to_string());
        }
    }
    while parts.len() < 2 {
        apply(&mut parts, &ws.recv_type("delta").await);
    }
    assert_eq!(parts.concat(), "The first half, ");

    // The rest streams live to the new socket; nothing lost, nothing doubled.
    gate.notify_one();
    loop {
        let f = ws.recv().await;
        match f["type"].as_str() {
            Some("delta") => apply(&mut parts, &f),
            Some("done") => break,
            _ => {}
        }
    }
    let text = parts.concat();
    assert_eq!(text, "The first half, and the second half.");
    let stored: String = sqlx::query_scalar(
        "SELECT content FROM messages WHERE thread_id = $1::uuid AND role = 'assistant'",
    )
    .bind(&thread)
    .fetch_one(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!(stored, text);

    // A resume after the end returns the finished reply as a stored message.
    ws.send(json!({"type": "resume", "thread_id": thread, "after_seq": reply_seq - 1}))
        .await;
    let done = ws.recv_type("message").await;
    assert_eq!(done["message"]["status"], "complete");
    assert_eq!(done["message"]["content"], text.as_str());
}

/// A question sent while a reply of its thread is still being written waits
/// for it: its reply starts after the first one ended, with the next seq,
/// and its context holds the first reply whole. (A question to a thread
/// with no reply running starts its reply's row in the same statement.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_behind_a_running_reply_waits_for_it() {
    let h = Harness::start(BUILD, "api_chat_behind_a_running_reply").await;
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.script([Reply::Gated {
        before: vec!["The first ".into()],
        gate: gate.clone(),
        after: vec!["answer.".into()],
    }]);
    let mut ws = h.socket(&user).await;
    let ack = ws.send_message("w-1", None, "first").await;
    assert_eq!(ack["seq"], 1);
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let first = ws.recv_type("delta").await;
    assert_eq!(first["seq"], 2);

    let ack2 = ws.send_message("w-2", Some(&thread), "second").await;
    assert_eq!(ack2["seq"], 3);
    // Not asked yet: the thread's first reply is still being written.
    confab_core::clock::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(llm.requests().len(), 1);
    gate.notify_one();
    let done = ws.recv_type("done").await;
    assert_eq!(done["seq"], 2);
    let reply2 = ws.collect_reply().await;
    assert_eq!(reply2.done["seq"], 4);
    assert_eq!(reply2.text, echo_reply("second"));
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    let contents: Vec<String> = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &contents[1..],
        ["first", "The first answer.", "second"],
        "{contents:?}"
    );
}
