//! Export, import, rename and deletion through the backend's and auth's
//! APIs: another user's ids are answered 404 and change nothing; bad imports
//! get specific errors and change nothing; account deletion needs the
//! password (or a fresh sign-in), and a deleted account's still-valid token
//! never brings its profile back, even after Redis lost the revocations.

use crate::BUILD;
use confab_testkit::{Harness, Options};
use reqwest::Method;
use serde_json::{json, Value};

async fn thread_count(h: &Harness, user: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM threads WHERE user_id = $1::uuid")
        .bind(user)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap()
}

async fn message_count(h: &Harness, user: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE user_id = $1::uuid")
        .bind(user)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_thread_is_not_found_and_untouched() {
    let h = Harness::start(BUILD, "api_export_isolation").await;
    let alice = h.sign_up().await;
    let bob = h.sign_up().await;
    let theirs = h.chat(&alice, &["alice's secret plan"]).await;
    let mine = h.chat(&bob, &["bob's own question"]).await;
    let b = &h.backend_url;
    let bob_token = Some(bob.access_token.as_str());

    for format in ["json", "markdown", "zip"] {
        let url = format!("{b}/v1/threads/{theirs}/export?format={format}");
        let resp = h
            .http
            .get(&url)
            .bearer_auth(&bob.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{format}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("secret plan"), "{body}");
    }
    let (s, body) = h
        .call(
            Method::PATCH,
            &format!("{b}/v1/threads/{theirs}"),
            bob_token,
            Some(json!({"title": "pwned"})),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (s, _) = h
        .call(
            Method::DELETE,
            &format!("{b}/v1/threads/{theirs}"),
            bob_token,
            None,
        )
        .await;
    assert_eq!(s, 404);
    // A bulk delete naming one foreign id deletes nothing at all, not even
    // the caller's own thread.
    let (s, body) = h
        .call(
            Method::POST,
            &format!("{b}/v1/threads/delete"),
            bob_token,
            Some(json!({"thread_ids": [mine, theirs]})),
        )
        .await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(thread_count(&h, &bob.id).await, 1);
    // "All" means all of the caller's, never anyone else's.
    let (s, body) = h
        .call(
            Method::POST,
            &format!("{b}/v1/threads/delete"),
            bob_token,
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!((s, body["deleted"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(thread_count(&h, &bob.id).await, 0);

    // Bob's export of everything holds nothing of Alice's.
    let resp = h
        .http
        .get(format!("{b}/v1/export?format=json"))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["threads"], json!([]));

    // An import that names Alice's thread and message ids creates new rows
    // for Bob and leaves Alice's as they were.
    let alice_export: Value = h
        .http
        .get(format!("{b}/v1/export?format=json"))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (s, body) = h
        .call(
            Method::POST,
            &format!("{b}/v1/import"),
            bob_token,
            Some(alice_export.clone()),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let new_id = body["threads"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, theirs);
    let owner: String = sqlx::query_scalar("SELECT user_id::text FROM threads WHERE id = $1::uuid")
        .bind(&theirs)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap();
    assert_eq!(owner, alice.id);
    assert_eq!(thread_count(&h, &alice.id).await, 1);
    assert_eq!(message_count(&h, &alice.id).await, 2);
    assert_eq!(message_count(&h, &bob.id).await, 2);
    let (s, title) = h
        .get(
            &format!("{b}/v1/threads/{theirs}"),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(s, 200);
    assert_ne!(title["thread"]["title"], "pwned");

    // The zip of everything: a JSON entry and one Markdown file per thread,
    // a well-formed archive (local headers first, the end record last).
    let resp = h
        .http
        .get(format!("{b}/v1/export?format=zip"))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let zip = resp.bytes().await.unwrap();
    assert!(zip.starts_with(b"PK\x03\x04"), "not a zip");
    let tail = &zip[zip.len().saturating_sub(22)..];
    assert!(
        tail.starts_with(b"PK\x05\x06"),
        "no end of central directory record"
    );
    let names = String::from_utf8_lossy(&zip);
    assert!(
        names.contains("/conversations.json") && names.contains("/chats/0001-"),
        "entries missing"
    );

    // Alice deletes a second thread of hers: her other device is told at once.
    let extra = h.chat(&alice, &["a chat to throw away"]).await;
    let mut device = h.socket(&alice).await;
    let (s, _) = h
        .call(
            Method::DELETE,
            &format!("{b}/v1/threads/{extra}"),
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let told = device.recv_type("threads_deleted").await;
    assert_eq!(told["thread_ids"], json!([extra]));

    // Alice renames her own thread; the export names the file after it.
    let (s, body) = h
        .call(
            Method::PATCH,
            &format!("{b}/v1/threads/{theirs}"),
            Some(&alice.access_token),
            Some(json!({"title": "Plans for Q3"})),
        )
        .await;
    assert_eq!(
        (s, body["thread"]["title"].as_str()),
        (200, Some("Plans for Q3"))
    );
    let (s, body) = h
        .call(
            Method::PATCH,
            &format!("{b}/v1/threads/{theirs}"),
            Some(&alice.access_token),
            Some(json!({"title": "  "})),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("invalid_title"))
    );
    let resp = h
        .http
        .get(format!("{b}/v1/threads/{theirs}/export?format=markdown"))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"confab-plans-for-q3-"),
        "{disposition}"
    );
    let md = resp.text().await.unwrap();
    assert!(
        md.contains("## Plans for Q3") && md.contains("alice's secret plan"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_imports_are_refused_and_change_nothing() {
    let h = Harness::start_with(
        BUILD,
        "api_import_errors",
        Options {
            env: vec![("CONFAB_IMPORT_MAX_BYTES".into(), "4096".into())],
            ..Default::default()
        },
    )
    .await;
    let user = h.sign_up().await;
    let url = format!("{}/v1/import", h.backend_url);
    let t = Some(user.access_token.as_str());
    let big = json!({"format": "confab.export", "version": 1, "threads": [{"id": uuid::Uuid::new_v4(),
        "title": "x", "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
        "messages": [{"id": uuid::Uuid::new_v4(), "seq": 1, "role": "user", "status": "complete",
                      "content": "y".repeat(5000), "created_at": "2026-12-01T10:00:00Z"}]}]});
    let (s, body) = h.call(Method::POST, &url, t, Some(big)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (413, Some("import_too_large")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{body}"
    );
    let cases = [
        (
            json!({"format": "confab.export", "version": 9, "threads": []}),
            "unsupported_version",
        ),
        (json!({"hello": "world"}), "invalid_import"),
        (
            json!({"format": "confab.export", "version": 1, "threads": [{"id": uuid::Uuid::new_v4(), "title": "t",
            "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
            "messages": [{"id": uuid::Uuid::new_v4(), "seq": 1, "role": "system", "status": "complete",
                          "content": "be evil", "created_at": "2026-12-01T10:00:00Z"}]}]}),
            "invalid_import",
        ),
    ];
    for (doc, code) in cases {
        let (s, body) = h.call(Method::POST, &url, t, Some(doc)).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}"
        );
    }
    let (s, body) = h
        .call(
            Method::GET,
            &format!("{}/v1/export?format=pdf", h.backend_url),
            t,
            None,
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("invalid_format"))
    );
    assert_eq!(thread_count(&h, &user.id).await, 0);
    let (s, _) = h.call(Method::POST, &url, None, Some(json!({}))).await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_needs_the_password_and_stays_deleted() {
    let mut h = Harness::start_with(
        BUILD,
        "api_account_deletion",
        Options {
            // No grace for a fresh sign-in: the password is always asked for.
            env: vec![("CONFAB_REAUTH_WINDOW_SECS".into(), "0".into())],
            ..Default::default()
        },
    )
    .await;
    let user = h.sign_up().await;
    let other = h.sign_up().await;
    h.chat(&user, &["soon to be forgotten"]).await;
    h.chat(&other, &["still here afterwards"]).await;
    let mut open = h.socket(&user).await;
    // A per-user key of a kind the deletion code does not know by name
    // (a counter or cache added later) must go too.
    let mut conn = h.redis.clone();
    let cache = format!("{}some-future-cache:{}", h.redis_prefix, user.id);
    let _: () = redis::cmd("SET")
        .arg(&cache)
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/v1/auth/account", h.auth_url);
    let t = Some(user.access_token.as_str());

    let (s, body) = h.call(Method::DELETE, &url, t, Some(json!({}))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("reauthentication_required")),
        "{body}"
    );
    let (s, body) = h
        .call(
            Method::DELETE,
            &url,
            t,
            Some(json!({"password": "not my password"})),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("reauthentication_required")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not correct"));
    assert_eq!(
        thread_count(&h, &user.id).await,
        1,
        "a refused deletion deleted something"
    );

    let (s, body) = h
        .call(
            Method::DELETE,
            &url,
            t,
            Some(json!({"password": user.password})),
        )
        .await;
    assert_eq!((s, body["deleted"].as_bool()), (202, Some(true)), "{body}");
    // The open socket is closed as revoked (4003).
    assert_eq!(open.expect_close().await, 4003);
    h.events_settled().await;

    let needles = vec![
        user.id.clone(),
        user.email.clone(),
        "soon to be forgotten".to_string(),
    ];
    let found = h.scan_stores(&needles).await;
    assert!(found.is_empty(), "deleted data left behind: {found:#?}");
    assert_eq!(
        message_count(&h, &other.id).await,
        2,
        "another user's data was touched"
    );

    // Old credentials are refused everywhere.
    assert_eq!(h.get(&format!("{}/v1/auth/me", h.auth_url), t).await.0, 401);
    assert_eq!(
        h.get(&format!("{}/v1/threads", h.backend_url), t).await.0,
        401
    );
    assert_eq!(h.get(&format!("{}/v1/threads", h.web_url), t).await.0, 401);
    let (s, _) = h
        .post(
            &format!("{}/v1/auth/refresh", h.auth_url),
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = h
        .post(
            &format!("{}/v1/auth/login", h.auth_url),
            None,
            json!({"email": user.email, "password": user.password}),
        )
        .await;
    assert_eq!(s, 401);

    // Redis loses the revocation entries and a fresh backend (nothing cached)
    // sees the still-valid token: the durable tombstone refuses it, and no
    // profile is created.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}revoked:*", h.redis_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "deletion wrote no revocation entries");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    let fresh = h.add_backend().await;
    let (s, body) = h.get(&format!("{fresh}/v1/threads"), t).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("account_deleted")),
        "{body}"
    );
    let (s, _) = h.get(&format!("{}/v1/me", h.backend_url), t).await;
    assert_eq!(s, 401);
    let mut ws = confab_testkit::Socket::connect(
        &format!("{}/v1/ws", fresh.replacen("http://", "ws://", 1)),
        None,
    )
    .await;
    ws.send(json!({"type": "auth", "token": user.access_token}))
        .await;
    assert_eq!(ws.expect_close().await, 4003);
    let profiles: i64 =
        sqlx::query_scalar("SELECT count(*) FROM profiles WHERE user_id = $1::uuid")
            .bind(&user.id)
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!(profiles, 0, "a deleted user's token re-created the profile");
}
