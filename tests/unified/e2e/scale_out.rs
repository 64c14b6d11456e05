//! Scaling out: two backend processes on the same databases and Redis. Any
//! instance serves any socket — a user's sockets on different instances see
//! each other's messages and replies live — and a logout closes that
//! session's sockets on every instance at once.

use crate::BUILD;
use confab_testkit::{Harness, Socket};

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
