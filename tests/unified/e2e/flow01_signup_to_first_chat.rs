//! Flow 1 — complete new user registration → first chat, in a real browser.
//!
//! Landing page → "Sign up" → email and password → dashboard; the user row
//! exists in the auth database and the profile row in the backend's; the
//! first message goes over the socket; the agent's reply streams into the
//! page (seen while still being generated) and ends rendered as Markdown.

use crate::BUILD;
use confab_testkit::{browser::by_testid, eventually, user::unique_email, Harness, Options, Reply};
use fantoccini::{Client, Locator};
use std::sync::Arc;

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    let el = c.find(Locator::Css(css)).await.ok()?;
    el.attr(name).await.ok().flatten()
}

async fn text(c: &Client, css: &str) -> Option<String> {
    let el = c.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow01_signup_to_first_chat() {
    let h = Harness::start_with(
        BUILD,
        "flow01_signup_to_first_chat",
        Options::with_browser(),
    )
    .await;
    let gate = Arc::new(tokio::sync::Notify::new());
    h.llm.as_ref().expect("stand-in").script([Reply::Gated {
        before: vec!["Hello ".into(), "**there**".into()],
        gate: gate.clone(),
        after: vec![", I am ".into(), "streaming.".into()],
    }]);
    let email = unique_email("flow01");
    let browser = h.browser().await;
    let h = &h;
    browser
        .run(|c| async move {
            // 1. Landing page → sign up.
            c.goto(&h.web_url).await.expect("open landing page");
            by_testid(&c, "cta-signup").await.click().await.expect("click sign up");

            // 2. Enter name, email and password.
            by_testid(&c, "signup-display-name").await.send_keys("Ada Lovelace").await.unwrap();
            by_testid(&c, "signup-email").await.send_keys(&email).await.unwrap();
            by_testid(&c, "signup-password").await.send_keys("analytical engine 1843").await.unwrap();
            by_testid(&c, "signup-submit").await.click().await.unwrap();

            // 3. Lands on the dashboard, signed in.
            eventually(15, "the dashboard after sign-up", || async {
                let url = c.current_url().await.ok()?;
                (url.path() == "/app").then_some(())
            })
            .await;
            eventually(15, "the user's name in the header", || async {
                let t = text(&c, "[data-testid=user-display-name]").await?;
                t.contains("Ada Lovelace").then_some(())
            })
            .await;

            // Tokens as the architecture says: the refresh token only in an
            // httpOnly cookie (scoped to /v1/auth and invisible to script; its
            // attributes are checked in api_auth), nothing in web storage.
            let seen_by_script = c
                .execute(
                    "return [document.cookie, localStorage.length, sessionStorage.length]",
                    vec![],
                )
                .await
                .expect("run script");
            assert_eq!(seen_by_script, serde_json::json!(["", 0, 0]), "tokens exposed to script");

            // 4. The auth service created the user, the backend the profile.
            let (user_id, stored_email): (uuid::Uuid, String) =
                sqlx::query_as("SELECT id, email FROM users WHERE email = $1")
                    .bind(&email)
                    .fetch_one(&h.dbs.auth)
                    .await
                    .expect("user row in the auth database");
            assert_eq!(stored_email, email);
            let name: String = eventually(10, "the profile row in the backend database", || async {
                sqlx::query_scalar("SELECT display_name FROM profiles WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&h.dbs.backend)
                    .await
                    .ok()
                    .flatten()
            })
            .await;
            assert_eq!(name, "Ada Lovelace");
            eventually(10, "the socket to connect", || async {
                (attr(&c, "[data-testid=connection-status]", "data-state").await? == "connected").then_some(())
            })
            .await;

            // 5. The first message goes over the socket.
            by_testid(&c, "chat-input").await.send_keys("What is the Analytical Engine?").await.unwrap();
            by_testid(&c, "chat-send").await.click().await.unwrap();
            eventually(10, "the user's message in the chat", || async {
                let t = text(&c, "[data-testid=message][data-role=user]").await?;
                t.contains("What is the Analytical Engine?").then_some(())
            })
            .await;

            // 6. The reply streams in: part of it is on screen while the
            //    model is still generating (the stand-in holds the rest).
            let assistant = "[data-testid=message][data-role=assistant]";
            eventually(10, "the first part of the reply while streaming", || async {
                let status = attr(&c, assistant, "data-status").await?;
                let t = text(&c, assistant).await?;
                (status == "streaming" && t.contains("Hello")).then_some(())
            })
            .await;
            gate.notify_one();

            // 7. The finished reply is displayed, Markdown rendered.
            eventually(10, "the completed reply", || async {
                let status = attr(&c, assistant, "data-status").await?;
                (status == "complete").then_some(())
            })
            .await;
            let html = c
                .find(Locator::Css(&format!("{assistant} [data-testid=message-content]")))
                .await
                .expect("reply content")
                .html(true)
                .await
                .expect("reply html");
            assert!(html.contains("<strong>there</strong>"), "reply not rendered as Markdown: {html}");
            assert!(html.contains("I am streaming."), "reply incomplete: {html}");

            // The new thread is in the URL and in the history.
            let url = c.current_url().await.unwrap();
            assert!(url.path().starts_with("/app/t/"), "thread not in the URL: {url}");
            let thread_id = url.path().trim_start_matches("/app/t/").to_string();
            let listed = attr(&c, "[data-testid=thread-item]", "data-thread-id").await;
            assert_eq!(listed.as_deref(), Some(thread_id.as_str()));

            // And both messages are in the backend's database, in order.
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT role, content, status, seq FROM messages WHERE thread_id = $1::uuid ORDER BY seq",
            )
            .bind(&thread_id)
            .fetch_all(&h.dbs.backend)
            .await
            .unwrap();
            assert_eq!(rows.len(), 2, "{rows:?}");
            assert_eq!(rows[0].0, "user");
            assert_eq!(rows[0].1, "What is the Analytical Engine?");
            assert_eq!((rows[1].0.as_str(), rows[1].2.as_str()), ("assistant", "complete"));
            assert_eq!(rows[1].1, "Hello **there**, I am streaming.");
            assert_eq!((rows[0].3, rows[1].3), (1, 2));

            // A reload keeps the user signed in (the cookie refreshes the
            // in-memory access token) and shows the conversation from history.
            c.refresh().await.expect("reload");
            eventually(15, "the conversation after a reload", || async {
                let status = attr(&c, assistant, "data-status").await?;
                let t = text(&c, "[data-testid=message][data-role=user]").await?;
                (status == "complete" && t.contains("Analytical Engine")).then_some(())
            })
            .await;
            let html = c
                .find(Locator::Css(&format!("{assistant} [data-testid=message-content]")))
                .await
                .expect("reply content after reload")
                .html(true)
                .await
                .unwrap();
            assert!(html.contains("<strong>there</strong>"), "{html}");

            // Kept with the logs, to look at what a user saw.
            let png = c.screenshot().await.expect("screenshot");
            std::fs::write(h.artifacts.join("chat.png"), png).expect("save screenshot");
        })
        .await;
}
