//! The profile API in auth: bad input gets a specific error and changes
//! nothing (no new version, no event); an avatar is stored, served and
//! replaced; the backend follows every accepted change, and a renamed
//! workspace keeps its name.

use crate::BUILD;
use confab_testkit::{eventually, Harness};
use reqwest::Method;
use serde_json::{json, Value};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR tiny";

async fn version_and_events(h: &Harness, user: &str) -> (i64, i64) {
    let v: i64 = sqlx::query_scalar("SELECT profile_version FROM users WHERE id = $1::uuid")
        .bind(user)
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE type = 'user.updated'")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    (v, n)
}

async fn put_avatar(h: &Harness, token: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = h
        .http
        .put(format!("{}/v1/auth/me/avatar", h.auth_url))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_profile_changes_are_refused_and_change_nothing() {
    let h = Harness::start(BUILD, "api_profile_errors").await;
    let alice = h.sign_up().await;
    let me = format!("{}/v1/auth/me", h.auth_url);
    let token = Some(alice.access_token.as_str());
    let before = version_and_events(&h, &alice.id).await;
    let cases = [
        (json!({"display_name": "   "}), 422, "display_name"),
        (json!({"display_name": "x".repeat(81)}), 422, "display_name"),
        (json!({"time_zone": "Mars/Olympus_Mons"}), 422, "time_zone"),
        (json!({}), 422, "display_name"),
    ];
    for (body, status, field) in cases {
        let (s, b) = h.call(Method::PATCH, &me, token, Some(body.clone())).await;
        assert_eq!(
            (s, b["error"]["field"].as_str()),
            (status, Some(field)),
            "{body}: {b}"
        );
        assert!(b["error"]["message"].as_str().unwrap().len() > 10, "{b}");
    }
    let (s, b) = h
        .call(Method::PATCH, &me, token, Some(json!({"email": "x@y.z"})))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("malformed_request")),
        "{b}"
    );
    let (s, b) = put_avatar(&h, &alice.access_token, "image/png", vec![0x89; 600 * 1024]).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("avatar_too_large")),
        "{b}"
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("512 KiB"),
        "{b}"
    );
    let (s, b) = put_avatar(&h, &alice.access_token, "image/svg+xml", b"<svg/>".to_vec()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("unsupported_avatar_type")),
        "{b}"
    );
    let (s, b) = put_avatar(&h, &alice.access_token, "image/jpeg", PNG.to_vec()).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("avatar")),
        "{b}"
    );
    let (s, _) = h
        .call(
            Method::PATCH,
            &me,
            None,
            Some(json!({"display_name": "Eve"})),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(
        version_and_events(&h, &alice.id).await,
        before,
        "nothing changed"
    );
    let (_, b) = h.get(&me, token).await;
    assert_eq!(b["display_name"], "Test User");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_changes_reach_the_backend_and_avatars_are_served() {
    let h = Harness::start(BUILD, "api_profile_changes").await;
    let alice = h.sign_up().await;
    let token = Some(alice.access_token.as_str());
    let me = format!("{}/v1/auth/me", h.auth_url);
    let (s, b) = h
        .call(
            Method::PATCH,
            &me,
            token,
            Some(json!({"display_name": " Grace Hopper ", "time_zone": "America/New_York"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (
            b["display_name"].as_str(),
            b["time_zone"].as_str(),
            b["profile_version"].as_i64()
        ),
        (Some("Grace Hopper"), Some("America/New_York"), Some(2))
    );
    let (s, b) = put_avatar(&h, &alice.access_token, "image/png", PNG.to_vec()).await;
    assert_eq!(s, 200, "{b}");
    let url = b["avatar_url"].as_str().unwrap().to_string();
    assert_eq!(b["profile_version"], 3);
    // Served by Confab, on the web origin too (the proxy forwards /v1/auth).
    let resp = h
        .http
        .get(format!("{}{url}", h.web_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), PNG);

    h.events_settled().await;
    let backend_me = format!("{}/v1/me", h.backend_url);
    let (_, b) = h.get(&backend_me, token).await;
    assert_eq!(b["profile"]["display_name"], "Grace Hopper");
    assert_eq!(b["profile"]["time_zone"], "America/New_York");
    assert_eq!(b["profile"]["avatar_url"], url.as_str());
    assert_eq!(b["profile"]["version"], 3);
    assert_eq!(b["workspace"]["name"], "Grace Hopper's workspace");

    // Back to the initials: the old picture is gone.
    let (s, b) = h
        .call(Method::DELETE, &format!("{me}/avatar"), token, None)
        .await;
    assert_eq!((s, b["avatar_url"].clone()), (200, Value::Null), "{b}");
    let resp = h
        .http
        .get(format!("{}{url}", h.auth_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A workspace the user renamed keeps its name when the display name changes.
    let (s, b) = h
        .call(
            Method::PATCH,
            &format!("{}/v1/workspaces/default", h.backend_url),
            token,
            Some(json!({"name": "Compilers"})),
        )
        .await;
    assert_eq!(
        (s, b["workspace"]["name"].as_str()),
        (200, Some("Compilers")),
        "{b}"
    );
    let (s, b) = h
        .call(
            Method::PATCH,
            &format!("{}/v1/workspaces/default", h.backend_url),
            token,
            Some(json!({"name": "  "})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("name")),
        "{b}"
    );
    h.call(
        Method::PATCH,
        &me,
        token,
        Some(json!({"display_name": "Amazing Grace"})),
    )
    .await;
    h.events_settled().await;
    let (_, b) = eventually(5, "the new name in the backend", || async {
        let (s, b) = h.get(&backend_me, token).await;
        (b["profile"]["display_name"] == "Amazing Grace").then_some((s, b))
    })
    .await;
    assert_eq!(b["workspace"]["name"], "Compilers");
}
