//! Agent errors over the real socket, against the LLM stand-in injecting
//! each kind of provider failure: what is retried automatically and what is
//! not, the code and `retryable` of each error frame, what is stored, the
//! operator's log line and metrics, the circuit breaker, Stop generating
//! (which cancels the upstream request) and Regenerate.

use crate::BUILD;
use confab_testkit::{llm::echo_reply, Harness, Options, Reply, Socket};
use serde_json::{json, Value};
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Options {
    Options {
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    }
}

/// Send `text` in `thread`; the error frame of its failed reply.
async fn failing(ws: &mut Socket, id: &str, thread: Option<&str>, text: &str) -> (String, Value) {
    let ack = ws.send_message(id, thread, text).await;
    let err = ws.recv_type("error").await;
    (ack["thread_id"].as_str().unwrap().to_string(), err)
}

async fn row(h: &Harness, id: &Value) -> (String, String, Option<String>, bool) {
    sqlx::query_as("SELECT status, content, error_code, current FROM messages WHERE id = $1::uuid")
        .bind(id.as_str().unwrap())
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_failures_are_classified() {
    let h = Harness::start_with(
        BUILD,
        "api_agent_status_failures",
        env(&[
            ("CONFAB_LLM_RETRIES", "1"),
            ("CONFAB_LLM_RETRY_BASE_MS", "20"),
            ("CONFAB_LLM_RETRY_MAX_WAIT_MS", "2000"),
            ("CONFAB_LLM_BREAKER_FAILURES", "0"),
        ]),
    )
    .await;
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;

    // 4xx: only an operator can fix these; never retried, no Retry button.
    let mut thread = None;
    for (status, code) in [
        (401, "agent_auth_failed"),
        (404, "agent_model_not_found"),
        (400, "agent_rejected"),
    ] {
        let before = llm.requests().len();
        llm.script([Reply::Status(status)]);
        let (t, err) = failing(&mut ws, &format!("s-{status}"), thread.as_deref(), "hi").await;
        thread = Some(t);
        assert_eq!(err["code"], code, "{err}");
        assert_eq!(err["retryable"], false, "{err}");
        assert_eq!(llm.requests().len(), before + 1, "{status} was retried");
        assert_eq!(row(&h, &err["message_id"]).await.2.as_deref(), Some(code));
    }
    let thread = thread.unwrap();
    let t = Some(thread.as_str());

    // 429 asking for longer than we wait: fails at once, says how long.
    let before = llm.requests().len();
    llm.script([Reply::RateLimited {
        retry_after: Some(30),
    }]);
    let (_, err) = failing(&mut ws, "rl-1", t, "busy?").await;
    assert_eq!(err["code"], "agent_rate_limited");
    assert_eq!(err["retryable"], true);
    assert!(
        err["message"].as_str().unwrap().contains("30 seconds"),
        "{err}"
    );
    assert_eq!(llm.requests().len(), before + 1);

    // 429 asking for a second: honoured, then the retry succeeds unseen.
    llm.script([Reply::RateLimited {
        retry_after: Some(1),
    }]);
    ws.send_message("rl-2", t, "patience").await;
    let reply = ws.collect_reply().await;
    assert_eq!(reply.text, echo_reply("patience"));
    let arrivals = llm.arrivals();
    let gap = arrivals[arrivals.len() - 1] - arrivals[arrivals.len() - 2];
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After not honoured: {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_are_classified() {
    let h = Harness::start_with(
        BUILD,
        "api_agent_transport_failures",
        env(&[
            ("CONFAB_LLM_FIRST_TOKEN_TIMEOUT_MS", "250"),
            ("CONFAB_LLM_IDLE_TIMEOUT_MS", "200"),
            ("CONFAB_LLM_RETRIES", "1"),
            ("CONFAB_LLM_RETRY_BASE_MS", "20"),
            ("CONFAB_LLM_BREAKER_FAILURES", "0"),
        ]),
    )
    .await;
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;
    let ack = ws.send_message("t-0", None, "hello").await;
    ws.collect_reply().await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let t = Some(thread.as_str());

    // No first token in time, twice: a timeout after one automatic retry.
    let before = llm.requests().len();
    let slow = || Reply::Delayed {
        delay: Duration::from_millis(1500),
        chunks: vec!["late".into()],
    };
    llm.script([slow(), slow()]);
    let (_, err) = failing(&mut ws, "to-1", t, "slow?").await;
    assert_eq!(err["code"], "agent_timeout", "{err}");
    assert_eq!(err["retryable"], true);
    assert_eq!(llm.requests().len(), before + 2);

    // Silence mid-reply: not retried (text was shown), partial kept.
    let before = llm.requests().len();
    llm.script([Reply::Stall {
        before: vec!["Half ".into(), "way".into()],
    }]);
    let (_, err) = failing(&mut ws, "st-1", t, "and then?").await;
    assert_eq!(err["code"], "agent_stalled", "{err}");
    assert!(err["html"].as_str().unwrap().contains("Half way"), "{err}");
    assert_eq!(llm.requests().len(), before + 1);
    let (status, content, _, _) = row(&h, &err["message_id"]).await;
    assert_eq!((status.as_str(), content.as_str()), ("failed", "Half way"));

    // A malformed chunk after some text: the text is kept.
    llm.script([Reply::MalformedAfter(vec!["Some ".into(), "text".into()])]);
    let (_, err) = failing(&mut ws, "mf-1", t, "garbled?").await;
    assert_eq!(err["code"], "agent_bad_response", "{err}");
    assert_eq!(err["retryable"], true);
    assert_eq!(row(&h, &err["message_id"]).await.1, "Some text");

    // The content filter: partial kept, Retry would hit it again.
    llm.script([Reply::Filtered(vec!["Well, ".into()])]);
    let (_, err) = failing(&mut ws, "cf-1", t, "something edgy").await;
    assert_eq!(err["code"], "agent_content_filtered", "{err}");
    assert_eq!(err["retryable"], false);
    assert_eq!(row(&h, &err["message_id"]).await.1, "Well, ");

    // The provider is down: connections refused, retried, then a failure
    // with the operator's log line; back up, Retry answers.
    llm.go_down().await;
    let (_, err) = failing(&mut ws, "down-1", t, "anyone there?").await;
    assert_eq!(err["code"], "agent_unreachable", "{err}");
    assert_eq!(err["retryable"], true);
    let request_id = err["request_id"].as_str().unwrap().to_string();
    let stored: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT request_id FROM messages WHERE id = $1::uuid")
            .bind(err["message_id"].as_str().unwrap())
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!(stored.map(|u| u.to_string()), Some(request_id.clone()));
    let log = h.log("backend");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reply failed") && l.contains(&request_id))
        .collect();
    assert_eq!(lines.len(), 1, "one log line per failure: {lines:?}");
    for field in [&user.id, &thread, "unreachable", "latency_ms", "openai"] {
        assert!(
            lines[0].contains(field),
            "{field} missing from {}",
            lines[0]
        );
    }
    llm.come_back().await;
    ws.send(json!({"type": "retry", "message_id": err["message_id"]}))
        .await;
    assert_eq!(ws.collect_reply().await.text, echo_reply("anyone there?"));

    // The operator's metrics.
    let metrics = h.metrics_text().await;
    for needle in [
        "llm_failures_total{provider=\"openai\",kind=\"unreachable\"}",
        "llm_failures_total{provider=\"openai\",kind=\"stalled\"}",
        "llm_retries_total{provider=\"openai\",kind=\"timeout\"}",
        "llm_time_to_first_token_seconds",
        "llm_request_seconds",
        "llm_breaker_state{provider=\"openai\"} 0",
    ] {
        assert!(metrics.contains(needle), "{needle} not in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_provider_trips_the_breaker_which_recovers() {
    let h = Harness::start_with(
        BUILD,
        "api_agent_breaker",
        env(&[
            ("CONFAB_LLM_RETRIES", "0"),
            ("CONFAB_LLM_BREAKER_FAILURES", "2"),
            ("CONFAB_LLM_BREAKER_COOLDOWN_MS", "600"),
        ]),
    )
    .await;
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;
    llm.script([Reply::Status(503), Reply::Status(503)]);
    let (thread, err) = failing(&mut ws, "b-1", None, "one").await;
    assert_eq!(err["code"], "agent_unavailable");
    let t = Some(thread.as_str());
    failing(&mut ws, "b-2", t, "two").await;
    assert_eq!(llm.requests().len(), 2);

    // Open: fails fast without asking the provider.
    let (_, err) = failing(&mut ws, "b-3", t, "three").await;
    assert_eq!(err["code"], "agent_circuit_open", "{err}");
    assert_eq!(err["retryable"], true);
    assert_eq!(
        llm.requests().len(),
        2,
        "an open breaker let a request through"
    );
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("llm_breaker_state{provider=\"openai\"} 2"),
        "{metrics}"
    );

    // After the cool-down (the configured time has to pass), one probe
    // goes through; it succeeds and the breaker closes.
    confab_core::clock::sleep(Duration::from_millis(700)).await;
    ws.send(json!({"type": "retry", "message_id": err["message_id"]}))
        .await;
    assert_eq!(ws.collect_reply().await.text, echo_reply("three"));
    ws.send_message("b-4", t, "four").await;
    assert_eq!(ws.collect_reply().await.text, echo_reply("four"));
    assert_eq!(llm.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keeps_the_partial_and_regenerate_keeps_every_attempt() {
    let h = Harness::start(BUILD, "api_agent_stop_regenerate").await;
    let llm = h.llm.as_ref().unwrap();
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;

    // A reply that would go on for ever; Stop ends it, keeps its text and
    // closes the request upstream.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.script([Reply::Gated {
        before: vec!["The first ".into(), "half".into()],
        gate,
        after: vec![],
    }]);
    let ack = ws.send_message("x-1", None, "tell me everything").await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let mut start = ws.recv_type("message").await;
    if start["message"]["role"] == "user" {
        start = ws.recv_type("message").await;
    }
    assert_eq!(start["message"]["status"], "streaming", "{start}");
    assert_eq!(start["message"]["reply_to"], ack["message_id"]);
    let reply_id = start["message"]["id"].clone();
    let mut text = String::new();
    while text != "The first half" {
        text.push_str(ws.recv_type("delta").await["text"].as_str().unwrap());
    }
    // A reply being written cannot be regenerated yet.
    ws.send(json!({"type": "retry", "message_id": reply_id}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "reply_in_progress");
    ws.send(json!({"type": "stop", "message_id": reply_id}))
        .await;
    let done = ws.recv_type("done").await;
    assert_eq!(done["status"], "stopped", "{done}");
    assert!(done["html"].as_str().unwrap().contains("The first half"));
    let (status, content, code, current) = row(&h, &reply_id).await;
    assert_eq!(
        (status.as_str(), content.as_str(), code, current),
        ("stopped", "The first half", None, true)
    );
    confab_testkit::eventually(5, "the upstream request to be cancelled", || async {
        (llm.abandoned() == 1).then_some(())
    })
    .await;
    ws.send(json!({"type": "stop", "message_id": reply_id}))
        .await;
    let err = ws.recv_type("error").await;
    assert_eq!(err["code"], "not_stoppable");
    assert_eq!(err["message_id"], reply_id);

    // Regenerate the stopped reply, then the good one: every attempt is
    // kept, the newest is current, and the conversation goes on.
    ws.send(json!({"type": "retry", "message_id": reply_id}))
        .await;
    let second = ws.collect_reply().await;
    assert_eq!(second.text, echo_reply("tell me everything"));
    llm.script([Reply::text("A different answer.")]);
    ws.send(json!({"type": "retry", "message_id": second.message_id}))
        .await;
    let third = ws.collect_reply().await;
    assert_eq!(third.text, "A different answer.");
    let attempts: Vec<(String, bool)> = sqlx::query_as(
        "SELECT status, current FROM messages WHERE reply_to = $1::uuid ORDER BY seq",
    )
    .bind(ack["message_id"].as_str().unwrap())
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!(
        attempts,
        vec![
            ("stopped".to_string(), false),
            ("complete".to_string(), false),
            ("complete".to_string(), true)
        ]
    );
    // The model sees only the current attempt as context.
    ws.send_message("x-2", Some(&thread), "and?").await;
    ws.collect_reply().await;
    let last = llm.requests().last().unwrap()["messages"].clone();
    let contents: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(contents.contains(&"A different answer."), "{contents:?}");
    assert!(!contents.contains(&"The first half"), "{contents:?}");
    assert!(
        !contents.contains(&echo_reply("tell me everything").as_str()),
        "{contents:?}"
    );
    // The history says which attempt is current.
    let history: Value = h
        .http
        .get(format!("{}/v1/threads/{thread}/messages", h.backend_url))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let replies: Vec<bool> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["reply_to"] == ack["message_id"])
        .map(|m| m["current"].as_bool().unwrap())
        .collect();
    assert_eq!(replies, vec![false, false, true], "{history}");
}
