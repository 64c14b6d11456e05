//! The auth API's contract and every error it names, against the real
//! services: validation, duplicate emails, uniform login failures, refresh
//! rotation and reuse detection, logout revocation seen by the backend,
//! forged and expired tokens, and the `user.registered` event.

use crate::BUILD;
use base64::Engine;
use confab_testkit::{eventually, user::unique_email, Harness, Options};
use serde_json::{json, Value};

async fn post(h: &Harness, path: &str, body: Value) -> (u16, Value) {
    h.post(&format!("{}{path}", h.auth_url), None, body).await
}

async fn backend_get(h: &Harness, path: &str, token: &str) -> (u16, Value) {
    h.get(&format!("{}{path}", h.backend_url), Some(token))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_errors_and_user_registered_event() {
    let h = Harness::start(BUILD, "api_signup_errors").await;
    let email = unique_email("signup");
    let (status, body) = post(
        &h,
        "/v1/auth/signup",
        json!({"email": email, "password": "a good long password", "display_name": "Grace"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["user"]["email"], email);
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let user_id = body["user"]["id"].as_str().unwrap().to_string();

    // The web app asks for the refresh token in the cookie only.
    let r = h
        .http
        .post(format!("{}/v1/auth/signup", h.auth_url))
        .header("x-confab-refresh-transport", "cookie")
        .json(&json!({"email": unique_email("cookie"), "password": "a good long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("confab_refresh=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["refresh_token"].is_null(),
        "refresh token in a cookie-only body: {body}"
    );
    assert!(body["access_token"].is_string());

    // Same address with different case and spaces: taken.
    let (status, body) = post(
        &h,
        "/v1/auth/signup",
        json!({"email": format!("  {}  ", email.to_uppercase()), "password": "another password", "display_name": "G"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "email_taken");

    for (payload, field) in [
        (
            json!({"email": "not-an-email", "password": "long enough pw", "display_name": "x"}),
            "email",
        ),
        (
            json!({"email": unique_email("weak"), "password": "short", "display_name": "x"}),
            "password",
        ),
        (
            json!({"email": unique_email("long"), "password": "x".repeat(300), "display_name": "x"}),
            "password",
        ),
        (
            json!({"email": unique_email("name"), "password": "long enough pw", "display_name": "n".repeat(200)}),
            "display_name",
        ),
    ] {
        let (status, body) = post(&h, "/v1/auth/signup", payload.clone()).await;
        assert_eq!(status, 422, "{payload} → {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }

    // Malformed JSON and wrong types: 400 in our error shape, nothing created.
    let r = h
        .http
        .post(format!("{}/v1/auth/signup", h.auth_url))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], "malformed_request");
    let (status, _) = post(
        &h,
        "/v1/auth/signup",
        json!({"email": 42, "password": true}),
    )
    .await;
    assert_eq!(status, 400);

    // SQL in a text field is just text.
    let sneaky = "Robert'); DROP TABLE users;--";
    let (status, body) = post(
        &h,
        "/v1/auth/signup",
        json!({"email": unique_email("sql"), "password": "long enough pw", "display_name": sneaky}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["display_name"], sneaky);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(users, 3, "only the three valid sign-ups exist");

    // user.registered went through the outbox to the stream, and the backend
    // applied it (profile exists without the user ever calling the backend).
    let name: String = eventually(15, "the backend to apply user.registered", || async {
        sqlx::query_scalar("SELECT display_name FROM profiles WHERE user_id = $1::uuid")
            .bind(&user_id)
            .fetch_optional(&h.dbs.backend)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(name, "Grace");
    // Every sign-up's event is applied, each exactly once.
    eventually(15, "both user.registered events applied", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM processed_events WHERE event_type = 'user.registered'",
        )
        .fetch_one(&h.dbs.backend)
        .await
        .ok()?;
        (n == 3).then_some(())
    })
    .await;
    let mut redis = h.redis.clone();
    let len: i64 = redis::cmd("XLEN")
        .arg(format!("{}events", h.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(len, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_rotation_and_logout() {
    let h = Harness::start_with(
        BUILD,
        "api_login_refresh_logout",
        Options {
            env: vec![("CONFAB_REFRESH_GRACE_SECS".into(), "0".into())],
            ..Default::default()
        },
    )
    .await;
    let user = h.sign_up().await;

    // Wrong password and unknown email: the same 401 body.
    let (s1, wrong_pw) = post(
        &h,
        "/v1/auth/login",
        json!({"email": user.email, "password": "wrong password!"}),
    )
    .await;
    let (s2, unknown) = post(
        &h,
        "/v1/auth/login",
        json!({"email": unique_email("nobody"), "password": "wrong password!"}),
    )
    .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong_pw, unknown);
    assert_eq!(wrong_pw["error"]["code"], "invalid_credentials");

    let (status, login) = post(
        &h,
        "/v1/auth/login",
        json!({"email": user.email, "password": user.password}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let access = login["access_token"].as_str().unwrap().to_string();
    let refresh = login["refresh_token"].as_str().unwrap().to_string();
    let (status, me) = h
        .get(&format!("{}/v1/auth/me", h.auth_url), Some(&access))
        .await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], user.email);

    // Rotation: the new pair works, the old refresh token does not.
    let (status, rotated) = post(&h, "/v1/auth/refresh", json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200, "{rotated}");
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    let (status, reused) = post(&h, "/v1/auth/refresh", json!({"refresh_token": refresh})).await;
    assert_eq!(status, 401, "{reused}");
    assert_eq!(reused["error"]["code"], "refresh_token_reused");
    // Reuse detection revoked the whole session: its newest token is dead too.
    let (status, _) = post(&h, "/v1/auth/refresh", json!({"refresh_token": refresh2})).await;
    assert_eq!(status, 401);
    let (status, body) = post(&h, "/v1/auth/refresh", json!({"refresh_token": "garbage"})).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_refresh_token");

    // Logout revokes the session everywhere: the backend refuses its token.
    let (status, _) = backend_get(&h, "/v1/threads", &user.access_token).await;
    assert_eq!(status, 200);
    assert_eq!(h.log_out(&user.access_token).await, 204);
    let (status, body) = backend_get(&h, "/v1/threads", &user.access_token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_revoked");
    let (status, _) = post(
        &h,
        "/v1/auth/refresh",
        json!({"refresh_token": user.refresh_token}),
    )
    .await;
    assert_eq!(status, 401);
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_tokens_are_rejected() {
    let h = Harness::start(BUILD, "api_forged_tokens").await;
    let user = h.sign_up().await;
    let (_, jwks) = h
        .get(&format!("{}/.well-known/jwks.json", h.auth_url), None)
        .await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["alg"], "EdDSA");
    let kid = key["kid"].as_str().unwrap().to_string();

    let parts: Vec<&str> = user.access_token.split('.').collect();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], user.id.as_str());
    for c in ["iss", "aud", "sid", "iat", "exp", "jti"] {
        assert!(!claims[c].is_null(), "claim {c} missing: {claims}");
    }

    // Sign with the real private key (read from auth's database) to make
    // tokens that differ from a valid one in exactly one way.
    let der: Vec<u8> = sqlx::query_scalar("SELECT private_pkcs8 FROM signing_keys WHERE kid = $1")
        .bind(&kid)
        .fetch_one(&h.dbs.auth)
        .await
        .expect("signing key row");
    let signing = jsonwebtoken::EncodingKey::from_ed_der(&der);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let sign = |c: &Value| jsonwebtoken::encode(&header, c, &signing).unwrap();
    let now = confab_core::clock::Clock::system().now().timestamp();

    let mut expired = claims.clone();
    expired["iat"] = (now - 600).into();
    expired["exp"] = (now - 300).into();
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = "someone-else".into();
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = "https://evil.example".into();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = uuid::Uuid::new_v4().to_string().into();
    let tampered = format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]);
    let mut not_yet_valid = claims.clone();
    not_yet_valid["nbf"] = (now + 600).into();
    let mut issued_in_future = claims.clone();
    issued_in_future["iat"] = (now + 600).into();
    issued_in_future["exp"] = (now + 1200).into();
    // A valid token with one bit of its signature flipped.
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    sig[10] ^= 0x01;
    let tampered_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    );
    let mut unknown_kid = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    unknown_kid.kid = Some("no-such-key".into());
    let unknown_kid = jsonwebtoken::encode(&unknown_kid, &claims, &signing).unwrap();

    // The user's backend profile exists before counting (made on first
    // use; the user.registered event would otherwise add it mid-test).
    let (status, _) = backend_get(&h, "/v1/threads", &user.access_token).await;
    assert_eq!(status, 200);
    let before = store_counts(&h).await;
    let cases = [
        ("expired", sign(&expired), "token_expired"),
        ("wrong audience", sign(&wrong_aud), "invalid_token"),
        ("wrong issuer", sign(&wrong_iss), "invalid_token"),
        ("alg none", alg_none, "invalid_token"),
        ("HS256 confusion", hs256, "invalid_token"),
        ("tampered payload", tampered, "invalid_token"),
        ("tampered signature", tampered_signature, "invalid_token"),
        ("not valid yet (nbf)", sign(&not_yet_valid), "invalid_token"),
        (
            "issued in the future (iat)",
            sign(&issued_in_future),
            "invalid_token",
        ),
        ("unknown kid", unknown_kid, "invalid_token"),
        ("garbage", "not.a.token".to_string(), "invalid_token"),
    ];
    for (what, token, code) in cases {
        let (status, body) = backend_get(&h, "/v1/threads", &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        let (status, _) = h
            .get(&format!("{}/v1/auth/me", h.auth_url), Some(&token))
            .await;
        assert_eq!(status, 401, "auth accepted a token that is {what}");
    }
    // Refused tokens changed nothing anywhere.
    assert_eq!(
        store_counts(&h).await,
        before,
        "a refused token changed something"
    );
    // The untouched token still works (the cases above proved something).
    let (status, _) = backend_get(&h, "/v1/threads", &user.access_token).await;
    assert_eq!(status, 200);
    let (status, body) = backend_get(&h, "/v1/threads", "").await;
    assert_eq!(status, 401, "{body}");

    // Both services read `Authorization` the same way: the scheme in any
    // case (RFC 7235), and nothing but Bearer.
    let token = &user.access_token;
    let urls = [
        format!("{}/v1/threads", h.backend_url),
        format!("{}/v1/auth/me", h.auth_url),
    ];
    for (header, want) in [
        (format!("BEARER {token}"), 200),
        (format!("bearer {token}"), 200),
        (format!("Basic {token}"), 401),
    ] {
        for url in &urls {
            let r = h
                .http
                .get(url)
                .header("authorization", &header)
                .send()
                .await;
            let status = r.expect("request").status().as_u16();
            assert_eq!(status, want, "{} on {url}", &header[..6]);
        }
    }

    // Another user's refresh token, presented with this user's access
    // token, is refused and rotates nothing.
    let other = h.sign_up().await;
    // Its backend profile exists before counting (made on first use).
    let (status, _) = backend_get(&h, "/v1/threads", &other.access_token).await;
    assert_eq!(status, 200);
    let before = store_counts(&h).await;
    let (status, body) = h
        .post(
            &format!("{}/v1/auth/refresh", h.auth_url),
            Some(&user.access_token),
            json!({"refresh_token": other.refresh_token}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_refresh_token");
    assert_eq!(store_counts(&h).await, before);
    let (status, _) = post(
        &h,
        "/v1/auth/refresh",
        json!({"refresh_token": other.refresh_token}),
    )
    .await;
    assert_eq!(status, 200, "the other user's own refresh still works");

    // A deleted user's token, still validly signed and unexpired, is
    // refused by both services and brings nothing back.
    let (status, _) = h
        .call(
            reqwest::Method::DELETE,
            &format!("{}/v1/auth/account", h.auth_url),
            Some(&user.access_token),
            Some(json!({"password": user.password})),
        )
        .await;
    assert_eq!(status, 202);
    // The backend erases the account when it applies `user.deleted`; count
    // after that, so the comparison sees only what the token does.
    eventually(10, "the backend to erase the deleted account", || async {
        let gone: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deleted_users WHERE user_hash = sha256(convert_to($1, 'UTF8')))",
        )
        .bind(&user.id)
        .fetch_one(&h.dbs.backend)
        .await
        .ok()?;
        gone.then_some(())
    })
    .await;
    let before = store_counts(&h).await;
    let (status, body) = backend_get(&h, "/v1/threads", &user.access_token).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = h
        .get(
            &format!("{}/v1/auth/me", h.auth_url),
            Some(&user.access_token),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &h,
        "/v1/auth/refresh",
        json!({"refresh_token": user.refresh_token}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(store_counts(&h).await, before);
}

/// Rows in the tables a token could change: auth's users, sessions and
/// refresh tokens; the backend's profiles, threads and messages.
async fn store_counts(h: &Harness) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["users", "sessions", "refresh_tokens"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&h.dbs.auth)
            .await
            .unwrap();
        counts.push(n);
    }
    for table in ["profiles", "threads", "messages"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
        counts.push(n);
    }
    counts
}
