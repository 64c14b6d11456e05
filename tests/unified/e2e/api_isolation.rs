//! Isolation, tried from the other side: Mallory holds every id of Alice's
//! (her thread, her messages, her client message id) and uses them in each
//! socket frame and HTTP call that takes one. Each is `not_found` / 404 — the
//! same answer as an id that never existed, so not even existence leaks — and
//! nothing of Alice's reaches any frame Mallory's socket receives, while
//! Alice's own socket keeps working.

use crate::BUILD;
use confab_testkit::Harness;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_ids_are_not_found_and_nothing_of_theirs_reaches_a_frame() {
    let h = Harness::start(BUILD, "api_isolation").await;
    let alice = h.sign_up().await;
    let mallory = h.sign_up().await;
    const SECRET: &str = "alice-secret-7f3a";

    let mut a = h.socket(&alice).await;
    let mut m = h.socket(&mallory).await;
    let ack = a
        .send_message("alice-1", None, &format!("{SECRET} question"))
        .await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let question = ack["message_id"].as_str().unwrap().to_string();
    let reply = a.collect_reply().await;
    assert!(reply.text.contains(SECRET));

    // Every frame that takes an id, with Alice's ids.
    let attempts = [
        json!({"type": "send", "client_msg_id": "m-1", "thread_id": thread, "text": "let me in"}),
        json!({"type": "resume", "thread_id": thread, "after_seq": 0}),
        json!({"type": "retry", "message_id": question}),
        json!({"type": "retry", "message_id": reply.message_id}),
    ];
    for frame in attempts {
        m.send(frame.clone()).await;
        let answer = m.recv().await;
        assert_eq!(answer["type"], "error", "{frame} → {answer}");
        assert_eq!(answer["code"], "not_found", "{frame} → {answer}");
    }
    // Her client message id is hers: the same id from Mallory is a new
    // message in a new thread of Mallory's, not a duplicate of Alice's.
    let mine = m.send_message("alice-1", None, "my own words").await;
    assert_eq!(mine["duplicate"], false);
    assert_ne!(mine["thread_id"].as_str(), Some(thread.as_str()));
    assert_ne!(mine["message_id"].as_str(), Some(question.as_str()));
    m.collect_reply().await;

    // HTTP: the thread, its history (both directions of paging) and a rename.
    for path in [
        format!("/v1/threads/{thread}"),
        format!("/v1/threads/{thread}/messages"),
        format!("/v1/threads/{thread}/messages?after_seq=0"),
        format!("/v1/threads/{thread}/messages?before_seq=100"),
    ] {
        let (status, body) = h
            .get(&format!("{}{path}", h.web_url), Some(&mallory.access_token))
            .await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
        assert!(!body.to_string().contains(SECRET));
    }
    for (method, path, body) in [
        (
            reqwest::Method::PATCH,
            format!("/v1/threads/{thread}"),
            Some(json!({"title": "mine now"})),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/threads/{thread}/export"),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/threads/{thread}"),
            None,
        ),
    ] {
        let url = format!("{}{path}", h.web_url);
        let (status, answer) = h
            .call(method.clone(), &url, Some(&mallory.access_token), body)
            .await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (_, list) = h
        .get(
            &format!("{}/v1/threads", h.web_url),
            Some(&mallory.access_token),
        )
        .await;
    assert_eq!(list["threads"].as_array().unwrap().len(), 1, "{list}");

    // Alice writes again while Mallory listens: none of it reaches Mallory.
    a.send_message("alice-2", Some(&thread), &format!("{SECRET} again"))
        .await;
    a.collect_reply().await;
    let seen: Vec<Value> = m.frames_until_pong().await;
    for f in &seen {
        let text = f.to_string();
        assert!(!text.contains(SECRET), "Mallory received {f}");
        assert!(!text.contains(&thread), "Mallory received {f}");
        assert!(!text.contains(&alice.id), "Mallory received {f}");
    }

    // Nothing changed for Alice: two questions, two replies, one thread.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT role, user_id::text FROM messages WHERE thread_id = $1::uuid ORDER BY seq",
    )
    .bind(&thread)
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|(_, owner)| owner == &alice.id), "{rows:?}");
    let title: String = sqlx::query_scalar("SELECT title FROM threads WHERE id = $1::uuid")
        .bind(&thread)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap();
    assert!(title.contains(SECRET));
}
