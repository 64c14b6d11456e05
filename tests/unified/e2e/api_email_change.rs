//! Changing the email: asked for with the password in settings, confirmed
//! only by the link mailed to the new address (captured by a real SMTP
//! server, aiosmtpd), then carried by `user.updated` to the backend and the
//! open pages. The API cases cover every refusal; the browser case is the
//! whole path a person takes.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, emulate, log_in, screenshot},
    eventually,
    user::unique_email,
    Harness, Mail, Options, TestUser,
};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

fn with_smtp(env: &[(&str, &str)]) -> Options {
    Options {
        smtp: true,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

async fn ask(h: &Harness, user: &TestUser, new_email: &str, password: &str) -> (u16, Value) {
    h.post(
        &format!("{}/v1/auth/me/email", h.auth_url),
        Some(&user.access_token),
        json!({"new_email": new_email, "password": password}),
    )
    .await
}

async fn confirm(h: &Harness, token: &str) -> (u16, Value) {
    h.post(
        &format!("{}/v1/auth/email/confirm", h.auth_url),
        None,
        json!({ "token": token }),
    )
    .await
}

/// The secret of a mailed link (`…/email/confirm#token=…`).
fn token_of(mail: &Mail) -> String {
    let link = mail.link().expect("a link in the mail");
    link.split_once("#token=")
        .unwrap_or_else(|| panic!("not a confirmation link: {link}"))
        .1
        .to_string()
}

async fn auth_email(h: &Harness, user: &TestUser) -> String {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1::uuid")
        .bind(&user.id)
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_email_change_refusals_and_single_use_links() {
    let h = Harness::start_with(BUILD, "api_email_change", with_smtp(&[])).await;
    let smtp = h.smtp.as_ref().unwrap();
    let alice = h.sign_up().await;
    let bob = h.sign_up().await;
    let url = format!("{}/v1/auth/me/email", h.auth_url);

    // Malformed bodies: not JSON, a missing field, an unknown one.
    let r = h
        .http
        .post(&url)
        .bearer_auth(&alice.access_token)
        .header("content-type", "application/json")
        .body("{\"new_email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "malformed_request");
    for bad in [
        json!({"new_email": "a@example.test"}),
        json!({"new_email": "a@example.test", "password": "x", "email": "b@example.test"}),
    ] {
        let (status, body) = h.post(&url, Some(&alice.access_token), bad).await;
        assert_eq!((status, code(&body)), (400, "malformed_request"), "{body}");
    }
    // No token, no change.
    let (status, _) = h
        .post(
            &url,
            None,
            json!({"new_email": "a@example.test", "password": "x"}),
        )
        .await;
    assert_eq!(status, 401);

    // A wrong password: refused, naming the password, and nothing mailed.
    let wrong_pw_target = unique_email("wrongpw");
    let (status, body) = ask(&h, &alice, &wrong_pw_target, "not my password").await;
    assert_eq!((status, code(&body)), (403, "reauthentication_required"));
    assert_eq!(body["error"]["field"], "password");

    // HTML and SQL in the address are refused as addresses, not run.
    for evil in [
        "<script>alert(1)</script>@example.test",
        "x'; DROP TABLE users; --@example.test",
        "\"><img src=x onerror=alert(1)>@example.test",
        "alice@example.test\r\nBcc: victim@example.test",
    ] {
        let (status, body) = ask(&h, &alice, evil, &alice.password).await;
        assert_eq!(
            (status, code(&body)),
            (422, "validation_failed"),
            "{evil}: {body}"
        );
        assert_eq!(body["error"]["field"], "new_email", "{evil}");
    }
    // Its own address again.
    let (status, body) = ask(&h, &alice, &alice.email.to_uppercase(), &alice.password).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));

    // An address another account has: the same answer as a free one (no
    // enumeration); the owner of that mailbox gets a note, no link.
    let (status, taken) = ask(&h, &alice, &bob.email.to_uppercase(), &alice.password).await;
    assert_eq!(status, 202, "{taken}");
    assert_eq!(taken["pending_email"], bob.email);
    let note = &smtp.wait_for(&bob.email, 1).await[0];
    assert!(
        note.link().is_none_or(|l| !l.contains("/email/confirm")),
        "{}",
        note.text
    );
    assert!(note.text.contains("already uses"), "{}", note.text);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM email_changes")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(rows, 0, "no pending change for a taken address");

    // A quote is legal in an address: accepted and stored as text.
    let new_email = format!("o'hara+{}", unique_email("new"));
    let (status, free) = ask(&h, &alice, &new_email, &alice.password).await;
    assert_eq!(status, 202, "{free}");
    // Both answers have the same fields and the same sentence.
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&taken), keys(&free));
    assert_eq!(
        taken["message"].as_str().unwrap().replace(&bob.email, "X"),
        free["message"].as_str().unwrap().replace(&new_email, "X")
    );
    let link_mail = smtp.wait_for(&new_email, 1).await.remove(0);
    assert_eq!(
        link_mail.subject,
        "Confirm your new email address for Confab"
    );
    assert!(
        link_mail.from.contains("confab@test.invalid"),
        "{}",
        link_mail.from
    );
    let link = link_mail.link().unwrap();
    assert!(
        link.starts_with(&format!("{}/email/confirm#token=", h.web_url)),
        "{link}"
    );
    let token = token_of(&link_mail);
    // The old address got a notice (one for each request) naming the new one.
    let notices = smtp.wait_for(&alice.email, 2).await;
    assert!(notices.iter().any(|m| m.text.contains(&new_email)));
    assert!(notices
        .iter()
        .all(|m| m.link().is_none_or(|l| !l.contains("#token="))));
    // Nothing went to the address of the wrong-password attempt.
    assert!(smtp
        .messages()
        .iter()
        .all(|m| !m.to.contains(&wrong_pw_target)));

    // Stored hashed: the row holds SHA-256 of the secret, never the secret.
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    let (stored_email, found): (String, i64) = sqlx::query_as(
        "SELECT new_email, count(*) OVER () FROM email_changes WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_one(&h.dbs.auth)
    .await
    .unwrap();
    assert_eq!((stored_email.as_str(), found), (new_email.as_str(), 1));
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_changes WHERE position($1::bytea in token_hash) > 0",
    )
    .bind(token.as_bytes())
    .fetch_one(&h.dbs.auth)
    .await
    .unwrap();
    assert_eq!(plain, 0);

    // Until the link is used nothing changed: the old address still logs in.
    assert_eq!(auth_email(&h, &alice).await, alice.email);
    let (status, _) = h
        .post(
            &format!("{}/v1/auth/login", h.auth_url),
            None,
            json!({"email": new_email, "password": alice.password}),
        )
        .await;
    assert_eq!(status, 401);

    // Forged secrets.
    let forged = "A".repeat(43);
    for bad in [forged.as_str(), "' OR '1'='1", "", &token[..20]] {
        let (status, body) = confirm(&h, bad).await;
        assert_eq!(
            (status, code(&body)),
            (400, "email_link_invalid"),
            "{bad:?}"
        );
    }
    let r = h
        .http
        .post(format!("{}/v1/auth/email/confirm", h.auth_url))
        .header("content-type", "application/json")
        .body("token=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The link: once. An open chat socket of Alice's hears the change.
    let mut ws = h.socket(&alice).await;
    let (status, me) = confirm(&h, &token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], new_email.as_str());
    assert_eq!(me["profile_version"], 2);
    let (status, body) = confirm(&h, &token).await;
    assert_eq!((status, code(&body)), (410, "email_link_used"));
    assert_eq!(auth_email(&h, &alice).await, new_email);
    let frame = ws.recv_type("event").await;
    assert_eq!(frame["kind"], "profile.updated", "{frame}");
    assert_eq!(frame["profile"]["email"], new_email.as_str());
    ws.close().await;

    // The new address logs in, the old one no longer does; the users table
    // survived the SQL-looking input.
    let login = |email: String| {
        let h = &h;
        let password = alice.password.clone();
        async move {
            h.post(
                &format!("{}/v1/auth/login", h.auth_url),
                None,
                json!({"email": email, "password": password}),
            )
            .await
            .0
        }
    };
    assert_eq!(login(new_email.clone()).await, 200);
    assert_eq!(login(alice.email.clone()).await, 401);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(users, 2);

    // `user.updated` took it to the backend.
    h.events_settled().await;
    let (backend_email, version): (String, i64) =
        sqlx::query_as("SELECT email, version FROM profiles WHERE user_id = $1::uuid")
            .bind(&alice.id)
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!((backend_email.as_str(), version), (new_email.as_str(), 2));

    // A newer request makes the older link void.
    let first = unique_email("first");
    let second = unique_email("second");
    assert_eq!(ask(&h, &bob, &first, &bob.password).await.0, 202);
    assert_eq!(ask(&h, &bob, &second, &bob.password).await.0, 202);
    let old_token = token_of(&smtp.wait_for(&first, 1).await[0]);
    let new_token = token_of(&smtp.wait_for(&second, 1).await[0]);
    let (status, body) = confirm(&h, &old_token).await;
    assert_eq!((status, code(&body)), (400, "email_link_invalid"));
    assert_eq!(confirm(&h, &new_token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_email_change_link_expires() {
    let h = Harness::start_with(
        BUILD,
        "api_email_change_link_expires",
        with_smtp(&[("CONFAB_EMAIL_CHANGE_TTL_SECS", "1")]),
    )
    .await;
    let alice = h.sign_up().await;
    let new_email = unique_email("late");
    let (status, body) = ask(&h, &alice, &new_email, &alice.password).await;
    assert_eq!(status, 202, "{body}");
    let mail = h
        .smtp
        .as_ref()
        .unwrap()
        .wait_for(&new_email, 1)
        .await
        .remove(0);
    assert!(mail.text.contains("within 1 second"), "{}", mail.text);
    // The link's lifetime is one second; let it pass.
    confab_core::clock::sleep(Duration::from_millis(1100)).await;
    let (status, body) = confirm(&h, &token_of(&mail)).await;
    assert_eq!((status, code(&body)), (410, "email_link_expired"), "{body}");
    assert_eq!(auth_email(&h, &alice).await, alice.email);
}

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_change_in_settings_reaches_every_page() {
    let h = Harness::start_with(BUILD, "email_change_in_settings", with_smtp(&[])).await;
    let alice = h.sign_up().await;
    h.events_settled().await;
    let new_email = unique_email("moved");
    let browser = h.browser().await;
    let (h, alice, new_email) = (&h, &alice, &new_email);
    let shots = std::env::var("CONFAB_TEST_SCREENSHOTS").is_ok();
    browser
        .run(|c| async move {
            // Tab B: the chat page, its socket connected.
            log_in(&c, &h.web_url, alice).await;
            let tab_b = c.window().await.unwrap();
            let tab_a = c.new_window(true).await.unwrap().handle;
            c.switch_to_window(tab_a.clone()).await.unwrap();
            c.goto(&format!("{}/settings", h.web_url)).await.unwrap();
            eventually(10, "settings shows the email", || async {
                (text(&c, "[data-testid=settings-email]").await? == alice.email).then_some(())
            })
            .await;

            by_testid(&c, "email-change-open")
                .await
                .click()
                .await
                .unwrap();
            by_testid(&c, "email-new")
                .await
                .send_keys(new_email)
                .await
                .unwrap();
            by_testid(&c, "email-password")
                .await
                .send_keys("wrong password")
                .await
                .unwrap();
            by_testid(&c, "email-submit").await.click().await.unwrap();
            eventually(5, "the wrong password is refused", || async {
                let t = text(&c, "[data-testid=email-error]").await?;
                t.contains("password is not correct").then_some(())
            })
            .await;
            if shots {
                for (dark, w, h_, name) in [
                    (false, 1280, 900, "settings-email-error-light-wide"),
                    (true, 390, 844, "settings-email-error-dark-narrow"),
                ] {
                    emulate(&c, dark, w, h_).await;
                    screenshot(&c, &h.artifacts, name).await;
                }
                emulate(&c, false, 1280, 900).await;
            }
            let pw = by_testid(&c, "email-password").await;
            pw.clear().await.unwrap();
            pw.send_keys(&alice.password).await.unwrap();
            by_testid(&c, "email-submit").await.click().await.unwrap();
            eventually(5, "the page says where the link went", || async {
                let t = text(&c, "[data-testid=email-status]").await?;
                t.contains(new_email.as_str()).then_some(())
            })
            .await;
            // Not changed yet.
            assert_eq!(
                text(&c, "[data-testid=settings-email]").await.as_deref(),
                Some(alice.email.as_str())
            );
            if shots {
                for (dark, w, h_, name) in [
                    (false, 1280, 900, "settings-email-sent-light-wide"),
                    (true, 1280, 900, "settings-email-sent-dark-wide"),
                    (false, 390, 844, "settings-email-sent-light-narrow"),
                    (true, 390, 844, "settings-email-sent-dark-narrow"),
                ] {
                    emulate(&c, dark, w, h_).await;
                    screenshot(&c, &h.artifacts, name).await;
                }
                emulate(&c, false, 1280, 900).await;
            }

            // The link from the captured mail, in a third tab.
            let mail = h
                .smtp
                .as_ref()
                .unwrap()
                .wait_for(new_email, 1)
                .await
                .remove(0);
            let link = mail.link().unwrap();
            let tab_c = c.new_window(true).await.unwrap().handle;
            c.switch_to_window(tab_c).await.unwrap();
            c.goto(&link).await.unwrap();
            // Opening it changes nothing; the click does.
            by_testid(&c, "email-confirm-submit").await;
            assert!(!c.current_url().await.unwrap().as_str().contains("token="));
            by_testid(&c, "email-confirm-submit")
                .await
                .click()
                .await
                .unwrap();
            let clicked = confab_core::clock::instant();
            eventually(5, "the confirmation page says it is done", || async {
                let card = c
                    .find(Locator::Css("[data-testid=email-confirm]"))
                    .await
                    .ok()?;
                (card.attr("data-state").await.ok()?? == "confirmed").then_some(())
            })
            .await;
            assert!(text(&c, "[data-testid=email-confirm-message]")
                .await
                .unwrap()
                .contains(new_email.as_str()));
            if shots {
                for (dark, w, h_, name) in [
                    (false, 1280, 900, "email-confirmed-light-wide"),
                    (true, 390, 844, "email-confirmed-dark-narrow"),
                ] {
                    emulate(&c, dark, w, h_).await;
                    screenshot(&c, &h.artifacts, name).await;
                }
            }
            // The chat tab shows it (its socket and this browser's other
            // tabs both tell it; the API test checks the socket alone).
            c.switch_to_window(tab_b).await.unwrap();
            eventually(5, "the chat page has the new email", || async {
                let el = c
                    .find(Locator::Css("[data-testid=user-display-name]"))
                    .await
                    .ok()?;
                (el.attr("title").await.ok()?? == *new_email).then_some(())
            })
            .await;
            eprintln!(
                "the chat page showed the new email {:?} after the click",
                clicked.elapsed()
            );
            // Settings shows it when looked at again.
            c.switch_to_window(tab_a).await.unwrap();
            eventually(5, "settings shows the new email", || async {
                (text(&c, "[data-testid=settings-email]").await? == *new_email).then_some(())
            })
            .await;
        })
        .await;
    h.events_settled().await;
    let backend: String = sqlx::query_scalar("SELECT email FROM profiles WHERE user_id = $1::uuid")
        .bind(&alice.id)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap();
    assert_eq!(&backend, new_email);
    assert_eq!(&auth_email(h, alice).await, new_email);
}
