//! Flow 4 — ten users at once, across two backend instances.
//!
//! Ten users sign up at the same moment through the real HTTP API (through
//! web); web fronts two backend instances and spreads their sockets over
//! both. Eight log in at once over HTTP and drive the socket protocol, all
//! sending at the same time, while two log in and chat in Chromium; each
//! message carries a unique marker that the LLM stand-in echoes. Every user sees only their own
//! replies, in order; every history in the database holds only its owner's
//! messages; no frame any socket user received carries another's marker,
//! and no browser page shows one.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, log_in},
    eventually, BrowserSpec, Harness, Options, Socket, TestUser,
};
use fantoccini::Client;
use futures::future::join_all;
use serde_json::{json, Value};

const USERS: usize = 10;
const BROWSER_USERS: usize = 2;
const MESSAGES: usize = 3;

/// The marker of message `j` of user `i` (unique to this run).
fn marker(run: &str, i: usize, j: usize) -> String {
    format!("mk-{run}-u{i}-m{j}")
}

/// Log in through web's proxy to auth, as the app does; the access token.
async fn log_in_http(h: &Harness, user: &TestUser) -> String {
    let (status, body) = h
        .post(
            &format!("{}/v1/auth/login", h.web_url),
            None,
            json!({"email": user.email, "password": user.password}),
        )
        .await;
    assert_eq!(status, 200, "login: {body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// Send each marker in turn on one socket, reading every frame to the
/// reply's `done`; returns the replies' texts and every frame received.
async fn chat_on_socket(ws: &mut Socket, markers: &[String]) -> (Vec<String>, Vec<Value>) {
    let mut frames = Vec::new();
    let mut replies = Vec::new();
    let mut thread: Option<String> = None;
    for (j, m) in markers.iter().enumerate() {
        let mut send = json!({"type": "send", "client_msg_id": format!("{m}-id"), "text": m});
        if let Some(t) = &thread {
            send["thread_id"] = t.as_str().into();
        }
        ws.send(send).await;
        let mut text = String::new();
        loop {
            let f = ws.recv().await;
            frames.push(f.clone());
            match f["type"].as_str() {
                Some("ack") => thread = f["thread_id"].as_str().map(str::to_string),
                Some("delta") => text.push_str(f["text"].as_str().unwrap_or_default()),
                Some("done") => break,
                Some("error") => panic!("error frame for message {j}: {f}"),
                _ => {}
            }
        }
        replies.push(text);
    }
    frames.extend(ws.frames_until_pong().await);
    (replies, frames)
}

async fn browser_chat(c: &Client, markers: &[String]) -> Vec<(String, String)> {
    for (j, m) in markers.iter().enumerate() {
        by_testid(c, "chat-input").await.send_keys(m).await.unwrap();
        by_testid(c, "chat-send").await.click().await.unwrap();
        eventually(20, &format!("reply {j} in the browser"), || async {
            let rows = rows(c).await;
            (rows.len() == 2 * (j + 1)
                && rows.last()?.0 == "assistant"
                && rows.last()?.1.contains(m.as_str()))
            .then_some(())
        })
        .await;
    }
    eventually(10, "every reply complete in the browser", || async {
        let done = c
            .execute(
                r#"return [...document.querySelectorAll('[data-testid="message"]')].every((el) => el.dataset.status === "complete")"#,
                vec![],
            )
            .await
            .ok()?;
        (done == json!(true)).then_some(())
    })
    .await;
    rows(c).await
}

async fn rows(c: &Client) -> Vec<(String, String)> {
    let v = c
        .execute(
            r#"return [...document.querySelectorAll('[data-testid="message"]')].map((el) => [
                 el.dataset.role, el.querySelector('[data-testid="message-content"]').textContent.trim()])"#,
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow04_concurrent_users() {
    let h = Harness::start_with(
        BUILD,
        "flow04_concurrent_users",
        Options {
            backends: 2,
            browsers: vec![BrowserSpec::DEFAULT; BROWSER_USERS],
            ..Default::default()
        },
    )
    .await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let h = &h;

    // Ten sign-ups at the same moment.
    let users: Vec<TestUser> = join_all((0..USERS).map(|_| h.sign_up())).await;
    h.mark("sign-ups");
    let markers: Vec<Vec<String>> = (0..USERS)
        .map(|i| (0..MESSAGES).map(|j| marker(&run, i, j)).collect())
        .collect();

    // The browser users log in on their pages and chat, while the socket
    // users log in (all at once) and chat on theirs.
    let browser_chats = async {
        let browsers = join_all((0..BROWSER_USERS).map(|_| h.browser())).await;
        join_all(browsers.into_iter().enumerate().map(|(i, b)| {
            let (user, markers) = (&users[i], &markers[i]);
            async move {
                let mut seen = Vec::new();
                let seen_ref = &mut seen;
                b.run(|c| async move {
                    log_in(&c, &h.web_url, user).await;
                    *seen_ref = browser_chat(&c, markers).await;
                })
                .await;
                seen
            }
        }))
        .await
    };
    let socket_chats = async {
        let tokens: Vec<String> =
            join_all(users[BROWSER_USERS..].iter().map(|u| log_in_http(h, u))).await;
        // Socket users connect through web; web spreads them over both instances.
        let mut sockets = Vec::new();
        for token in &tokens {
            let mut ws = h.raw_socket().await;
            ws.authenticate(token).await;
            sockets.push(ws);
        }
        let spread = [h.backend_sockets(0).await, h.backend_sockets(1).await];
        assert_eq!(spread.iter().sum::<u64>(), (USERS - BROWSER_USERS) as u64);
        assert!(
            spread.iter().all(|&n| n >= 3),
            "sockets not spread over both instances: {spread:?}"
        );
        h.mark("socket log-ins");
        // Eight sockets sending at once.
        join_all(
            sockets
                .iter_mut()
                .zip(&markers[BROWSER_USERS..])
                .map(|(ws, m)| chat_on_socket(ws, m)),
        )
        .await
    };
    let (socket_results, browser_results) = tokio::join!(socket_chats, browser_chats);
    h.mark("chats");

    let others = |i: usize| -> Vec<&String> {
        markers
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .flat_map(|(_, m)| m.iter())
            .collect()
    };

    // Socket users: their own replies, in order; no other user's marker in
    // any frame they received.
    for (k, (replies, frames)) in socket_results.iter().enumerate() {
        let i = k + BROWSER_USERS;
        let expected: Vec<String> = markers[i]
            .iter()
            .map(|m| format!("You said: {m}"))
            .collect();
        assert_eq!(replies, &expected, "user {i}'s replies");
        let foreign = others(i);
        for f in frames {
            let text = f.to_string();
            for m in &foreign {
                assert!(
                    !text.contains(m.as_str()),
                    "user {i} received another user's frame: {f}"
                );
            }
        }
    }
    // Browser users: the same, as seen on their page.
    for (i, rows) in browser_results.iter().enumerate() {
        let expected: Vec<(String, String)> = markers[i]
            .iter()
            .flat_map(|m| {
                [
                    ("user".to_string(), m.clone()),
                    ("assistant".to_string(), format!("You said: {m}")),
                ]
            })
            .collect();
        assert_eq!(rows, &expected, "browser user {i}'s page");
    }

    // Every history in the database holds only its owner's messages, in order.
    for (i, user) in users.iter().enumerate() {
        let contents: Vec<String> = sqlx::query_scalar(
            "SELECT m.content FROM messages m JOIN threads t ON t.id = m.thread_id
             WHERE t.user_id = $1::uuid ORDER BY m.seq",
        )
        .bind(&user.id)
        .fetch_all(&h.dbs.backend)
        .await
        .unwrap();
        let expected: Vec<String> = markers[i]
            .iter()
            .flat_map(|m| [m.clone(), format!("You said: {m}")])
            .collect();
        assert_eq!(contents, expected, "user {i}'s history");
        let foreign: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages m JOIN threads t ON t.id = m.thread_id
             WHERE t.user_id = $1::uuid AND m.user_id <> t.user_id",
        )
        .bind(&user.id)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap();
        assert_eq!(foreign, 0);
    }
}
