//! The admin console in Chromium (issue 16, part 2), against two backend
//! instances.
//!
//! The first account is the admin. It signs in, follows the "Admin console"
//! link and watches the status page while three users send six messages
//! through the real socket (one reply fails: the provider's stream is not
//! JSON): the page shows 3 sockets, 6 messages in the last minute, a time
//! to first token and the failure by kind, without a reload. On the users
//! page the admin finds one user by email and disables them while their
//! socket is open: the socket closes (4003 `account_disabled`), their
//! tokens are refused by auth and the backend, the log-in page says the
//! account is disabled. Enabled again, they can log in. Both actions are
//! in the audit log, with who, whom and from where.
//!
//! `ops_admin_console_forbidden`: an ordinary user opening each admin URL
//! gets the 403 notice and nothing of anyone else.

use crate::BUILD;
use confab_testkit::{browser::by_testid, eventually, Harness, Options, Reply, TestUser};
use fantoccini::{Client, Locator};
use serde_json::json;

async fn text_of(c: &Client, testid: &str) -> Option<String> {
    c.find(Locator::Css(&format!("[data-testid=\"{testid}\"]")))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

async fn shows(c: &Client, testid: &str, expected: &str) {
    eventually(10, &format!("{testid} to show {expected:?}"), || async {
        (text_of(c, testid).await? == expected).then_some(())
    })
    .await;
}

/// The user list's row for `email` (after searching for it).
async fn row_for(c: &Client, email: &str) -> fantoccini::elements::Element {
    eventually(10, &format!("the row of {email}"), || async {
        let rows = c
            .find_all(Locator::Css("[data-testid=admin-user-row]"))
            .await
            .ok()?;
        if rows.len() != 1 {
            return None;
        }
        let row = rows.into_iter().next()?;
        (row.attr("data-email").await.ok()?? == email).then_some(row)
    })
    .await
}

async fn row_status(c: &Client, email: &str, status: &str) {
    eventually(10, &format!("{email} to be {status}"), || async {
        let row = c
            .find(Locator::Css(&format!(
                "[data-testid=admin-user-row][data-email=\"{email}\"]"
            )))
            .await
            .ok()?;
        (row.attr("data-status").await.ok()?? == status).then_some(())
    })
    .await;
}

async fn log_in_api(h: &Harness, user: &TestUser) -> (u16, serde_json::Value) {
    h.post(
        &format!("{}/v1/auth/login", h.auth_url),
        None,
        json!({"email": user.email, "password": user.password}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_admin_console() {
    let h = Harness::start_with(
        BUILD,
        "ops_admin_console",
        Options {
            backends: 2,
            ..Options::default()
        },
    )
    .await;
    let admin = h.sign_up().await;
    // Chromium starts while the users sign up.
    let (browser, users) = tokio::join!(h.browser(), async {
        [h.sign_up().await, h.sign_up().await, h.sign_up().await]
    });
    let target = &users[1];
    let h = &h;
    let (admin, users) = (&admin, &users);
    browser
        .run(|c| async move {
            confab_testkit::browser::log_in(&c, &h.web_url, admin).await;
            let link = by_testid(&c, "admin-link").await;
            eventually(5, "the admin link", || async {
                link.is_displayed().await.ok()?.then_some(())
            })
            .await;
            link.click().await.unwrap();
            by_testid(&c, "admin-content").await;
            // The first reading is in. (The chat page the admin left may
            // still hold its socket: Chromium keeps it in the back-forward
            // cache. Count from what the backends say now.)
            shows(&c, "status-questions-total", "0").await;
            let before = h.backend_sockets(0).await + h.backend_sockets(1).await;
            c.execute("window.confabMarker = 42", vec![]).await.unwrap();

            // The load: three users, two messages each, through web's
            // socket (spread over both backends); the first reply fails.
            h.llm.as_ref().unwrap().script([Reply::Malformed]);
            let mut sockets = Vec::new();
            for (i, u) in users.iter().enumerate() {
                let mut ws = h.socket(u).await;
                let mut thread: Option<String> = None;
                for n in 0..2 {
                    let ack = ws
                        .send_message(
                            &format!("m-{i}-{n}"),
                            thread.as_deref(),
                            &format!("hello {i} {n}"),
                        )
                        .await;
                    thread = ack["thread_id"].as_str().map(String::from);
                    if i == 0 && n == 0 {
                        let error = ws.recv_type("error").await;
                        assert_eq!(error["code"], "agent_bad_response", "{error}");
                    } else {
                        ws.collect_reply().await;
                    }
                }
                sockets.push(ws);
            }
            let per_backend = (h.backend_sockets(0).await, h.backend_sockets(1).await);
            assert_eq!(per_backend.0 + per_backend.1, before + 3);
            // The page shows it, redrawn in place.
            shows(&c, "status-sockets", &(before + 3).to_string()).await;
            shows(&c, "status-messages-minute", "6").await;
            shows(&c, "status-questions-total", "6").await;
            shows(&c, "status-replies-total", "5").await;
            shows(&c, "status-failures-total", "1").await;
            shows(&c, "status-failures", "malformed 1").await;
            let p50 = text_of(&c, "status-ttft-p50").await.unwrap();
            assert!(
                p50.ends_with(" ms") || p50.ends_with(" s"),
                "ttft p50 {p50:?}"
            );
            assert_ne!(text_of(&c, "status-ttft-p99").await.unwrap(), "–");
            let rows = c
                .find_all(Locator::Css(
                    "[data-testid=status-backend-row][data-up=true]",
                ))
                .await
                .unwrap();
            assert_eq!(rows.len(), 2, "both backends shown");
            let paths = c
                .find_all(Locator::Css("[data-testid=chart-sockets] path"))
                .await
                .unwrap();
            assert!(!paths.is_empty(), "the sockets chart has lines");
            let marker = c
                .execute("return window.confabMarker", vec![])
                .await
                .unwrap();
            assert_eq!(marker, 42, "the page was reloaded");

            // The users page: find the target, disable them.
            by_testid(&c, "admin-nav-users")
                .await
                .click()
                .await
                .unwrap();
            let search = by_testid(&c, "admin-user-search").await;
            eventually(10, "the search box", || async {
                search.is_displayed().await.ok()?.then_some(())
            })
            .await;
            search.send_keys(&target.email).await.unwrap();
            let row = row_for(&c, &target.email).await;
            let cell = |id: &'static str| {
                let row = row.clone();
                async move {
                    row.find(Locator::Css(&format!("[data-testid={id}]")))
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap()
                }
            };
            let plan = row
                .find(Locator::Css("[data-testid=admin-user-plan]"))
                .await
                .unwrap();
            assert_eq!(
                plan.attr("data-plan").await.unwrap().as_deref(),
                Some("free")
            );
            assert_eq!(cell("admin-user-sessions").await, "1");
            assert_eq!(cell("admin-user-status").await, "Active");
            row.find(Locator::Css("[data-testid=admin-user-disable]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            row.find(Locator::Css("[data-testid=admin-user-confirm]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let (code, reason) = sockets[1].expect_close_with_reason().await;
            assert_eq!((code, reason.as_str()), (4003, "account_disabled"));
            row_status(&c, &target.email, "disabled").await;
            let notice = text_of(&c, "admin-users-notice").await.unwrap();
            assert!(notice.contains("1 session ended"), "{notice}");
            // The others keep chatting.
            sockets[0].send(json!({"type": "ping"})).await;
            assert_eq!(sockets[0].recv_type("pong").await["type"], "pong");

            // The target's tokens are refused everywhere, and log-in says why.
            let (s, _) = h
                .get(
                    &format!("{}/v1/auth/me", h.auth_url),
                    Some(&target.access_token),
                )
                .await;
            assert_eq!(s, 401);
            for b in &h.backend_urls {
                let (s, body) = h
                    .get(&format!("{b}/v1/threads"), Some(&target.access_token))
                    .await;
                assert_eq!(
                    (s, body["error"]["code"].as_str()),
                    (401, Some("session_revoked"))
                );
            }
            let (s, body) = h
                .post(
                    &format!("{}/v1/auth/refresh", h.auth_url),
                    None,
                    json!({"refresh_token": target.refresh_token}),
                )
                .await;
            assert_eq!(
                (s, body["error"]["reason"].as_str()),
                (401, Some("account_disabled"))
            );
            let (s, body) = log_in_api(h, target).await;
            assert_eq!(
                (s, body["error"]["code"].as_str()),
                (403, Some("account_disabled"))
            );
            // The log-in page, in another tab (a refused log-in sets no
            // cookie, so the admin's session is untouched).
            let console = c.window().await.unwrap();
            let tab = c.new_window(true).await.unwrap().handle;
            c.switch_to_window(tab).await.unwrap();
            c.goto(&format!("{}/login", h.web_url)).await.unwrap();
            by_testid(&c, "login-email")
                .await
                .send_keys(&target.email)
                .await
                .unwrap();
            by_testid(&c, "login-password")
                .await
                .send_keys(&target.password)
                .await
                .unwrap();
            by_testid(&c, "login-submit").await.click().await.unwrap();
            eventually(
                10,
                "the log-in page to say the account is disabled",
                || async {
                    let text = c
                        .find(Locator::Id("form-error"))
                        .await
                        .ok()?
                        .text()
                        .await
                        .ok()?;
                    text.contains("disabled by an administrator").then_some(())
                },
            )
            .await;
            c.close_window().await.unwrap();
            c.switch_to_window(console).await.unwrap();

            // Enabled again: they can log in.
            let row = row_for(&c, &target.email).await;
            row.find(Locator::Css("[data-testid=admin-user-enable]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            row_status(&c, &target.email, "active").await;
            let (s, body) = log_in_api(h, target).await;
            assert_eq!(s, 200, "{body}");

            // Both actions in the audit log, newest first.
            by_testid(&c, "admin-nav-audit")
                .await
                .click()
                .await
                .unwrap();
            let entries = eventually(10, "two audit entries", || async {
                let rows = c
                    .find_all(Locator::Css("[data-testid=admin-audit-row]"))
                    .await
                    .ok()?;
                (rows.len() == 2).then_some(rows)
            })
            .await;
            for (row, action) in entries.iter().zip(["user.enable", "user.disable"]) {
                assert_eq!(
                    row.attr("data-action").await.unwrap().as_deref(),
                    Some(action)
                );
                let text = row.text().await.unwrap();
                assert!(text.contains(&admin.email), "who: {text}");
                assert!(text.contains(&target.email), "whom: {text}");
                assert!(text.contains("127.0.0.1"), "from where: {text}");
            }
            let disable = entries[1].text().await.unwrap();
            assert!(disable.contains("1 session ended"), "{disable}");
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_admin_console_forbidden() {
    let h = Harness::start(BUILD, "ops_admin_console_forbidden").await;
    let admin = h.sign_up().await;
    let (browser, user) = tokio::join!(h.browser(), h.sign_up());
    let (h, admin, user) = (&h, &admin, &user);
    browser
        .run(|c| async move {
            confab_testkit::browser::log_in(&c, &h.web_url, user).await;
            let link = by_testid(&c, "admin-link").await;
            assert!(
                !link.is_displayed().await.unwrap(),
                "a user sees the admin link"
            );
            for path in [
                "/admin",
                "/admin/users",
                "/admin/audit",
                "/admin/users?q=user",
            ] {
                c.goto(&format!("{}{path}", h.web_url)).await.unwrap();
                let notice = by_testid(&c, "admin-forbidden").await;
                eventually(10, &format!("{path} to say 403"), || async {
                    notice.is_displayed().await.ok()?.then_some(())
                })
                .await;
                assert!(notice.text().await.unwrap().contains("403"));
                let content = by_testid(&c, "admin-content").await;
                assert!(!content.is_displayed().await.unwrap(), "{path}");
                assert_eq!(
                    content.html(true).await.unwrap().trim(),
                    "",
                    "{path} kept content"
                );
                let page = c.source().await.unwrap();
                assert!(
                    !page.contains(&admin.email),
                    "{path} shows the admin's email"
                );
            }
        })
        .await;
}
