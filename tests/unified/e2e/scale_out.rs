//! Scaling out: two backend processes on the same databases and Redis. Any
//! instance serves any socket — a user's sockets on different instances see
//! each other's messages and replies live — and a logout closes that
//! session's sockets on every instance at once.

use crate::BUILD;
use confab_testkit::{eventually, Harness, Options, Reply, Socket};
use serde_json::json;
use std::sync::Arc;

fn ws_url(base: &str) -> String {
    base.replacen("http://", "ws://", 1) + "/v1/ws"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_serve_one_user_and_logout_reaches_both() {
    let mut h = Harness::start(BUILD, "scale_out_two_backends").await;
    let second = h.add_backend().await;
    assert_ne!(second, h.backend_url);
    let user = h.sign_up().await;

    let mut a = Socket::connect(&ws_url(&h.backend_url), None).await;
    a.authenticate(&user.access_token).await;
    let mut b = Socket::connect(&ws_url(&second), None).await;
    b.authenticate(&user.access_token).await;

    // Sent through instance A, seen live through instance B.
    let ack = a.send_message("s-1", None, "hello from A").await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let reply = a.collect_reply().await;
    let seen = b.recv_type("message").await;
    assert_eq!(seen["message"]["content"], "hello from A");
    let mirrored = b.collect_reply().await;
    assert_eq!(mirrored.text, reply.text);

    // The thread continues through B; sequence numbers stay gap-free.
    let ack2 = b.send_message("s-2", Some(&thread), "and from B").await;
    assert_eq!(ack2["seq"], 3);
    let reply2 = b.collect_reply().await;
    assert_eq!(reply2.done["seq"], 4);
    assert_eq!(
        a.recv_type("message").await["message"]["content"],
        "and from B"
    );
    assert_eq!(a.collect_reply().await.text, reply2.text);

    // Logging out closes the session's sockets on both instances.
    assert_eq!(h.log_out(&user.access_token).await, 204);
    assert_eq!(a.expect_close().await, 4003);
    assert_eq!(b.expect_close().await, 4003);

    // And neither instance accepts the old token again.
    for base in [&h.backend_url, &second] {
        let mut c = Socket::connect(&ws_url(base), None).await;
        c.send(serde_json::json!({"type": "auth", "token": user.access_token}))
            .await;
        assert_eq!(c.recv_type("error").await["code"], "session_revoked");
        assert_eq!(c.expect_close().await, 4003);
    }
}

/// Web in front of two backend instances (one `CONFAB_BACKEND_URL` list).
/// The instance writing a reply is SIGKILLed mid-reply: the user's socket is
/// closed, a new one lands on the surviving instance, which has noticed the
/// dead instance's lapsed lease and failed the reply with a retry action
/// within seconds; the question is kept, and a retry answers it. The killed
/// instance, restarted on its address, gets sockets again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_never_strands_a_reply() {
    let mut h = Harness::start_with(
        BUILD,
        "scale_out_killed_instance",
        Options {
            backends: 2,
            env: vec![("CONFAB_REPLY_LEASE_SECS".into(), "1".into())],
            ..Default::default()
        },
    )
    .await;
    let user = h.sign_up().await;
    let llm = h.llm.clone().unwrap();
    // The reply starts and then waits for a gate that never opens.
    llm.script([Reply::Gated {
        before: vec!["Half of ".into()],
        gate: Arc::new(tokio::sync::Notify::new()),
        after: vec!["never".into()],
    }]);

    let mut ws = h.socket(&user).await;
    let writer = holding_one_socket(&h).await;
    let ack = ws
        .send_message("k-1", None, "a question worth keeping")
        .await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let delta = ws.recv_type("delta").await;
    let reply_id = delta["message_id"].as_str().unwrap().to_string();
    let reply_seq = delta["seq"].as_i64().unwrap();

    // What an interrupted reply keeps is what reached its live stream in
    // Redis. The writer hands its own sockets a piece before its queued
    // write to Redis lands, so a kill in between may lose that piece; kill
    // once it is there.
    let live = format!("{}live:{reply_id}", h.redis_prefix);
    let redis = h.redis.clone();
    eventually(5, "the piece in the reply's live stream", || {
        let (live, mut redis) = (live.clone(), redis.clone());
        async move {
            let n: i64 = redis::cmd("XLEN")
                .arg(&live)
                .query_async(&mut redis)
                .await
                .ok()?;
            (n > 0).then_some(())
        }
    })
    .await;
    h.kill_backend(writer);
    assert_eq!(
        ws.expect_close().await,
        1011,
        "web tells the browser the instance is gone"
    );

    // A new socket through web lands on the survivor.
    let mut ws = h.socket(&user).await;
    assert_eq!(h.backend_sockets(1 - writer).await, 1);
    ws.send(json!({"type": "resume", "thread_id": thread, "after_seq": reply_seq - 1}))
        .await;
    let stored = ws.recv_type("message").await;
    assert_eq!(stored["message"]["id"], reply_id.as_str());
    if stored["message"]["status"] == "streaming" {
        // Not noticed yet: the survivor says so as soon as it does.
        let failed = ws.recv_type("error").await;
        assert_eq!(failed["code"], "interrupted", "{failed}");
        assert_eq!(failed["message_id"], reply_id.as_str());
        assert_eq!(failed["thread_id"], thread.as_str());
        assert_eq!(failed["retryable"], true);
    } else {
        assert_eq!(stored["message"]["status"], "failed", "{stored}");
        assert_eq!(stored["message"]["error"]["code"], "interrupted");
    }
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT role, status, content FROM messages WHERE thread_id = $1::uuid ORDER BY seq",
    )
    .bind(&thread)
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!(
        rows[0],
        (
            "user".into(),
            "complete".into(),
            "a question worth keeping".into()
        )
    );
    assert_eq!(
        rows[1],
        ("assistant".into(), "failed".into(), "Half of ".into()),
        "partial text kept"
    );

    // Retry on the survivor: a fresh, complete reply.
    ws.send(json!({"type": "retry", "message_id": reply_id}))
        .await;
    let retried = ws.collect_reply().await;
    assert_eq!(retried.text, "You said: a question worth keeping");
    assert_ne!(retried.message_id, reply_id);

    // Restarted on its old address, the instance is taken back in: the next
    // socket goes to it (it holds none, the survivor one).
    h.restart_backend(writer).await;
    let back = eventually(5, "the restarted instance to get a socket", || async {
        let s = h.socket(&user).await;
        (h.backend_sockets(writer).await == 1).then_some(s)
    })
    .await;
    drop(back);
}

/// Which instance holds the only open socket.
async fn holding_one_socket(h: &Harness) -> usize {
    let counts = [h.backend_sockets(0).await, h.backend_sockets(1).await];
    assert_eq!(counts.iter().sum::<u64>(), 1, "{counts:?}");
    usize::from(counts[1] == 1)
}
