//! Flow 10 — sign-out reaches every device, in real browsers.
//!
//! One user signed in from two browsers ("laptop": Chrome on Linux, "phone":
//! a Safari-on-iPhone user agent) and one API client. The laptop's socket is
//! on backend A (through web A), the phone's and the API client's on backend
//! B (through web B): revocation has to cross instances through Redis.
//!
//! From the phone's settings, "Sign out" on the laptop's row: the laptop's
//! token is refused by auth and by the backend, its socket closes within a
//! second (its page is on the log-in page saying "You were signed out on
//! another device"), its refresh token is dead; the phone keeps chatting.
//! Then "Sign out everywhere" from the phone: every token refused, every
//! socket closed, every refresh token dead, every page on the log-in page
//! saying why.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, log_in},
    eventually, BrowserSpec, Harness, Options, Socket,
};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

const PHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

async fn chat(c: &Client, text: &str) {
    let done = "[data-testid=message][data-role=assistant][data-status=complete]";
    let before = c.find_all(Locator::Css(done)).await.unwrap().len();
    by_testid(c, "chat-input")
        .await
        .send_keys(text)
        .await
        .unwrap();
    by_testid(c, "chat-send").await.click().await.unwrap();
    eventually(10, &format!("the reply to {text:?}"), || async {
        (c.find_all(Locator::Css(done)).await.ok()?.len() > before).then_some(())
    })
    .await;
}

/// This page's session's tokens, as its own script could fetch them (a
/// same-origin refresh without the cookie-only header answers with both).
/// The page's cookie moves to the same successor, so the page carries on.
async fn tokens_of(c: &Client) -> (String, String) {
    let v = c
        .execute_async(
            "const done = arguments[0];
             fetch('/v1/auth/refresh', {method: 'POST', credentials: 'same-origin'})
               .then(r => r.json()).then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .expect("refresh from the page");
    (
        v["access_token"]
            .as_str()
            .expect("access token")
            .to_string(),
        v["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_string(),
    )
}

/// The log-in page with the reason, on this window.
async fn on_login_saying(c: &Client, text: &str) {
    eventually(10, &format!("the log-in page saying {text:?}"), || async {
        if c.current_url().await.ok()?.path() != "/login" {
            return None;
        }
        let el = c
            .find(Locator::Css("[data-testid=signed-out-reason]"))
            .await
            .ok()?;
        let shown = el.text().await.ok()?;
        (shown == text).then_some(())
    })
    .await;
}

async fn refused_everywhere(h: &Harness, backends: &[&str], access: &str) {
    let (s, _) = h
        .get(&format!("{}/v1/auth/me", h.auth_url), Some(access))
        .await;
    assert_eq!(s, 401, "auth accepted a signed-out token");
    for b in backends {
        let (s, body) = h.get(&format!("{b}/v1/threads"), Some(access)).await;
        assert_eq!(s, 401, "backend {b} accepted a signed-out token");
        assert_eq!(body["error"]["code"], "session_revoked");
    }
}

async fn refresh_is_dead(h: &Harness, refresh: &str, reason: &str) {
    let (s, body): (u16, Value) = h
        .post(
            &format!("{}/v1/auth/refresh", h.auth_url),
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["error"]["reason"], reason, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow10_logout_everywhere() {
    let h = Harness::start_with(
        BUILD,
        "flow10_logout_everywhere",
        Options {
            browsers: vec![
                BrowserSpec::named("laptop", None),
                BrowserSpec::named("phone", Some(PHONE_UA)),
            ],
            second_origin: true,
            ..Default::default()
        },
    )
    .await;
    let (backend_b, web_b) = h.second_origin.clone().expect("second origin");
    let (web_a, backend_a) = (h.web_url.clone(), h.backend_url.clone());
    let user = h.sign_up().await; // the API client's session
    let mut api_socket =
        Socket::connect(&(backend_b.replacen("http", "ws", 1) + "/v1/ws"), None).await;
    api_socket.authenticate(&user.access_token).await;

    let (laptop, phone) = tokio::join!(
        h.browser_as("laptop", None),
        h.browser_as("phone", Some(PHONE_UA))
    );
    let h = &h;
    h.mark("browsers");
    let backends = [backend_a.as_str(), backend_b.as_str()];
    let (user, web_a, web_b, backends) = (&user, &web_a, &web_b, &backends);
    laptop
        .run(|l| async move {
            phone
                .run(|p| async move {
                    // Two devices, used at the same time.
                    tokio::join!(log_in(&l, web_a, user), log_in(&p, web_b, user));
                    tokio::join!(
                        chat(&l, "hello from the laptop"),
                        chat(&p, "hello from the phone")
                    );
                    h.mark("log-ins and chats");
                    let ((laptop_access, laptop_refresh), (phone_access, phone_refresh)) =
                        tokio::join!(tokens_of(&l), tokens_of(&p));

                    // The phone opens its settings in a second tab.
                    let chat_tab = p.window().await.unwrap();
                    let settings_tab = p.new_window(true).await.unwrap().handle;
                    p.switch_to_window(settings_tab.clone()).await.unwrap();
                    p.goto(&format!("{web_b}/settings")).await.unwrap();
                    let laptop_row = eventually(10, "the laptop in the phone's session list", || async {
                        for row in p.find_all(Locator::Css("[data-testid=session-row]")).await.ok()? {
                            let device = row.find(Locator::Css("[data-testid=session-device]")).await.ok()?;
                            if device.text().await.ok()?.starts_with("Chrome on Linux") {
                                return Some(row);
                            }
                        }
                        None
                    })
                    .await;
                    let rows = p.find_all(Locator::Css("[data-testid=session-row][data-current=true]")).await.unwrap();
                    assert_eq!(rows.len(), 1, "this device is marked");
                    assert!(rows[0].text().await.unwrap().contains("Safari on iOS"));

                    h.mark("session list");
                    // "Sign out" on the laptop's row.
                    let started = confab_core::clock::instant();
                    laptop_row
                        .find(Locator::Css("[data-testid=session-sign-out]"))
                        .await
                        .unwrap()
                        .click()
                        .await
                        .unwrap();
                    // The laptop's socket (on backend A) closed and its page left.
                    eventually(5, "the laptop's page to leave the chat", || async {
                        (l.current_url().await.ok()?.path() == "/login").then_some(())
                    })
                    .await;
                    // How fast is a benchmark's figure (bench-sessions), not
                    // an assertion: a loaded machine stretches it.
                    eprintln!("laptop's page left {:?} after the sign-out", started.elapsed());
                    on_login_saying(&l, "You were signed out on another device.").await;
                    refused_everywhere(h, backends, &laptop_access).await;
                    refresh_is_dead(h, &laptop_refresh, "signed_out_elsewhere").await;

                    h.mark("laptop signed out");
                    // The phone keeps chatting, on the same connection.
                    p.switch_to_window(chat_tab.clone()).await.unwrap();
                    chat(&p, "still chatting on the phone").await;
                    let connects = p.execute("return document.documentElement.dataset.socketConnects", vec![]).await.unwrap();
                    assert_eq!(connects, "1");
                    api_socket.send(json!({"type": "ping"})).await;
                    assert_eq!(api_socket.recv_type("pong").await["type"], "pong");

                    h.mark("phone chats on");
                    // "Sign out everywhere" from the phone's settings.
                    p.switch_to_window(settings_tab).await.unwrap();
                    by_testid(&p, "sign-out-everywhere").await.click().await.unwrap();
                    on_login_saying(&p, "Signed out everywhere.").await;
                    let (code, reason) = api_socket.expect_close_with_reason().await;
                    assert_eq!((code, reason.as_str()), (4003, "signed_out_everywhere"));
                    p.switch_to_window(chat_tab).await.unwrap();
                    on_login_saying(&p, "Signed out everywhere.").await;
                    for access in [&phone_access, &user.access_token] {
                        refused_everywhere(h, backends, access).await;
                    }
                    for refresh in [&phone_refresh, &user.refresh_token] {
                        refresh_is_dead(h, refresh, "signed_out_everywhere").await;
                    }
                    // Every session of the account ended, each with its reason.
                    let open: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM sessions WHERE user_id = $1::uuid AND revoked_at IS NULL",
                    )
                    .bind(&user.id)
                    .fetch_one(&h.dbs.auth)
                    .await
                    .unwrap();
                    assert_eq!(open, 0);
                })
                .await;
        })
        .await;
}
