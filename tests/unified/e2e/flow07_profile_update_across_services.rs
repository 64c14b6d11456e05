//! Flow 7 — a profile update reaches every service and every open page.
//!
//! Two tabs of one user: the chat page (B) and settings (A). The name is
//! changed in A; within one second both tabs show it. Then auth's row and the
//! backend's agree (profile and the workspace named after it), the backend's
//! cache holds the new version, and the event was applied exactly once.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, log_in, settled},
    eventually, Harness, Options,
};
use fantoccini::{Client, Locator};
use redis::AsyncCommands;

async fn text(c: &Client, css: &str) -> Option<String> {
    let el = c.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow07_profile_update_across_services() {
    let h = Harness::start_with(
        BUILD,
        "flow07_profile_update_across_services",
        Options::with_browser(),
    )
    .await;
    let alice = h.sign_up().await;
    h.events_settled().await;
    let browser = h.browser().await;
    let h = &h;
    let alice = &alice;
    browser
        .run(|c| async move {
            // Tab B: the chat page, its socket connected.
            log_in(&c, &h.web_url, alice).await;
            let tab_b = c.window().await.unwrap();
            // Tab A: settings, in a second tab of the same browser.
            let tab_a = c.new_window(true).await.unwrap().handle;
            c.switch_to_window(tab_a.clone()).await.unwrap();
            c.goto(&format!("{}/settings", h.web_url)).await.unwrap();
            settled(&c).await;
            eventually(10, "the settings form filled in", || async {
                let el = c
                    .find(Locator::Css("[data-testid=profile-display-name]"))
                    .await
                    .ok()?;
                (el.prop("value").await.ok()?? == "Test User").then_some(())
            })
            .await;

            let name = by_testid(&c, "profile-display-name").await;
            name.clear().await.unwrap();
            name.send_keys("Ada King").await.unwrap();
            by_testid(&c, "profile-save").await.click().await.unwrap();
            let saved_at = confab_core::clock::instant();
            eventually(5, "tab A shows the new name", || async {
                let t = text(&c, "[data-testid=settings-display-name]").await?;
                (t == "Ada King").then_some(())
            })
            .await;
            c.switch_to_window(tab_b).await.unwrap();
            eventually(5, "tab B's header shows the new name", || async {
                let t = text(&c, "[data-testid=user-display-name]").await?;
                (t == "Ada King").then_some(())
            })
            .await;
            // Live, not on a reload: nothing else would show it within the
            // wait above. How fast is not asserted (a loaded machine
            // stretches it); it is printed.
            eprintln!(
                "both tabs showed the new name {:?} after saving",
                saved_at.elapsed()
            );
            // The avatar's initials follow the name.
            assert_eq!(text(&c, "#user-avatar").await.as_deref(), Some("AK"));
        })
        .await;

    h.events_settled().await;
    let (auth_name, auth_version): (String, i64) =
        sqlx::query_as("SELECT display_name, profile_version FROM users WHERE id = $1::uuid")
            .bind(&alice.id)
            .fetch_one(&h.dbs.auth)
            .await
            .unwrap();
    assert_eq!((auth_name.as_str(), auth_version), ("Ada King", 2));
    let (name, version, workspace): (String, i64, String) = sqlx::query_as(
        "SELECT p.display_name, p.version, w.name FROM profiles p
         JOIN workspaces w ON w.owner_id = p.user_id AND w.is_default
         WHERE p.user_id = $1::uuid",
    )
    .bind(&alice.id)
    .fetch_one(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!(
        (name.as_str(), version, workspace.as_str()),
        ("Ada King", 2, "Ada King's workspace")
    );

    // The cache entry is at the new version (or gone).
    let mut conn = h.redis.clone();
    let cached: Option<i64> = conn
        .hget(format!("{}profile:{}", h.redis_prefix, alice.id), "v")
        .await
        .unwrap();
    assert!(
        cached.is_none_or(|v| v == 2),
        "stale cache entry: {cached:?}"
    );

    // The event was applied once: one user.updated in auth's outbox, its id
    // recorded once, and no duplicate application.
    let event: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM outbox WHERE type = 'user.updated' AND payload -> 'data' ->> 'user_id' = $1",
    )
    .bind(&alice.id)
    .fetch_one(&h.dbs.auth)
    .await
    .unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE event_id = $1")
            .bind(event)
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!(applied, 1);
    let (_, me) = h
        .get(
            &format!("{}/v1/me", h.backend_url),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(me["profile"]["display_name"], "Ada King");
    assert_eq!(me["workspace"]["name"], "Ada King's workspace");
}
