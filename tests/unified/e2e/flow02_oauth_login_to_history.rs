//! Flow 2 — "Log in with Google" → dashboard → chat history, in a real
//! browser against a real OpenID Connect provider (oidc-provider from npm,
//! the Google preset's issuer pointed at it).
//!
//! The user signed in through the provider before and has two
//! conversations (made through the real socket). They click "Log in with
//! Google", go through the provider's own log-in and consent pages, come
//! back through the callback and land on the dashboard listing both
//! conversations; opening one shows its messages. Their name changed at the
//! provider meanwhile: the new one shows, and reaches the backend profile.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, wait_for},
    eventually,
    oidc::Agent,
    user::unique_email,
    Harness, Options,
};
use fantoccini::{Client, Locator};
use std::collections::BTreeSet;

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn listed_threads(c: &Client) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for el in c
        .find_all(Locator::Css("[data-testid=thread-item]"))
        .await
        .unwrap_or_default()
    {
        if let Ok(Some(id)) = el.attr("data-thread-id").await {
            ids.insert(id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow02_oauth_login_to_history() {
    let h = Harness::start_with(
        BUILD,
        "flow02_oauth_login_to_history",
        Options {
            oidc: true,
            ..Options::with_browser()
        },
    )
    .await;
    let provider = h.oidc.as_ref().expect("provider");
    let email = unique_email("flow02");
    provider
        .set_account("ada", "Ada Lovelace", &email, true)
        .await;

    // Before: Ada signed in through the provider once (on another device)
    // and had two conversations.
    let device = Agent::new(&h.web_url);
    let callback = device.sign_in_at_provider("google", "ada").await;
    assert_eq!(device.open(&callback).await.url.path(), "/app");
    let (status, session) = device.refresh().await;
    assert_eq!(status, 200, "{session}");
    let user_id = session["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(session["user"]["display_name"], "Ada Lovelace");
    let token = session["access_token"].as_str().unwrap();
    let mut ws = h.raw_socket().await;
    ws.authenticate(token).await;
    let mut threads = BTreeSet::new();
    for (i, question) in ["How does a Jacquard loom work?", "Who was Babbage?"]
        .iter()
        .enumerate()
    {
        let ack = ws.send_message(&format!("f2-{i}"), None, question).await;
        threads.insert(ack["thread_id"].as_str().unwrap().to_string());
        ws.collect_reply().await;
    }
    ws.close().await;
    let loom_thread = {
        let (_, list) = h
            .get(&format!("{}/v1/threads", h.backend_url), Some(token))
            .await;
        list["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["title"].as_str().unwrap_or_default().contains("Jacquard"))
            .expect("the loom thread")["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Meanwhile she changed her name at the provider.
    provider.set_account("ada", "Ada King", &email, true).await;

    let browser = h.browser().await;
    let h = &h;
    let threads = &threads;
    let loom_thread = &loom_thread;
    browser
        .run(|c| async move {
            c.goto(&format!("{}/login", h.web_url))
                .await
                .expect("open log-in page");
            let button = by_testid(&c, "oidc-google").await;
            assert_eq!(button.text().await.unwrap(), "Log in with Google");
            button.click().await.expect("click Log in with Google");

            // The provider's own log-in page, on the provider's origin.
            let login = wait_for(&c, "input[name=login]").await;
            let here = c.current_url().await.unwrap();
            assert_eq!(
                here.origin().ascii_serialization(),
                h.oidc.as_ref().unwrap().url
            );
            login.send_keys("ada").await.unwrap();
            c.find(Locator::Css("input[name=password]"))
                .await
                .unwrap()
                .send_keys("secret")
                .await
                .unwrap();
            c.find(Locator::Css("button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();

            // Its consent page.
            wait_for(&c, "input[name=prompt][value=consent]").await;
            c.find(Locator::Css("button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();

            // Back through the callback, onto the dashboard, signed in.
            eventually(15, "the dashboard after the callback", || async {
                let url = c.current_url().await.ok()?;
                (url.origin().ascii_serialization() == h.web_url && url.path() == "/app")
                    .then_some(())
            })
            .await;
            eventually(15, "the new name in the header", || async {
                (text(&c, "[data-testid=user-display-name]").await? == "Ada King").then_some(())
            })
            .await;

            // Both earlier conversations are listed.
            eventually(15, "both conversations in the history", || async {
                (listed_threads(&c).await == *threads).then_some(())
            })
            .await;

            // Opening one shows its messages.
            c.find(Locator::Css(&format!(
                "[data-testid=thread-item][data-thread-id=\"{loom_thread}\"]"
            )))
            .await
            .expect("the loom thread in the list")
            .click()
            .await
            .unwrap();
            eventually(15, "the opened conversation's messages", || async {
                let user = text(&c, "[data-testid=message][data-role=user]").await?;
                let reply = text(&c, "[data-testid=message][data-role=assistant]").await?;
                (user.contains("Jacquard loom") && reply.contains("Jacquard loom")).then_some(())
            })
            .await;
            let url = c.current_url().await.unwrap();
            assert_eq!(url.path(), format!("/app/t/{loom_thread}"));

            let png = c.screenshot().await.expect("screenshot");
            std::fs::write(h.artifacts.join("dashboard.png"), png).expect("save screenshot");

            // Settings list Google as her sign-in method; it is her only
            // one (no password), so it cannot be unlinked; Acme can be linked.
            by_testid(&c, "settings-link").await.click().await.unwrap();
            let google = by_testid(&c, "unlink-google").await;
            eventually(10, "the linked provider in settings", || async {
                let t = text(&c, "[data-testid=identity][data-provider=google]").await?;
                t.contains("Google").then_some(())
            })
            .await;
            assert_eq!(
                google.attr("disabled").await.unwrap().as_deref(),
                Some("true")
            );
            let link = by_testid(&c, "link-acme").await;
            assert_eq!(link.text().await.unwrap(), "Link Acme SSO");
            assert!(link
                .attr("href")
                .await
                .unwrap()
                .unwrap()
                .ends_with("/v1/auth/oidc/acme/start?intent=link"));
        })
        .await;

    // Still one account, keyed by the provider's issuer and subject.
    let users: Vec<(uuid::Uuid, String)> = sqlx::query_as("SELECT id, display_name FROM users")
        .fetch_all(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].0.to_string(), user_id);
    assert_eq!(users[0].1, "Ada King");
    let (issuer, subject): (String, String) =
        sqlx::query_as("SELECT issuer, subject FROM external_identities WHERE user_id = $1")
            .bind(users[0].0)
            .fetch_one(&h.dbs.auth)
            .await
            .unwrap();
    assert_eq!(
        (issuer.as_str(), subject.as_str()),
        (h.oidc.as_ref().unwrap().url.as_str(), "ada")
    );

    // user.updated reached the backend: the profile has the new name.
    let name: String = eventually(10, "the profile renamed in the backend", || async {
        let name: String =
            sqlx::query_scalar("SELECT display_name FROM profiles WHERE user_id = $1")
                .bind(users[0].0)
                .fetch_optional(&h.dbs.backend)
                .await
                .ok()
                .flatten()?;
        (name == "Ada King").then_some(name)
    })
    .await;
    assert_eq!(name, "Ada King");
}
