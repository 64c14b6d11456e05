//! The admin console's API: who is an admin (the first account, or an email
//! in `CONFAB_ADMIN_EMAILS`), that every admin route of every service
//! refuses everyone else — no token, a user's token, a token whose role
//! claim was forged — and the bad inputs an admin can send (unknown and
//! malformed user ids, SQL and HTML in the search, out-of-range limits).
//! Taking the role away (the email leaves the list) ends the account's
//! sessions, so no token with the old role works anywhere.

use crate::BUILD;
use base64::Engine as _;
use confab_testkit::{Harness, Options, TestUser};
use serde_json::{json, Value};

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The token with its payload replaced and its signature kept.
fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

/// Every admin route, on the service that serves it: (method, url).
fn admin_routes(h: &Harness, target: &str) -> Vec<(reqwest::Method, String)> {
    use reqwest::Method;
    let (a, b, w) = (&h.auth_url, &h.backend_url, &h.web_url);
    let mut routes = vec![
        (Method::GET, format!("{a}/v1/auth/admin/whoami")),
        (Method::GET, format!("{a}/v1/auth/admin/users")),
        (Method::GET, format!("{a}/v1/auth/admin/users?q=user")),
        (
            Method::POST,
            format!("{a}/v1/auth/admin/users/{target}/disable"),
        ),
        (
            Method::POST,
            format!("{a}/v1/auth/admin/users/{target}/enable"),
        ),
        (Method::GET, format!("{a}/v1/auth/admin/audit")),
        (Method::GET, format!("{b}/v1/admin/profiles?ids={target}")),
        (Method::POST, format!("{b}/v1/admin/users/{target}/plan")),
        (Method::GET, format!("{b}/v1/admin/audit")),
        (Method::GET, format!("{w}/v1/admin/status")),
    ];
    // The same through web's proxy, as the browser calls them.
    routes.extend(
        routes
            .clone()
            .into_iter()
            .filter(|(_, u)| !u.starts_with(w.as_str()))
            .map(|(m, u)| (m, u.replace(a.as_str(), w).replace(b.as_str(), w))),
    );
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_refuse_everyone_but_admins() {
    let h = Harness::start(BUILD, "api_admin_refusals").await;
    let admin = h.sign_up().await;
    let user = TestUser::sign_up_named(&h, "Robert'); DROP TABLE users;--").await;
    let html = TestUser::sign_up_named(&h, "<img src=x onerror=alert(1)>").await;

    // The first account is the admin, and its token says so; others not.
    assert_eq!(claims_of(&admin.access_token)["role"], "admin");
    assert!(claims_of(&user.access_token).get("role").is_none());
    let (s, me) = h
        .get(
            &format!("{}/v1/auth/admin/whoami", h.auth_url),
            Some(&admin.access_token),
        )
        .await;
    assert_eq!((s, me["email"].as_str()), (200, Some(admin.email.as_str())));

    let mut forged_claims = claims_of(&user.access_token);
    forged_claims["role"] = "admin".into();
    let forged = with_claims(&user.access_token, &forged_claims);
    // A role this version does not know is no role at all.
    let mut odd_claims = claims_of(&user.access_token);
    odd_claims["role"] = "superuser".into();
    let odd = with_claims(&user.access_token, &odd_claims);

    for (method, url) in admin_routes(&h, &admin.id) {
        let (s, body) = h.call(method.clone(), &url, None, Some(json!({}))).await;
        assert_eq!(s, 401, "{method} {url} without a token: {body}");
        let (s, body) = h
            .call(
                method.clone(),
                &url,
                Some(&user.access_token),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 403, "{method} {url} as a user: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{url}");
        assert!(
            !body.to_string().contains(&admin.email),
            "{url} told a user something"
        );
        for (what, token) in [("forged role", &forged), ("unknown role", &odd)] {
            let (s, body) = h
                .call(method.clone(), &url, Some(token), Some(json!({})))
                .await;
            assert_eq!(s, 401, "{method} {url} with a {what}: {body}");
        }
    }
    // None of that changed anything or left an audit entry.
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_audit")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(audit, 0);
    let disabled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE disabled_at IS NOT NULL")
            .fetch_one(&h.dbs.auth)
            .await
            .unwrap();
    assert_eq!(disabled, 0);

    // Bad inputs from an admin.
    let t = Some(admin.access_token.as_str());
    let a = &h.auth_url;
    for id in [
        uuid::Uuid::now_v7().to_string(),
        "not-a-uuid".into(),
        "%27%3B%20DROP%20TABLE%20users%3B--".into(),
    ] {
        for action in ["disable", "enable"] {
            let (s, body) = h
                .post(
                    &format!("{a}/v1/auth/admin/users/{id}/{action}"),
                    t,
                    json!({}),
                )
                .await;
            assert_eq!(
                (s, body["error"]["code"].as_str()),
                (404, Some("user_not_found")),
                "{id}"
            );
        }
    }
    let (s, body) = h
        .post(
            &format!("{a}/v1/auth/admin/users/{}/disable", admin.id),
            t,
            json!({}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("cannot_disable_self"))
    );

    let search = |q: &str| {
        let url = format!("{a}/v1/auth/admin/users?q={}", url_escape(q));
        let h = &h;
        async move { h.get(&url, t).await }
    };
    let emails = |body: &Value| -> Vec<String> {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, all) = search("").await;
    assert_eq!(s, 200);
    assert_eq!(emails(&all).len(), 3);
    for row in all["users"].as_array().unwrap() {
        for field in [
            "id",
            "email",
            "display_name",
            "role",
            "status",
            "created_at",
            "sessions",
        ] {
            assert!(!row[field].is_null(), "{field} missing: {row}");
        }
        assert_eq!(row["sessions"], 1, "{row}");
        assert!(row["last_active_at"].is_string());
    }
    for (q, expected) in [
        ("' OR 1=1 --", vec![]),
        ("DROP TABLE", vec![user.email.clone()]),
        ("robert'); drop", vec![user.email.clone()]),
        ("<img src=x", vec![html.email.clone()]),
        (&admin.email.to_uppercase(), vec![admin.email.clone()]),
        ("%", vec![]),
        ("_", vec![]),
        ("\\", vec![]),
    ] {
        let (s, body) = search(q).await;
        assert_eq!(s, 200, "{q}: {body}");
        assert_eq!(emails(&body), expected, "search {q:?}");
    }
    let (_, body) = search("<img src=x").await;
    assert_eq!(
        body["users"][0]["display_name"],
        "<img src=x onerror=alert(1)>"
    );
    let (s, body) = search(&"x".repeat(201)).await;
    assert_eq!((s, body["error"]["field"].as_str()), (422, Some("q")));
    for limit in ["0", "201", "ten"] {
        let (s, body) = h
            .get(&format!("{a}/v1/auth/admin/users?limit={limit}"), t)
            .await;
        assert_eq!(
            (s, body["error"]["field"].as_str()),
            (422, Some("limit")),
            "{limit}"
        );
    }
    let (s, body) = h.get(&format!("{a}/v1/auth/admin/users?limit=1"), t).await;
    assert_eq!((s, body["more"].as_bool()), (200, Some(true)));
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(users, 3, "the SQL in names and searches stayed text");

    // The backend's half of the list.
    let b = &h.backend_url;
    let (s, body) = h
        .get(
            &format!(
                "{b}/v1/admin/profiles?ids={},{}",
                user.id,
                uuid::Uuid::now_v7()
            ),
            t,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let profiles = body["profiles"].as_array().unwrap();
    assert_eq!(
        profiles.len(),
        1,
        "an id without a profile is left out: {body}"
    );
    assert_eq!(profiles[0]["plan"], "free");
    for bad in [
        "nope",
        "1'%20OR%20'1'='1",
        &vec![user.id.clone(); 201].join(","),
    ] {
        let (s, body) = h.get(&format!("{b}/v1/admin/profiles?ids={bad}"), t).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (422, Some("invalid_ids"))
        );
    }

    // Plans: the admin puts the user on pro, through the plans domain,
    // audited in the backend; bad plans and accounts are refused.
    let plan_url = |id: &str| format!("{b}/v1/admin/users/{id}/plan");
    let (s, body) = h.post(&plan_url(&user.id), t, json!({"plan": "pro"})).await;
    assert_eq!(
        (s, body["plan"].as_str(), body["previous"].as_str()),
        (200, Some("pro"), Some("free")),
        "{body}"
    );
    let plan: String = sqlx::query_scalar("SELECT plan FROM profiles WHERE user_id = $1::uuid")
        .bind(&user.id)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap();
    assert_eq!(plan, "pro");
    let (s, body) = h
        .post(&plan_url(&user.id), t, json!({"plan": "gold"}))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("unknown_plan")),
        "{body}"
    );
    for id in [uuid::Uuid::now_v7().to_string(), "nope".to_string()] {
        let (s, _) = h.post(&plan_url(&id), t, json!({"plan": "pro"})).await;
        assert_eq!(s, 404, "{id}");
    }
    let (s, body) = h.post(&plan_url(&user.id), t, json!({"plan": 5})).await;
    assert_eq!(s, 400, "{body}");
    let (s, audit) = h.get(&format!("{b}/v1/admin/audit"), t).await;
    assert_eq!(s, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "only the change (a refused one writes nothing): {audit}"
    );
    let changed = entries.iter().find(|e| e["detail"]["to"] == "pro").unwrap();
    assert_eq!(changed["action"], "user.plan");
    assert_eq!(changed["actor_email"], admin.email.as_str());
    assert_eq!(changed["target_email"], user.email.as_str());
    assert_eq!(changed["detail"]["from"], "free");

    // Web's status summary, for the admin.
    let (s, status) = h.get(&format!("{}/v1/admin/status", h.web_url), t).await;
    assert_eq!(s, 200, "{status}");
    assert_eq!(status["backends"].as_array().unwrap().len(), 1);
    assert_eq!(status["backends"][0]["up"], true);
    assert_eq!(status["auth"]["up"], true);
    assert_eq!(status["totals"]["backends_up"], 1);
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_emails_grant_the_role_and_taking_it_away_ends_the_sessions() {
    let listed = confab_testkit::user::unique_email("boss");
    let mut h = Harness::start_with(
        BUILD,
        "api_admin_emails",
        Options {
            env: vec![(
                "CONFAB_ADMIN_EMAILS".into(),
                format!("nobody@example.org, {listed}"),
            )],
            ..Options::default()
        },
    )
    .await;
    let first = h.sign_up().await;
    let (s, boss) = h
        .post(
            &format!("{}/v1/auth/signup", h.auth_url),
            None,
            json!({"email": listed.to_uppercase(), "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(s, 201, "{boss}");
    assert_eq!(boss["user"]["role"], "admin");
    let boss_token = boss["access_token"].as_str().unwrap().to_string();
    let boss_refresh = boss["refresh_token"].as_str().unwrap().to_string();
    let other = h.sign_up().await;
    assert_eq!(
        claims_of(&first.access_token)["role"],
        "admin",
        "the first account"
    );
    assert!(claims_of(&other.access_token).get("role").is_none());
    let grants: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT email, role_granted_by FROM users WHERE role = 'admin' ORDER BY created_at",
    )
    .fetch_all(&h.dbs.auth)
    .await
    .unwrap();
    assert_eq!(
        grants,
        vec![
            (first.email.clone(), Some("first_account".into())),
            (listed.clone(), Some("config".into()))
        ]
    );
    let profiles = format!("{}/v1/admin/profiles?ids={}", h.backend_url, other.id);
    assert_eq!(h.get(&profiles, Some(&boss_token)).await.0, 200);

    // The email leaves the list: at its next start auth takes the role
    // away and ends the sessions, so the old token (which says admin) is
    // refused by every service, and the refresh says why.
    h.stop_service("auth");
    h.restart_service("auth", &[("CONFAB_ADMIN_EMAILS", "nobody@example.org")])
        .await;
    let (s, body) = h.get(&profiles, Some(&boss_token)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("session_revoked")),
        "{body}"
    );
    let (s, body) = h
        .get(
            &format!("{}/v1/auth/admin/whoami", h.auth_url),
            Some(&boss_token),
        )
        .await;
    assert_eq!(s, 401, "{body}");
    let (s, body) = h
        .post(
            &format!("{}/v1/auth/refresh", h.auth_url),
            None,
            json!({"refresh_token": boss_refresh}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["reason"].as_str()),
        (401, Some("role_changed")),
        "{body}"
    );
    // Signed in again, an ordinary account.
    let (s, again) = h
        .post(
            &format!("{}/v1/auth/login", h.auth_url),
            None,
            json!({"email": listed, "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!((s, again["user"]["role"].as_str()), (200, Some("user")));
    let token = again["access_token"].as_str().unwrap();
    assert_eq!(h.get(&profiles, Some(token)).await.0, 403);
    // The first account keeps its role; the change is in the audit log,
    // made by the service.
    let (s, audit) = h
        .get(
            &format!("{}/v1/auth/admin/audit", h.auth_url),
            Some(&first.access_token),
        )
        .await;
    assert_eq!(s, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["action"], "role.revoke");
    assert_eq!(entries[0]["target_email"], listed.as_str());
    assert!(entries[0]["actor_id"].is_null());
    assert_eq!(entries[0]["detail"]["sessions_ended"], 1);
}
