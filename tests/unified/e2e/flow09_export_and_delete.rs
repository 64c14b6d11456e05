//! Flow 9 — chat export and deletion, in a real browser.
//!
//! A user with several chats exports them all as JSON and as Markdown from
//! the settings page; the files Chromium downloads contain exactly the
//! user's messages (with model and provider per reply). Re-imported into a
//! fresh account they reproduce the chats. The user deletes two chats from
//! the chat page: a scan of every table of both databases and every Redis
//! key finds nothing of them, while the kept chat is intact. Then the user
//! deletes the account from the settings page: the scan finds nothing of the
//! user anywhere, and the old tokens are refused by every service.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, downloaded, downloads_dir, log_in_then_open},
    eventually,
    user::TestUser,
    Harness, Options,
};
use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

/// (thread, message, role, content, seq) of every message of a user.
async fn stored(h: &Harness, user: &str) -> BTreeSet<(String, String, String, String, i64)> {
    sqlx::query_as(
        "SELECT thread_id::text, id::text, role, content, seq FROM messages WHERE user_id = $1::uuid",
    )
    .bind(user)
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

fn exported(doc: &Value) -> BTreeSet<(String, String, String, String, i64)> {
    let mut out = BTreeSet::new();
    for t in doc["threads"].as_array().expect("threads") {
        for m in t["messages"].as_array().expect("messages") {
            out.insert((
                t["id"].as_str().unwrap().to_string(),
                m["id"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
                m["seq"].as_i64().unwrap(),
            ));
        }
    }
    out
}

/// Titles and (role, content) per thread, in export order: what an import
/// must reproduce (ids are new).
fn shape(doc: &Value) -> Vec<(String, Vec<(String, String)>)> {
    doc["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let msgs = t["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap().into(),
                        m["content"].as_str().unwrap().into(),
                    )
                })
                .collect();
            (t["title"].as_str().unwrap().to_string(), msgs)
        })
        .collect()
}

async fn export_json(h: &Harness, token: &str) -> Value {
    let resp = h
        .http
        .get(format!("{}/v1/export?format=json", h.backend_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// An element by `data-testid` once it is shown (a chat's actions appear
/// when the chat is).
async fn shown(c: &Client, id: &str) -> fantoccini::elements::Element {
    eventually(10, &format!("[data-testid={id}] to be shown"), || async {
        let el = by_testid(c, id).await;
        el.is_displayed().await.ok()?.then_some(el)
    })
    .await
}

async fn listed_threads(c: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for el in c
        .find_all(Locator::Css("[data-testid=thread-item]"))
        .await
        .unwrap_or_default()
    {
        if let Ok(Some(id)) = el.attr("data-thread-id").await {
            ids.push(id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow09_export_and_delete() {
    let h = Harness::start_with(BUILD, "flow09_export_and_delete", Options::with_browser()).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let name = format!("Grace {tag}");
    let grace = TestUser::sign_up_named(&h, &name).await;
    let other = h.sign_up().await;
    h.chat(&other, &[&format!("someone else's words {tag}")])
        .await;
    let engines = h
        .chat(
            &grace,
            &[
                &format!("engines {tag} first"),
                &format!("engines {tag} follow-up"),
            ],
        )
        .await;
    let looms = h.chat(&grace, &[&format!("looms {tag} question")]).await;
    let tables = h.chat(&grace, &[&format!("tables {tag} question")]).await;
    let truth = stored(&h, &grace.id).await;
    assert_eq!(truth.len(), 8);

    let downloads = downloads_dir(&h.artifacts);
    let browser = h.browser().await;
    let (h, grace) = (&h, &grace);
    let (engines, looms, tables, truth, name, tag) =
        (&engines, &looms, &tables, &truth, &name, &tag);
    browser
        .run(|c| async move {
            // Log in and open the settings page.
            log_in_then_open(&c, &h.web_url, grace, "/settings").await;

            // 1. Export everything as JSON and as Markdown, through Chromium's downloads.
            by_testid(&c, "export-json").await.click().await.unwrap();
            let json_path = downloaded(&downloads, ".json").await;
            by_testid(&c, "export-markdown")
                .await
                .click()
                .await
                .unwrap();
            let md_path = downloaded(&downloads, ".md").await;
            eventually(10, "the export confirmation", || async {
                let status = by_testid(&c, "export-status").await.text().await.ok()?;
                status.contains(".md").then_some(())
            })
            .await;
            let file_name = json_path.file_name().unwrap().to_string_lossy().to_string();
            assert!(file_name.starts_with("confab-export-"), "{file_name}");

            // 2. The JSON holds exactly the user's messages, with who wrote each reply.
            let raw = std::fs::read(&json_path).unwrap();
            let doc: Value = serde_json::from_slice(&raw).expect("the download is JSON");
            assert_eq!(
                (doc["format"].as_str(), doc["version"].as_u64()),
                (Some("confab.export"), Some(1))
            );
            assert_eq!(doc["user"]["email"], grace.email.as_str());
            assert_eq!(&exported(&doc), truth);
            for t in doc["threads"].as_array().unwrap() {
                for m in t["messages"].as_array().unwrap() {
                    if m["role"] == "assistant" {
                        assert_eq!(
                            (m["model"].as_str(), m["provider"].as_str()),
                            (Some("stand-in-model"), Some("openai")),
                            "{m}"
                        );
                    }
                }
            }
            let md = std::fs::read_to_string(&md_path).unwrap();
            for (_, _, _, content, _) in truth {
                assert!(
                    md.contains(content.as_str()),
                    "Markdown is missing {content:?}"
                );
            }
            for t in doc["threads"].as_array().unwrap() {
                assert!(
                    md.contains(&format!("## {}", t["title"].as_str().unwrap())),
                    "{md}"
                );
            }
            let foreign = format!("someone else's words {tag}");
            assert!(!md.contains(&foreign) && !String::from_utf8_lossy(&raw).contains(&foreign));

            // 3. The downloaded file re-imported into a fresh account reproduces the chats.
            let fresh = h.sign_up().await;
            let resp = h
                .http
                .post(format!("{}/v1/import", h.backend_url))
                .bearer_auth(&fresh.access_token)
                .header("content-type", "application/json")
                .body(raw.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            let copy = export_json(h, &fresh.access_token).await;
            assert_eq!(shape(&copy), shape(&doc));
            let copied_ids: BTreeSet<_> = exported(&copy).into_iter().map(|r| r.1).collect();
            assert!(
                truth.iter().all(|r| !copied_ids.contains(&r.1)),
                "the import kept the original ids"
            );
            // The copy goes again (a fresh sign-in needs no password), so the
            // scans below look for the original's texts only.
            let (s, _) = h
                .call(
                    Method::DELETE,
                    &format!("{}/v1/auth/account", h.auth_url),
                    Some(&fresh.access_token),
                    Some(serde_json::json!({})),
                )
                .await;
            assert_eq!(s, 202);
            h.events_settled().await;

            // 4. Delete two chats from the chat page.
            for gone in [engines, looms] {
                c.goto(&format!("{}/app/t/{gone}", h.web_url))
                    .await
                    .unwrap();
                shown(&c, "thread-delete").await.click().await.unwrap();
                shown(&c, "thread-delete-confirm")
                    .await
                    .click()
                    .await
                    .unwrap();
                eventually(10, "the deleted chat to leave the list", || async {
                    let listed = listed_threads(&c).await;
                    (!listed.contains(gone) && listed.contains(tables)).then_some(())
                })
                .await;
            }
            let deleted: Vec<_> = truth
                .iter()
                .filter(|r| &r.0 == engines || &r.0 == looms)
                .collect();
            let mut needles: Vec<String> = vec![engines.clone(), looms.clone()];
            needles.extend(deleted.iter().flat_map(|r| [r.1.clone(), r.3.clone()]));
            let found = h.scan_stores(&needles).await;
            assert!(found.is_empty(), "deleted chats left behind: {found:#?}");
            let kept = stored(h, &grace.id).await;
            assert_eq!(
                kept,
                truth.iter().filter(|r| &r.0 == tables).cloned().collect()
            );

            // 5. Delete the account from the settings page.
            c.goto(&format!("{}/settings", h.web_url)).await.unwrap();
            by_testid(&c, "delete-account-password")
                .await
                .send_keys(&grace.password)
                .await
                .unwrap();
            by_testid(&c, "delete-account-submit")
                .await
                .click()
                .await
                .unwrap();
            let done = by_testid(&c, "account-deleted").await.text().await.unwrap();
            assert!(done.contains("deleted"), "no honest confirmation: {done}");
            let png = c.screenshot().await.expect("screenshot");
            std::fs::write(h.artifacts.join("account-deleted.png"), png).expect("save screenshot");
        })
        .await;
    h.events_settled().await;
    let mut needles = vec![
        grace.id.clone(),
        grace.email.clone(),
        name.clone(),
        tables.clone(),
    ];
    needles.extend(truth.iter().flat_map(|r| [r.1.clone(), r.3.clone()]));
    let found = h.scan_stores(&needles).await;
    assert!(
        found.is_empty(),
        "the deleted account left data behind: {found:#?}"
    );
    assert_eq!(
        stored(h, &other.id).await.len(),
        2,
        "another user's chat was touched"
    );

    // 6. The old tokens are refused by every service.
    let t = Some(grace.access_token.as_str());
    assert_eq!(h.get(&format!("{}/v1/auth/me", h.auth_url), t).await.0, 401);
    assert_eq!(
        h.get(&format!("{}/v1/threads", h.backend_url), t).await.0,
        401
    );
    assert_eq!(h.get(&format!("{}/v1/threads", h.web_url), t).await.0, 401);
    let refresh = serde_json::json!({"refresh_token": grace.refresh_token});
    assert_eq!(
        h.post(&format!("{}/v1/auth/refresh", h.auth_url), None, refresh)
            .await
            .0,
        401
    );
}
