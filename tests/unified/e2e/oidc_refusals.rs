//! Sign-in through an OpenID Connect provider when something is wrong: each
//! refusal lands on the friendly page with a way back, creates no user and
//! no session, and the auth log names why. Also: linking to an existing
//! account (only with a verified email and the account's password, or from
//! a signed-in browser) and unlinking while another way in remains.
//!
//! The provider is the real npm `oidc-provider`; its log-in and consent
//! pages are walked by the testkit's `Agent` (plain HTTP with cookies, which
//! lets a test stop at the callback URL and replay or tamper with it). The
//! forged ID tokens come from the provider itself, re-signed by its token
//! endpoint middleware (`provider.mjs`).

use crate::BUILD;
use confab_testkit::{
    eventually,
    oidc::{Agent, Page, Tamper},
    user::unique_email,
    Harness, Options,
};
use serde_json::Value;
use std::time::Duration;

async fn harness(name: &str, env: Vec<(String, String)>) -> Harness {
    Harness::start_with(
        BUILD,
        name,
        Options {
            oidc: true,
            env,
            ..Default::default()
        },
    )
    .await
}

/// Users and sessions in the auth database.
async fn counts(h: &Harness) -> (i64, i64) {
    sqlx::query_as("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM sessions)")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The friendly page, nothing created, and the log line naming why.
async fn assert_refused(h: &Harness, page: &Page, reason: &str, why: &str, before: (i64, i64)) {
    assert_eq!(
        page.url.path(),
        "/login/failed",
        "not refused: {} {}",
        page.url,
        page.status
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("data-reason=\"{reason}\"")),
        "expected reason {reason}: {}",
        page.body
    );
    assert!(
        page.body.contains("href=\"/login\""),
        "no way back: {}",
        page.body
    );
    assert_eq!(
        counts(h).await,
        before,
        "a refused sign-in ({why}) created a user or session"
    );
    let needle = format!("why={why}");
    eventually(5, &format!("the auth log line with {needle}"), || async {
        let log = strip_ansi(&h.log("auth"));
        log.lines()
            .any(|l| l.contains("OIDC sign-in refused") && l.contains(&needle))
            .then_some(())
    })
    .await;
}

fn query_param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .1
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_refuses_bad_state_replays_and_cancel() {
    let h = harness("oidc_bad_state", vec![]).await;
    let agent = Agent::new(&h.web_url);
    let none = counts(&h).await;
    assert_eq!(none, (0, 0));

    // A state we never issued.
    agent.start("google").await;
    let page = agent
        .open(&format!(
            "{}/v1/auth/oidc/google/callback?code=abc&state=forged-state",
            h.web_url
        ))
        .await;
    assert_refused(&h, &page, "invalid_state", "state_unknown", none).await;

    // A callback URL carried to another browser (login CSRF).
    let callback = agent.sign_in_at_provider("google", "eve").await;
    let other = Agent::new(&h.web_url);
    let page = other.open(&callback).await;
    assert_refused(&h, &page, "invalid_state", "state_other_browser", none).await;

    // The callback of one provider presented to another's endpoint.
    let callback = agent.sign_in_at_provider("google", "eve").await;
    let page = agent
        .open(&callback.replace("/oidc/google/", "/oidc/acme/"))
        .await;
    assert_refused(&h, &page, "invalid_state", "state_other_provider", none).await;

    // A good sign-in, then the same callback again: the state is spent.
    let callback = agent.sign_in_at_provider("google", "eve").await;
    assert_eq!(agent.open(&callback).await.url.path(), "/app");
    let signed_in = counts(&h).await;
    assert_eq!(signed_in, (1, 1));
    let page = agent.open(&callback).await;
    assert_refused(&h, &page, "invalid_state", "state_reused", signed_in).await;

    // The spent code under a fresh state of this browser: the provider
    // refuses to redeem it twice (and the PKCE verifier is another).
    let code = query_param(&callback, "code");
    let fresh = agent.start("google").await;
    let state = fresh
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let page = agent
        .open(&format!(
            "{}/v1/auth/oidc/google/callback?code={code}&state={state}",
            h.web_url
        ))
        .await;
    assert_refused(&h, &page, "rejected", "code_rejected", signed_in).await;

    // Cancel at the provider: error=access_denied comes back.
    let callback = agent.cancel_at_provider("acme").await;
    assert_eq!(query_param(&callback, "error"), "access_denied");
    let page = agent.open(&callback).await;
    assert_refused(&h, &page, "cancelled", "access_denied", signed_in).await;
    assert!(page.body.contains("You cancelled"), "{}", page.body);

    // A provider error without any state.
    let page = agent
        .open(&format!(
            "{}/v1/auth/oidc/google/callback?error=server_error",
            h.web_url
        ))
        .await;
    assert_refused(&h, &page, "provider_error", "provider_error", signed_in).await;

    // A provider that is not configured.
    let page = agent
        .open(&format!("{}/v1/auth/oidc/nope/start", h.web_url))
        .await;
    assert_refused(&h, &page, "unknown_provider", "unknown_provider", signed_in).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_refuses_forged_id_tokens_and_follows_key_rotation() {
    let h = harness("oidc_forged_id_tokens", vec![]).await;
    let provider = h.oidc.as_ref().unwrap();
    let agent = Agent::new(&h.web_url);
    let none = counts(&h).await;
    for (tamper, why) in [
        (Tamper::WrongAudience, "wrong_audience"),
        (Tamper::WrongIssuer, "wrong_issuer"),
        (Tamper::Expired, "id_token_expired"),
        (Tamper::BadSignature, "bad_signature"),
        (Tamper::Nonce, "nonce_mismatch"),
    ] {
        provider.tamper(tamper).await;
        let callback = agent.sign_in_at_provider("google", "mallory").await;
        let page = agent.open(&callback).await;
        assert_refused(&h, &page, "rejected", why, none).await;
    }

    // A token signed with a key the provider published after we cached its
    // JWKS: refetched once, then accepted.
    provider.tamper(Tamper::RotateKey).await;
    let callback = agent.sign_in_at_provider("google", "mallory").await;
    assert_eq!(agent.open(&callback).await.url.path(), "/app");
    assert_eq!(counts(&h).await, (1, 1));
    assert!(strip_ansi(&h.log("auth")).contains("ID token signed by an unknown key; refetching"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_expired_state_is_refused() {
    let h = harness(
        "oidc_expired_state",
        vec![("CONFAB_OIDC_FLOW_TTL_SECS".into(), "1".into())],
    )
    .await;
    let agent = Agent::new(&h.web_url);
    let callback = agent.sign_in_at_provider("google", "slow").await;
    // The flow lives one second (set above); let it pass.
    confab_core::clock::sleep(Duration::from_millis(1100)).await;
    let page = agent.open(&callback).await;
    assert_refused(&h, &page, "expired", "state_expired", (0, 0)).await;
}

async fn identities(h: &Harness, token: &str) -> Value {
    let (status, body) = h
        .get(&format!("{}/v1/auth/identities", h.web_url), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn unlink(h: &Harness, token: &str, id: &Value) -> (u16, Value) {
    let url = format!("{}/v1/auth/identities/{}", h.web_url, id.as_str().unwrap());
    confab_testkit::api::request(&h.http, reqwest::Method::DELETE, &url, Some(token), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_links_only_with_proof_and_unlinks_while_a_way_in_remains() {
    let h = harness("oidc_linking", vec![]).await;
    let provider = h.oidc.as_ref().unwrap();
    let owner = h.sign_up().await;
    let after_signup = counts(&h).await;
    assert_eq!(after_signup, (1, 1));

    // Same email, not verified by the provider: never attached.
    provider
        .set_account("impostor", "Impostor", &owner.email, false)
        .await;
    let agent = Agent::new(&h.web_url);
    let callback = agent.sign_in_at_provider("google", "impostor").await;
    let page = agent.open(&callback).await;
    assert_refused(
        &h,
        &page,
        "email_unverified",
        "unverified_email_in_use",
        after_signup,
    )
    .await;
    assert!(
        page.body.contains("log in with your password"),
        "{}",
        page.body
    );

    // Verified email: the account's password is asked for first.
    provider
        .set_account("owner", "Owner Elsewhere", &owner.email, true)
        .await;
    let agent = Agent::new(&h.web_url);
    let callback = agent.sign_in_at_provider("google", "owner").await;
    let page = agent.open(&callback).await;
    assert_eq!(page.url.path(), "/login/link");
    assert!(
        page.body.contains("data-testid=\"oidc-link\""),
        "{}",
        page.body
    );
    assert_eq!(
        counts(&h).await,
        after_signup,
        "no session before the password"
    );
    let page = agent
        .post_form("/v1/auth/oidc/link", &[("password", "not the password")])
        .await;
    assert_eq!(page.url.path(), "/login/link");
    assert!(
        page.body.contains("That password is not right"),
        "{}",
        page.body
    );
    assert_eq!(counts(&h).await, after_signup);
    // Another browser cannot use this browser's pending link.
    let page = Agent::new(&h.web_url)
        .post_form(
            "/v1/auth/oidc/link",
            &[("password", owner.password.as_str())],
        )
        .await;
    assert_eq!(page.url.path(), "/login/failed");
    let page = agent
        .post_form(
            "/v1/auth/oidc/link",
            &[("password", owner.password.as_str())],
        )
        .await;
    assert_eq!(page.url.path(), "/app");
    assert_eq!(
        counts(&h).await,
        (1, 2),
        "linked and signed in, no second user"
    );
    let (status, session) = agent.refresh().await;
    assert_eq!(status, 200);
    assert_eq!(session["user"]["id"], owner.id.as_str());
    // The account keeps its own name when linked.
    assert_eq!(session["user"]["display_name"], owner.display_name.as_str());
    let token = session["access_token"].as_str().unwrap().to_string();

    // From now on the provider signs the owner straight in.
    let again = Agent::new(&h.web_url);
    let callback = again.sign_in_at_provider("google", "owner").await;
    assert_eq!(again.open(&callback).await.url.path(), "/app");
    assert_eq!(again.refresh().await.1["user"]["id"], owner.id.as_str());

    // Settings: one linked provider; unlinking it is fine, the password remains.
    let list = identities(&h, &token).await;
    assert_eq!(list["has_password"], true);
    assert_eq!(list["identities"].as_array().unwrap().len(), 1);
    assert_eq!(list["identities"][0]["provider"], "google");
    assert_eq!(list["identities"][0]["provider_name"], "Google");
    let (status, _) = unlink(&h, &token, &list["identities"][0]["id"]).await;
    assert_eq!(status, 204);
    assert_eq!(
        identities(&h, &token).await["identities"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // An account made through a provider has no password ...
    let solo_email = unique_email("solo");
    provider
        .set_account("solo", "Solo", &solo_email, true)
        .await;
    let solo = Agent::new(&h.web_url);
    let callback = solo.sign_in_at_provider("acme", "solo").await;
    assert_eq!(solo.open(&callback).await.url.path(), "/app");
    let (status, body) = h
        .post(
            &format!("{}/v1/auth/login", h.auth_url),
            None,
            serde_json::json!({"email": solo_email, "password": "any password at all"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let token = solo.refresh().await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // ... so its only provider cannot be unlinked.
    let list = identities(&h, &token).await;
    assert_eq!(list["has_password"], false);
    let (status, body) = unlink(&h, &token, &list["identities"][0]["id"]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("last_sign_in_method"))
    );

    // Another account's identity is not ours to unlink.
    let (status, body) = unlink(&h, &owner.access_token, &list["identities"][0]["id"]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("identity_not_found"))
    );

    // Signed in (here with the password), the owner links a provider from
    // settings: the session is the proof, whatever email the provider has.
    provider
        .set_account("owner-acme", "Owner", &unique_email("other"), false)
        .await;
    let settings = Agent::new(&h.web_url);
    let (status, _) = settings.log_in(&owner.email, &owner.password).await;
    assert_eq!(status, 200);
    let callback = settings.link_at_provider("acme", "owner-acme").await;
    let page = settings.open(&callback).await;
    assert_eq!(page.url.path(), "/settings");
    assert_eq!(page.url.query(), Some("linked=acme"));
    let list = identities(&h, &owner.access_token).await;
    assert_eq!(list["identities"].as_array().unwrap().len(), 1);
    assert_eq!(list["identities"][0]["provider_name"], "Acme SSO");
    // Signing in through it now lands in the owner's account.
    let via_acme = Agent::new(&h.web_url);
    let callback = via_acme.sign_in_at_provider("acme", "owner-acme").await;
    assert_eq!(via_acme.open(&callback).await.url.path(), "/app");
    assert_eq!(via_acme.refresh().await.1["user"]["id"], owner.id.as_str());
    // The solo account's identity cannot be linked to the owner as well.
    let fresh = Agent::new(&h.web_url);
    assert_eq!(fresh.log_in(&owner.email, &owner.password).await.0, 200);
    let callback = fresh.link_at_provider("acme", "solo").await;
    let page = fresh.open(&callback).await;
    assert_eq!(page.url.path(), "/login/failed");
    assert!(
        page.body.contains("data-reason=\"identity_in_use\""),
        "{}",
        page.body
    );

    // Linking needs a signed-in browser.
    let page = Agent::new(&h.web_url)
        .open(&format!(
            "{}/v1/auth/oidc/google/start?intent=link",
            h.web_url
        ))
        .await;
    assert_eq!(page.url.path(), "/login/failed");
    assert!(page.body.contains("data-reason=\"signed_out\""));
    assert_eq!(counts(&h).await.0, 2, "owner and solo, nobody else");
    let linked: i64 = sqlx::query_scalar("SELECT count(*) FROM external_identities")
        .fetch_one(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(linked, 2, "solo's acme identity and the owner's");
}
