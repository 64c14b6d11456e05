//! Flow 8 — plans: the quota warns at 80 %, refuses at 100 % with the
//! upgrade prompt (the refused message kept in the composer), the upgrade
//! goes through the payment provider's checkout and webhook (localstripe
//! and the testkit's checkout page), and the limits lift live, without a
//! reload. Then the limits across instances, the webhook's refusals, a
//! burst of 100 messages, and resends, which are not counted.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, log_in},
    eventually,
    payments::PRO_PRICE,
    Harness, Options,
};
use fantoccini::{Client, Locator};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css))
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

async fn text_of(c: &Client, testid: &str) -> Option<String> {
    let el = c
        .find(Locator::Css(&format!("[data-testid={testid}]")))
        .await
        .ok()?;
    el.text().await.ok()
}

async fn send_in_page(c: &Client, text: &str) {
    by_testid(c, "chat-input")
        .await
        .send_keys(text)
        .await
        .unwrap();
    by_testid(c, "chat-send").await.click().await.unwrap();
}

async fn replies_complete(c: &Client, n: usize) {
    eventually(10, &format!("{n} complete replies"), || async {
        let done = count(
            c,
            "[data-testid=message][data-role=assistant][data-status=complete]",
        )
        .await;
        (done >= n).then_some(())
    })
    .await;
}

async fn user_messages(h: &Harness, user: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE user_id = $1::uuid AND role = 'user'")
        .bind(user)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap()
}

async fn plan_of(h: &Harness, user: &str) -> String {
    sqlx::query_scalar("SELECT plan FROM profiles WHERE user_id = $1::uuid")
        .bind(user)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap()
}

/// With `CONFAB_E2E_SCREENSHOTS` set: the page wide and narrow (and dark
/// with `CONFAB_E2E_DARK`), in the test's artifacts folder.
async fn shoot(c: &Client, h: &Harness, name: &str) {
    if std::env::var_os("CONFAB_E2E_SCREENSHOTS").is_none() {
        return;
    }
    let theme = if std::env::var_os("CONFAB_E2E_DARK").is_some() {
        "dark"
    } else {
        "light"
    };
    for (size, w, hgt) in [("wide", 1280, 900), ("narrow", 390, 844)] {
        c.set_window_size(w, hgt).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(h.artifacts.join(format!("{name}-{theme}-{size}.png")), png).unwrap();
    }
    c.set_window_size(1280, 900).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow08_rate_limit_and_upgrade() {
    let h = Harness::start_with(
        BUILD,
        "flow08_rate_limit_and_upgrade",
        Options {
            payments: true,
            env: env(&[("CONFAB_PLAN_FREE_DAILY_MESSAGES", "5")]),
            ..Options::default()
        },
    )
    .await;
    let ada = h.sign_up().await;
    let browser = h.browser().await;
    let (h, ada) = (&h, &ada);
    browser
        .run(|c| async move {
            log_in(&c, &h.web_url, ada).await;
            eventually(5, "the Free badge", || async {
                (text_of(&c, "plan-badge").await? == "Free").then_some(())
            })
            .await;
            // Three of five: no warning yet.
            for i in 1..=3 {
                send_in_page(&c, &format!("Question {i}")).await;
                replies_complete(&c, i).await;
            }
            assert_eq!(count(&c, "[data-testid=quota-warning]").await, 0);
            // The fourth is 80 %: the warning shows.
            send_in_page(&c, "Question 4").await;
            replies_complete(&c, 4).await;
            let warning = eventually(5, "the 80 % warning", || async {
                text_of(&c, "quota-warning").await
            })
            .await;
            assert!(warning.contains("4 of your 5 messages"), "{warning}");
            send_in_page(&c, "Question 5").await;
            replies_complete(&c, 5).await;

            // The sixth is refused: the prompt shows, the message is kept in
            // the composer and nowhere else.
            c.execute("window.__notReloaded = true;", vec![])
                .await
                .unwrap();
            send_in_page(&c, "The kept question").await;
            let prompt = eventually(5, "the upgrade prompt", || async {
                text_of(&c, "upgrade-prompt").await
            })
            .await;
            assert!(
                prompt.contains("all 5 messages of the Free plan"),
                "{prompt}"
            );
            let kept = by_testid(&c, "chat-input")
                .await
                .prop("value")
                .await
                .unwrap();
            assert_eq!(kept.as_deref(), Some("The kept question"));
            assert_eq!(count(&c, "[data-testid=message][data-role=user]").await, 5);
            assert_eq!(count(&c, "[data-testid=quota-warning]").await, 0);
            assert_eq!(user_messages(h, &ada.id).await, 5);
            shoot(&c, h, "upgrade-prompt").await;

            // Upgrade: checkout opens in a new tab; paying there brings it
            // back to settings on Pro.
            let chat_tab = c.window().await.unwrap();
            let before = c.windows().await.unwrap();
            c.find(Locator::Css(
                "[data-testid=upgrade-prompt] [data-testid=upgrade-button]",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
            let checkout_tab = eventually(5, "the checkout tab", || async {
                let now = c.windows().await.ok()?;
                now.into_iter().find(|w| !before.contains(w))
            })
            .await;
            c.switch_to_window(checkout_tab).await.unwrap();
            by_testid(&c, "checkout-pay").await.click().await.unwrap();
            eventually(5, "settings on the Pro plan", || async {
                (text_of(&c, "plan-name").await? == "Pro").then_some(())
            })
            .await;
            assert!(c
                .current_url()
                .await
                .unwrap()
                .as_str()
                .contains("/settings?checkout=success"));
            shoot(&c, h, "settings-pro").await;

            // The chat tab heard it live: no reload, prompt gone, Pro.
            c.switch_to_window(chat_tab).await.unwrap();
            eventually(5, "the plan change in the chat tab", || async {
                (text_of(&c, "plan-badge").await? == "Pro").then_some(())
            })
            .await;
            assert!(text_of(&c, "plan-changed")
                .await
                .unwrap()
                .contains("Pro plan"));
            assert_eq!(count(&c, "[data-testid=upgrade-prompt]").await, 0);
            let same_page = c
                .execute("return window.__notReloaded === true;", vec![])
                .await
                .unwrap();
            assert_eq!(same_page, json!(true), "the page was reloaded");
            // The kept message goes through now.
            by_testid(&c, "chat-send").await.click().await.unwrap();
            replies_complete(&c, 6).await;
            assert_eq!(count(&c, "[data-testid=message][data-role=user]").await, 6);
        })
        .await;

    assert_eq!(user_messages(h, &ada.id).await, 6);
    assert_eq!(plan_of(h, &ada.id).await, "pro");
    let (plan, reason): (String, String) = sqlx::query_as(
        "SELECT payload -> 'data' ->> 'plan', payload -> 'data' ->> 'reason' FROM outbox
         WHERE type = 'plan.changed' AND payload -> 'data' ->> 'user_id' = $1",
    )
    .bind(&ada.id)
    .fetch_one(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!((plan.as_str(), reason.as_str()), ("pro", "checkout"));
    let (customer, status): (String, String) = sqlx::query_as(
        "SELECT customer_id, status FROM billing_customers WHERE user_id = $1::uuid",
    )
    .bind(&ada.id)
    .fetch_one(&h.dbs.backend)
    .await
    .unwrap();
    assert!(customer.starts_with("cus_"), "{customer}");
    assert_eq!(status, "active");
}

/// Two backend instances, one count: 12 messages at once, half to each
/// instance, against a quota of 5 admit exactly 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow08_two_instances_share_one_count() {
    let h = Harness::start_with(
        BUILD,
        "flow08_two_instances_share_one_count",
        Options {
            backends: 2,
            env: env(&[("CONFAB_PLAN_FREE_DAILY_MESSAGES", "5")]),
            ..Options::default()
        },
    )
    .await;
    let user = h.sign_up().await;
    // Twelve sockets, six on each instance, one message each, all sent
    // before any answer is read: the admissions race on both instances.
    let mut sockets = Vec::new();
    for i in 0..12 {
        let url = &h.backend_urls[i % 2];
        let ws = url.replacen("http://", "ws://", 1) + "/v1/ws";
        let mut s = confab_testkit::Socket::connect(&ws, None).await;
        s.authenticate(&user.access_token).await;
        sockets.push(s);
    }
    for (i, s) in sockets.iter_mut().enumerate() {
        s.send(json!({"type": "send", "client_msg_id": format!("m-{i}"), "text": format!("hello {i}")}))
            .await;
    }
    let mut acks = 0;
    let mut refused = Vec::new();
    for (i, s) in sockets.iter_mut().enumerate() {
        loop {
            let f = s.recv().await;
            let mine = f["client_msg_id"] == format!("m-{i}");
            match f["type"].as_str() {
                Some("ack") if mine => {
                    acks += 1;
                    break;
                }
                Some("error") if mine => {
                    refused.push(f);
                    break;
                }
                _ => {}
            }
        }
    }
    assert_eq!(acks, 5, "refusals: {refused:?}");
    assert_eq!(refused.len(), 7);
    for f in &refused {
        assert_eq!(f["code"], "quota_exceeded", "{f}");
        assert_eq!(f["limit"], "quota");
        let retry = f["retry_after"].as_u64().unwrap();
        assert!((86_000..=86_400).contains(&retry), "{f}");
        assert!(f["upgrade_url"].is_null(), "no plan to buy here: {f}");
    }
    assert_eq!(user_messages(&h, &user.id).await, 5);

    // The HTTP API says the same, with the headers.
    let r = h
        .http
        .post(format!("{}/v1/messages", h.backend_urls[1]))
        .bearer_auth(&user.access_token)
        .json(&json!({"client_msg_id": "http-1", "text": "one more"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 86_000);
    assert_eq!(r.headers()["ratelimit-limit"], "5");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(body["error"]["usage"]["used"], 5);
    // And the usage shows it.
    let usage: Value = h
        .http
        .get(format!("{}/v1/usage", h.backend_urls[0]))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            usage["usage"]["used"].as_u64(),
            usage["plan"]["daily_messages"].as_u64()
        ),
        (Some(5), Some(5))
    );
}

fn subscription_event(id: &str, kind: &str, customer: &str, sub: &str, created: i64) -> Value {
    json!({
        "id": id, "object": "event", "type": kind, "created": created,
        "data": {"object": {"id": sub, "object": "subscription", "customer": customer, "status": "active"}},
    })
}

/// The webhook refuses or ignores what it cannot trust, and ends on the
/// provider's state whatever the order of arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow08_webhook_bad_inputs() {
    let h = Harness::start_with(
        BUILD,
        "flow08_webhook_bad_inputs",
        Options {
            payments: true,
            ..Options::default()
        },
    )
    .await;
    let p = h.payments.as_ref().unwrap();
    let user = h.sign_up().await;
    let hook = format!("{}/v1/billing/webhook", h.backend_url);
    // A checkout makes the provider's customer (not paid for).
    let r = h
        .http
        .post(format!("{}/v1/billing/checkout", h.backend_url))
        .bearer_auth(&user.access_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let customer: String =
        sqlx::query_scalar("SELECT customer_id FROM billing_customers WHERE user_id = $1::uuid")
            .bind(&user.id)
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    let now = confab_core::clock::Clock::system().now().timestamp();
    let forged = subscription_event(
        "evt_forged",
        "customer.subscription.updated",
        &customer,
        "sub_x",
        now,
    );

    // A bad signature, a stale timestamp, a tampered body: 400, nothing changes.
    let r = p.deliver(&hook, &forged, now, "whsec_not_ours").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = p
        .deliver(&hook, &forged, now - 600, &p.webhook_secret)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = serde_json::to_vec(&forged).unwrap();
    let signature = confab_testkit::payments::stripe_signature(b"{}", &p.webhook_secret, now);
    let r = h
        .http
        .post(&hook)
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = h.http.post(&hook).body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no signature at all");
    // A customer we do not know: acknowledged (so it is not retried), ignored.
    let stranger = subscription_event(
        "evt_stranger",
        "customer.subscription.created",
        "cus_nobody",
        "sub_y",
        now,
    );
    let r = p.deliver(&hook, &stranger, now, &p.webhook_secret).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["outcome"],
        "unknown_customer"
    );
    assert_eq!(plan_of(&h, &user.id).await, "free");
    // Each refusal is logged with its reason (`why=<reason>`; the log is
    // coloured, so the value is looked for as it is printed, quoted).
    let log = h.log("backend");
    assert!(log.contains("payment webhook refused"));
    for why in [
        "\"bad_signature\"",
        "\"stale_timestamp\"",
        "\"missing_signature\"",
        "customer we do not know",
    ] {
        assert!(log.contains(why), "backend log lacks {why}");
    }

    // A real subscription, then its event: Pro.
    let pm = p
        .stripe(
            Method::POST,
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4242424242424242"),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2034"),
                ("card[cvc]", "123"),
            ],
        )
        .await;
    let pm = pm["id"].as_str().unwrap().to_string();
    p.stripe(
        Method::POST,
        &format!("/v1/payment_methods/{pm}/attach"),
        &[("customer", customer.as_str())],
    )
    .await;
    p.stripe(
        Method::POST,
        &format!("/v1/customers/{customer}"),
        &[("invoice_settings[default_payment_method]", pm.as_str())],
    )
    .await;
    let sub = p
        .stripe(
            Method::POST,
            "/v1/subscriptions",
            &[
                ("customer", customer.as_str()),
                ("items[0][plan]", PRO_PRICE),
            ],
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_string();
    let created = subscription_event(
        "evt_created_1",
        "customer.subscription.created",
        &customer,
        &sub,
        now,
    );
    let r = p.deliver(&hook, &created, now, &p.webhook_secret).await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    assert_eq!(plan_of(&h, &user.id).await, "pro");
    // Replayed (a fresh timestamp, the same event id): nothing more.
    let r = p.deliver(&hook, &created, now + 1, &p.webhook_secret).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");

    // Out of order: the subscription is cancelled, then an older "updated"
    // event arrives late. The provider's current state wins: Free.
    p.stripe(Method::DELETE, &format!("/v1/subscriptions/{sub}"), &[])
        .await;
    let late = subscription_event(
        "evt_late_update",
        "customer.subscription.updated",
        &customer,
        &sub,
        now - 5,
    );
    let r = p.deliver(&hook, &late, now, &p.webhook_secret).await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    assert_eq!(plan_of(&h, &user.id).await, "free");
    // localstripe's own signed webhooks (created, deleted) arrive a second
    // later: accepted, and the plan stays where the provider says.
    eventually(10, "localstripe's own webhooks accepted", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM billing_events WHERE type = 'customer.subscription.deleted'",
        )
        .fetch_one(&h.dbs.backend)
        .await
        .ok()?;
        (n >= 1).then_some(())
    })
    .await;
    assert_eq!(plan_of(&h, &user.id).await, "free");
    let changes: Vec<String> = sqlx::query_scalar(
        "SELECT payload -> 'data' ->> 'plan' FROM outbox WHERE type = 'plan.changed' ORDER BY seq",
    )
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!(changes, ["pro", "free"]);
}

/// 100 messages at once by one user: each one is answered or cleanly
/// refused (429 `quota_exceeded` with `Retry-After`), nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow08_hundred_at_once() {
    let h = Harness::start_with(
        BUILD,
        "flow08_hundred_at_once",
        Options {
            env: env(&[
                ("CONFAB_PLAN_FREE_RATE_PER_MINUTE", "30"),
                ("CONFAB_PLAN_FREE_CONCURRENT", "4"),
            ]),
            ..Options::default()
        },
    )
    .await;
    let user = h.sign_up().await;
    let sends = (0..100).map(|i| {
        let h = &h;
        let token = user.access_token.clone();
        async move {
            let r = h
                .http
                .post(format!("{}/v1/messages", h.backend_url))
                .bearer_auth(token)
                .json(&json!({"client_msg_id": format!("burst-{i}"), "text": format!("burst {i}")}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap();
            (status, retry, body)
        }
    });
    let results = join_all(sends).await;
    let mut admitted = Vec::new();
    let mut by_limit = std::collections::BTreeMap::new();
    for (status, retry, body) in &results {
        match *status {
            StatusCode::ACCEPTED => admitted.push(body["message_id"].as_str().unwrap().to_string()),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
                assert!(
                    retry
                        .as_deref()
                        .is_some_and(|r| r.parse::<u64>().unwrap() >= 1),
                    "{body}"
                );
                *by_limit
                    .entry(body["error"]["limit"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
            other => panic!("neither answered nor cleanly refused: {other} {body}"),
        }
    }
    assert!(
        !admitted.is_empty() && admitted.len() <= 30,
        "{} admitted",
        admitted.len()
    );
    assert_eq!(admitted.len() + by_limit.values().sum::<usize>(), 100);
    eprintln!(
        "100 at once: {} admitted, refused by {by_limit:?}",
        admitted.len()
    );
    // Every admitted one is answered.
    eventually(20, "a complete reply to every admitted message", || async {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE user_id = $1::uuid AND role = 'assistant' AND status = 'complete'",
        )
        .bind(&user.id)
        .fetch_one(&h.dbs.backend)
        .await
        .ok()?;
        (done as usize == admitted.len()).then_some(())
    })
    .await;
    assert_eq!(user_messages(&h, &user.id).await as usize, admitted.len());
    // Every slot was given back (right after each reply was written).
    eventually(5, "every generation slot given back", || async {
        let usage: Value = h
            .http
            .get(format!("{}/v1/usage", h.backend_url))
            .bearer_auth(&user.access_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (usage["running"] == 0).then_some(())
    })
    .await;
}

/// A resend is not counted against the plan, although its admission is
/// made while the resend check runs (on the plan of the user's previous
/// message) and only given back when the check finds the first copy: with
/// a quota and a rate of 3, three resends leave the next two messages
/// admitted, and the one after that is refused by the quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow08_resends_are_not_counted() {
    let h = Harness::start_with(
        BUILD,
        "flow08_resends_are_not_counted",
        Options {
            env: env(&[
                ("CONFAB_PLAN_FREE_DAILY_MESSAGES", "3"),
                ("CONFAB_PLAN_FREE_RATE_PER_MINUTE", "3"),
            ]),
            ..Options::default()
        },
    )
    .await;
    let user = h.sign_up().await;
    let mut ws = h.socket(&user).await;
    let first = ws.send_message("r-1", None, "first").await;
    assert_eq!(first["duplicate"], false);
    let thread = first["thread_id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let again = ws.send_message("r-1", None, "first").await;
        assert_eq!(again["duplicate"], true, "{again}");
        assert_eq!(again["message_id"], first["message_id"]);
    }
    // Given back (when Redis answered after the resend check, in a moment).
    let usage = || async {
        h.http
            .get(format!("{}/v1/usage", h.backend_url))
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    eventually(2, "one message counted, none of the resends", || async {
        let u = usage().await;
        (u["usage"]["used"] == 1 && u["usage"]["rate_remaining"] == 2).then_some(())
    })
    .await;
    for id in ["r-2", "r-3"] {
        let ack = ws.send_message(id, Some(&thread), id).await;
        assert_eq!(ack["duplicate"], false, "{ack}");
    }
    ws.send(json!({"type": "send", "client_msg_id": "r-4", "thread_id": thread, "text": "one too many"}))
        .await;
    let refused = loop {
        let f = ws.recv().await;
        if f["type"] == "error" && f["client_msg_id"] == "r-4" {
            break f;
        }
        assert_ne!(f["type"], "ack", "a fourth message was admitted: {f}");
    };
    assert_eq!(refused["code"], "quota_exceeded", "{refused}");
    assert_eq!(refused["limit"], "quota", "{refused}");
    assert_eq!(user_messages(&h, &user.id).await, 3);
    // Where the user stands says the same: three used, none by a resend.
    let usage = usage().await;
    assert_eq!(usage["usage"]["used"], 3, "{usage}");
    assert_eq!(usage["usage"]["rate_remaining"], 0, "{usage}");
}
