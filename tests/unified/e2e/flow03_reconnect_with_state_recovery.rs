//! Flow 3 — reconnection with state recovery, in a real browser.
//!
//! Chromium reaches web through a fault-injecting TCP proxy (the testkit's
//! `FaultProxy`), so the network can fail under the page as it does under a
//! laptop: every connection cut mid-reply, new ones refused, or only the chat
//! socket refused while pages still load.
//!
//! - The connection is cut while a reply streams; a message is typed while
//!   offline; the page says "Reconnecting…", comes back by itself, and the
//!   interrupted reply completes exactly once, the offline message is
//!   delivered exactly once and answered, and the database thread matches
//!   the screen.
//! - A message waits unsent (the socket cannot get through) and the page is
//!   reloaded: it is kept in the browser, shown again, and sent after the
//!   reload — once.
//! - The backend instance writing a reply is SIGKILLed: the page is served
//!   by the other instance and shows the reply failed with Retry within
//!   seconds, and Retry answers it.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, log_in},
    eventually, FaultProxy, Harness, Network, Options, Reply,
};
use fantoccini::{Client, Locator};
use std::sync::Arc;

const STATUS: &str = "[data-testid=connection-status]";

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    let el = c.find(Locator::Css(css)).await.ok()?;
    el.attr(name).await.ok().flatten()
}

async fn send(c: &Client, message: &str) {
    by_testid(c, "chat-input")
        .await
        .send_keys(message)
        .await
        .unwrap();
    by_testid(c, "chat-send").await.click().await.unwrap();
}

/// Every message on screen: (role, status, text of its content).
async fn screen(c: &Client) -> Vec<(String, String, String)> {
    let v = c
        .execute(
            r#"return [...document.querySelectorAll('[data-testid="message"]')].map((el) => [
                 el.dataset.role, el.dataset.status,
                 el.querySelector('[data-testid="message-content"]').textContent.trim()])"#,
            vec![],
        )
        .await
        .expect("read the messages");
    serde_json::from_value(v).expect("rows")
}

/// The thread in the database: (role, status, content), in seq order.
async fn stored(h: &Harness, thread: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT role, status, content FROM messages WHERE thread_id = $1::uuid AND current ORDER BY seq",
    )
    .bind(thread)
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap()
}

async fn connection_state(c: &Client) -> Option<String> {
    attr(c, STATUS, "data-state").await
}

async fn wait_state(c: &Client, state: &str) {
    eventually(15, &format!("the connection to be {state}"), || async {
        (connection_state(c).await? == state).then_some(())
    })
    .await;
}

async fn shown_thread(c: &Client) -> String {
    let url = c.current_url().await.unwrap();
    url.path().trim_start_matches("/app/t/").to_string()
}

/// A first message answered while all is well; returns its thread.
async fn first_exchange(c: &Client) -> String {
    send(c, "before the outage").await;
    eventually(10, "the first reply", || async {
        let rows = screen(c).await;
        (rows.len() == 2 && rows[1].1 == "complete").then_some(())
    })
    .await;
    shown_thread(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow03_reconnect_with_state_recovery() {
    let h = Harness::start_with(
        BUILD,
        "flow03_reconnect_with_state_recovery",
        Options::with_browser(),
    )
    .await;
    let proxy = FaultProxy::start(&h.web_url).await;
    let user = h.sign_up().await;
    let llm = h.llm.clone().unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    llm.script([Reply::Gated {
        before: vec!["The first ".into(), "half, ".into()],
        gate: gate.clone(),
        after: vec!["and the ".into(), "second half.".into()],
    }]);
    let browser = h.browser().await;
    let (h, proxy) = (&h, &proxy);
    browser
        .run(|c| async move {
            log_in(&c, &proxy.url, &user).await;
            send(&c, "tell me something long").await;
            eventually(10, "the reply streaming", || async {
                let rows = screen(&c).await;
                let last = rows.last()?;
                (last.1 == "streaming" && last.2.starts_with("The first")).then_some(())
            })
            .await;
            let thread = shown_thread(&c).await;

            // The network goes away mid-reply.
            proxy.set(Network::Down);
            proxy.cut();
            eventually(10, "\"Reconnecting…\" on screen", || async {
                let label = c
                    .find(Locator::Css(&format!("{STATUS} .connection-label")))
                    .await
                    .ok()?;
                (label.text().await.ok()? == "Reconnecting…").then_some(())
            })
            .await;
            // Typed while offline: held, and said so.
            send(&c, "typed while offline").await;
            eventually(5, "the offline message pending", || async {
                let rows = screen(&c).await;
                let last = rows.last()?;
                (last.0 == "user" && last.1 == "pending" && last.2 == "typed while offline")
                    .then_some(())
            })
            .await;
            // The reply finishes on the server while the page is away.
            gate.notify_one();
            eventually(10, "the reply stored complete", || async {
                let rows = stored(h, &thread).await;
                (rows.len() == 2 && rows[1].1 == "complete").then_some(())
            })
            .await;

            // The network is back: the page reconnects by itself, catches up
            // on the reply and delivers the offline message.
            proxy.set(Network::Up);
            wait_state(&c, "connected").await;
            let rows = eventually(15, "both replies complete on screen", || async {
                let rows = screen(&c).await;
                (rows.len() == 4 && rows.iter().all(|r| r.1 == "complete")).then_some(rows)
            })
            .await;
            let expected = vec![
                (
                    "user".to_string(),
                    "complete".to_string(),
                    "tell me something long".to_string(),
                ),
                (
                    "assistant".into(),
                    "complete".into(),
                    "The first half, and the second half.".into(),
                ),
                (
                    "user".into(),
                    "complete".into(),
                    "typed while offline".into(),
                ),
                (
                    "assistant".into(),
                    "complete".into(),
                    "You said: typed while offline".into(),
                ),
            ];
            assert_eq!(rows, expected, "the screen");
            // The database holds exactly what the screen shows, each once;
            // the model was asked exactly twice.
            assert_eq!(stored(h, &thread).await, expected, "the database");
            let all: i64 =
                sqlx::query_scalar("SELECT count(*) FROM messages WHERE thread_id = $1::uuid")
                    .bind(&thread)
                    .fetch_one(&h.dbs.backend)
                    .await
                    .unwrap();
            assert_eq!(all, 4);
            assert_eq!(llm.requests().len(), 2);
            // Nothing is left waiting in the browser.
            let left = c
                .execute("return localStorage.length", vec![])
                .await
                .unwrap();
            assert_eq!(left, serde_json::json!(0));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow03_reload_with_an_unsent_message() {
    let h = Harness::start_with(
        BUILD,
        "flow03_reload_with_an_unsent_message",
        Options::with_browser(),
    )
    .await;
    let proxy = FaultProxy::start(&h.web_url).await;
    let user = h.sign_up().await;
    let browser = h.browser().await;
    let (h, proxy) = (&h, &proxy);
    browser
        .run(|c| async move {
            log_in(&c, &proxy.url, &user).await;
            let thread = first_exchange(&c).await;

            // Pages load, but the chat socket cannot get through.
            proxy.set(Network::NoSockets);
            proxy.cut();
            wait_state(&c, "reconnecting").await;
            send(&c, "kept across a reload").await;
            // Kept in the browser, and leaving the page would ask first.
            let kept = c
                .execute(
                    r#"const k = Object.keys(localStorage).find((k) => k.startsWith("confab:outbox:"));
                       const e = new Event("beforeunload", { cancelable: true });
                       window.dispatchEvent(e);
                       return [k, k && JSON.parse(localStorage.getItem(k)).map((m) => m.text), e.defaultPrevented];"#,
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(
                kept,
                serde_json::json!([format!("confab:outbox:{}", user.id), ["kept across a reload"], true])
            );

            // Reload (the warning is accepted, as a user leaving would).
            c.execute("window.location.reload()", vec![]).await.unwrap();
            if c.accept_alert().await.is_ok() {
                // The browser asked; leaving was confirmed.
            }
            eventually(15, "the unsent message shown again after the reload", || async {
                let rows = screen(&c).await;
                let last = rows.last()?;
                (rows.len() == 3 && last.1 == "pending" && last.2 == "kept across a reload").then_some(())
            })
            .await;
            assert_eq!(stored(h, &thread).await.len(), 2, "not sent yet");

            // The socket gets through: sent once, answered once.
            proxy.set(Network::Up);
            let rows = eventually(15, "the kept message answered", || async {
                let rows = screen(&c).await;
                (rows.len() == 4 && rows.iter().all(|r| r.1 == "complete")).then_some(rows)
            })
            .await;
            assert_eq!(rows[3].2, "You said: kept across a reload");
            assert_eq!(stored(h, &thread).await, rows, "the database matches the screen");
            let left = c.execute("return localStorage.length", vec![]).await.unwrap();
            assert_eq!(left, serde_json::json!(0));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow03_the_instance_writing_the_reply_is_killed() {
    let mut h = Harness::start_with(
        BUILD,
        "flow03_instance_killed",
        Options {
            backends: 2,
            env: vec![("CONFAB_REPLY_LEASE_SECS".into(), "1".into())],
            ..Options::with_browser()
        },
    )
    .await;
    let user = h.sign_up().await;
    // A reply that starts and never finishes on its instance.
    h.llm.as_ref().unwrap().script([Reply::Gated {
        before: vec!["Half of ".into()],
        gate: Arc::new(tokio::sync::Notify::new()),
        after: vec!["never".into()],
    }]);
    let browser = h.browser().await;
    let h = &mut h;
    let web = h.web_url.clone();
    browser
        .run(|c| async move {
            log_in(&c, &web, &user).await;
            let writer = usize::from(h.backend_sockets(1).await == 1);
            assert_eq!(h.backend_sockets(writer).await, 1);
            send(&c, "a question worth keeping").await;
            // Streaming, with its first words on screen: the model has
            // been asked (by the instance about to die).
            eventually(10, "the reply streaming", || async {
                let rows = screen(&c).await;
                (rows.len() == 2 && rows[1].1 == "streaming" && rows[1].2.starts_with("Half"))
                    .then_some(())
            })
            .await;
            assert_eq!(h.llm.as_ref().unwrap().requests().len(), 1);
            let thread = shown_thread(&c).await;

            h.kill_backend(writer);
            // Served by the other instance, the reply is failed with Retry
            // within seconds: never stuck streaming.
            eventually(8, "the reply failed with Retry", || async {
                let rows = screen(&c).await;
                let retry = c
                    .find(Locator::Css("[data-role=assistant] [data-testid=retry]"))
                    .await
                    .ok();
                (rows.len() == 2 && rows[1].1 == "failed" && retry.is_some()).then_some(())
            })
            .await;
            assert_eq!(connection_state(&c).await.as_deref(), Some("connected"));
            assert_eq!(
                h.backend_sockets(1 - writer).await,
                1,
                "the page is on the survivor"
            );
            let rows = stored(h, &thread).await;
            assert_eq!(
                rows[0],
                (
                    "user".into(),
                    "complete".into(),
                    "a question worth keeping".into()
                )
            );
            assert_eq!(rows[1].1, "failed");

            let retry = c
                .find(Locator::Css("[data-role=assistant] [data-testid=retry]"))
                .await
                .unwrap();
            c.execute(
                "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})",
                vec![serde_json::to_value(&retry).unwrap()],
            )
            .await
            .unwrap();
            retry.click().await.unwrap();
            let rows = eventually(10, "the retried reply", || async {
                let rows = screen(&c).await;
                (rows.len() == 2 && rows[1].1 == "complete").then_some(rows)
            })
            .await;
            assert_eq!(rows[1].2, "You said: a question worth keeping");
            assert_eq!(
                stored(h, &thread).await,
                rows,
                "the database matches the screen"
            );
        })
        .await;
}

/// PostgreSQL goes away under the services while the page is open: a
/// message typed meanwhile cannot be stored, so it stays pending with a note
/// saying it will be tried again (never dropped, never shown as sent), and
/// it is sent again by itself once PostgreSQL is back — stored once and
/// answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow03_a_message_sent_while_the_database_is_away() {
    let h = Harness::start_with(
        BUILD,
        "flow03_database_away",
        Options {
            pg_proxy: true,
            ..Options::with_browser()
        },
    )
    .await;
    let pg = h.pg_proxy.clone().unwrap();
    let user = h.sign_up().await;
    let browser = h.browser().await;
    let (h, pg) = (&h, &pg);
    browser
        .run(|c| async move {
            log_in(&c, &h.web_url, &user).await;
            let thread = first_exchange(&c).await;

            pg.set(Network::Down);
            pg.cut();
            send(&c, "while the database is away").await;
            eventually(10, "the message pending, to be tried again", || async {
                let rows = screen(&c).await;
                let last = rows.last()?;
                let note = c
                    .execute(
                        r#"const m = [...document.querySelectorAll('[data-testid="message"]')].pop();
                           return m.querySelector(".message-footer").textContent;"#,
                        vec![],
                    )
                    .await
                    .ok()?;
                let note = note.as_str()?.to_string();
                (rows.len() == 3 && last.1 == "pending" && note.contains("Trying again"))
                    .then_some(())
            })
            .await;
            assert_eq!(stored(h, &thread).await.len(), 2, "nothing stored meanwhile");

            pg.set(Network::Up);
            let rows = eventually(20, "the message sent again and answered", || async {
                let rows = screen(&c).await;
                (rows.len() == 4 && rows.iter().all(|r| r.1 == "complete")).then_some(rows)
            })
            .await;
            assert_eq!(rows[2].2, "while the database is away");
            assert_eq!(rows[3].2, "You said: while the database is away");
            assert_eq!(stored(h, &thread).await, rows, "the database matches the screen");
        })
        .await;
}
