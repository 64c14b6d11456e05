//! Flow 5 — token refresh during an active chat, in a real browser.
//!
//! Access tokens live one second. The page refreshes them before they lapse
//! (through the httpOnly cookie) and hands each new one to the open socket
//! with `reauth`: the user chats through several expiries without logging
//! in again, every message gets its reply, no error shows, and the socket
//! is the same connection throughout. In the variant the page withholds
//! `reauth` (`?debug-withhold-reauth`): the server closes the socket with
//! 4001 when the token lapses, the page refreshes and reconnects by itself,
//! and still nothing sent is lost or doubled.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, connected, log_in, log_in_then_open},
    eventually, Harness, Options, TestUser,
};
use fantoccini::{Client, Locator};

fn short_tokens() -> Options {
    Options {
        env: vec![("CONFAB_ACCESS_TOKEN_TTL_SECS".into(), "1".into())],
        ..Options::with_browser()
    }
}

async fn html_data(c: &Client, name: &str) -> u64 {
    c.execute(
        &format!("return document.documentElement.dataset.{name} || '0'"),
        vec![],
    )
    .await
    .ok()
    .and_then(|v| v.as_str().and_then(|s| s.parse().ok()))
    .unwrap_or(0)
}

/// Send `text` and wait until its reply is complete on the page.
async fn chat(c: &Client, text: &str, replies_before: usize) {
    by_testid(c, "chat-input")
        .await
        .send_keys(text)
        .await
        .unwrap();
    by_testid(c, "chat-send").await.click().await.unwrap();
    let want = replies_before + 1;
    eventually(10, &format!("the reply to {text:?}"), || async {
        let done = c
            .find_all(Locator::Css(
                "[data-testid=message][data-role=assistant][data-status=complete]",
            ))
            .await
            .ok()?
            .len();
        (done >= want).then_some(())
    })
    .await;
}

async fn no_error_shown(c: &Client) {
    let errors = c
        .find_all(Locator::Css("[data-testid=chat-error], .banner-error"))
        .await
        .unwrap();
    assert!(errors.is_empty(), "an error is shown on the page");
}

async fn stored_messages(h: &Harness, user: &TestUser) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT m.role, m.status FROM messages m JOIN threads t ON t.id = m.thread_id
         WHERE t.user_id = $1::uuid ORDER BY m.seq",
    )
    .bind(&user.id)
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow05_token_refresh_during_chat() {
    let h = Harness::start_with(BUILD, "flow05_token_refresh_during_chat", short_tokens()).await;
    let user = h.sign_up().await;
    let browser = h.browser().await;
    let (h, user) = (&h, &user);
    browser
        .run(|c| async move {
            log_in(&c, &h.web_url, user).await;
            h.mark("log-in");
            // Chat on until the page has handed the socket two new tokens:
            // two expiries of a one-second token (the second refresh spends
            // the refresh token the first one rotated), without a new log-in.
            // A person types between messages: pace them.
            let deadline = confab_core::clock::instant() + std::time::Duration::from_secs(8);
            let mut sent = 0;
            while html_data(&c, "socketReauths").await < 2 || sent < 3 {
                chat(&c, &format!("message number {sent}"), sent).await;
                sent += 1;
                assert!(
                    confab_core::clock::instant() < deadline,
                    "the page re-authenticated its socket only {} times",
                    html_data(&c, "socketReauths").await
                );
                confab_core::clock::sleep(std::time::Duration::from_millis(250)).await;
            }
            h.mark("chats");
            assert_eq!(
                html_data(&c, "socketConnects").await,
                1,
                "the socket reconnected"
            );
            no_error_shown(&c).await;
            let path = c.current_url().await.unwrap().path().to_string();
            assert!(path.starts_with("/app"), "left the chat for {path}");
            let rows = stored_messages(h, user).await;
            assert_eq!(rows.len(), 2 * sent, "{rows:?}");
            assert!(rows
                .iter()
                .skip(1)
                .step_by(2)
                .all(|(r, s)| r == "assistant" && s == "complete"));
        })
        .await;
    // The refreshes really were refreshes of one session: one chain.
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions WHERE user_id = $1::uuid AND revoked_at IS NULL",
    )
    .bind(&user.id)
    .fetch_one(&h.dbs.auth)
    .await
    .unwrap();
    assert_eq!(sessions, 2, "the sign-up session and the browser's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow05_expired_socket_reconnects_without_losing_anything() {
    let h = Harness::start_with(BUILD, "flow05_reconnect_on_expiry", short_tokens()).await;
    let user = h.sign_up().await;
    let browser = h.browser().await;
    let (h, user) = (&h, &user);
    browser
        .run(|c| async move {
            log_in_then_open(&c, &h.web_url, user, "/app?debug-withhold-reauth").await;
            connected(&c).await;
            h.mark("log-in");
            // Keep chatting across the server closing the socket (4001) and
            // the page reconnecting with a refreshed token.
            let deadline = confab_core::clock::instant() + std::time::Duration::from_secs(8);
            let mut sent = 0;
            while html_data(&c, "socketConnects").await < 2 || sent < 3 {
                chat(&c, &format!("still here {sent}"), sent).await;
                sent += 1;
                assert!(
                    confab_core::clock::instant() < deadline,
                    "the socket was never closed for its expired token"
                );
                confab_core::clock::sleep(std::time::Duration::from_millis(250)).await;
            }
            h.mark("chats");
            assert_eq!(html_data(&c, "socketReauths").await, 0);
            no_error_shown(&c).await;
            // Every message exactly once, each with its one reply.
            let rows = stored_messages(h, user).await;
            assert_eq!(rows.len(), 2 * sent, "lost or doubled: {rows:?}");
            let roles: Vec<&str> = rows.iter().map(|(r, _)| r.as_str()).collect();
            assert!(
                roles.chunks(2).all(|p| p == ["user", "assistant"]),
                "{roles:?}"
            );
        })
        .await;
}
