//! The event pipeline under faults: a poison event goes to the dead-letter
//! stream without holding up the events behind it; a redelivered event
//! changes no row but re-runs its side effects; a relay killed between
//! publishing and marking loses nothing and applies nothing twice.

use crate::BUILD;
use confab_core::events::{Event, EventKind};
use confab_testkit::{eventually, Harness, Options};
use redis::AsyncCommands;
use std::collections::HashMap;

type Entry = (String, HashMap<String, String>);

async fn entries(h: &Harness, stream: &str) -> Vec<Entry> {
    let mut conn = h.redis.clone();
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).await.unwrap();
    reply
        .ids
        .into_iter()
        .map(|e| {
            let map = e
                .map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value::<String>(v).unwrap()))
                .collect();
            (e.id, map)
        })
        .collect()
}

async fn add(h: &Harness, fields: &[(&str, String)]) -> String {
    let mut conn = h.redis.clone();
    let stream = format!("{}events", h.redis_prefix);
    conn.xadd(stream, "*", fields).await.unwrap()
}

async fn display_name(h: &Harness, user: &str) -> Option<(String, i64)> {
    sqlx::query_as("SELECT display_name, version FROM profiles WHERE user_id = $1::uuid")
        .bind(user)
        .fetch_optional(&h.dbs.backend)
        .await
        .unwrap()
}

async fn times_processed(h: &Harness, event: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE event_id = $1::uuid")
        .bind(event)
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap()
}

fn user_updated(user: &str, name: &str, version: i64) -> Event {
    Event::new(
        EventKind::UserUpdated {
            user_id: user.parse().unwrap(),
            email: format!("{version}@example.test"),
            display_name: name.to_string(),
            avatar_url: None,
            time_zone: None,
            version,
        },
        confab_core::clock::Clock::system().now(),
    )
}

fn fields(event: &Event) -> Vec<(&'static str, String)> {
    vec![
        ("id", event.id.to_string()),
        ("type", event.kind.type_name().to_string()),
        ("payload", serde_json::to_string(event).unwrap()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_and_the_rest_flow_past_it() {
    let h = Harness::start_with(
        BUILD,
        "events_poison_to_dead_letters",
        Options {
            env: vec![
                ("CONFAB_EVENT_RETRY_BASE_MS".into(), "50".into()),
                ("CONFAB_EVENT_MAX_DELIVERIES".into(), "3".into()),
            ],
            ..Options::default()
        },
    )
    .await;
    let alice = h.sign_up().await;
    h.events_settled().await;

    // Valid JSON the database refuses (a name far over any limit): applying
    // it fails every time. Then one that does not parse, one of a type
    // this backend does not handle, and a real event behind them all.
    let poison = user_updated(&alice.id, &"x".repeat(300), 99);
    add(&h, &fields(&poison)).await;
    add(
        &h,
        &[
            ("id", uuid::Uuid::new_v4().to_string()),
            ("type", "user.updated".into()),
            ("payload", "{not json".into()),
        ],
    )
    .await;
    add(
        &h,
        &[
            ("id", uuid::Uuid::new_v4().to_string()),
            ("type", "invoice.paid".into()),
            ("payload", "{}".into()),
        ],
    )
    .await;
    let behind = user_updated(&alice.id, "Alice Behind The Poison", 2);
    add(&h, &fields(&behind)).await;

    let dead_stream = format!("{}events:dead", h.redis_prefix);
    let dead = eventually(
        5,
        "the poison and the malformed event dead-lettered",
        || async {
            let dead = entries(&h, &dead_stream).await;
            (dead.len() == 2).then_some(dead)
        },
    )
    .await;
    h.events_settled().await;

    let malformed = &dead[0].1;
    assert_eq!(malformed["reason"], "malformed");
    assert_eq!(malformed["deliveries"], "1");
    let failed = dead
        .iter()
        .find(|(_, f)| f["id"] == poison.id.to_string())
        .expect("the poison event is in the dead letters");
    assert_eq!(failed.1["reason"], "apply_failed");
    assert_eq!(
        failed.1["deliveries"], "3",
        "delivered max_deliveries times"
    );
    assert_eq!(failed.1["payload"], serde_json::to_string(&poison).unwrap());

    // The event behind the poison was applied before the poison had used up
    // its retries: it did not wait for it. The poison changed nothing.
    let behind_applied_ms: f64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM processed_at) * 1000)::float8 FROM processed_events
         WHERE event_id = $1",
    )
    .bind(behind.id.0)
    .fetch_one(&h.dbs.backend)
    .await
    .unwrap();
    let dead_lettered_ms: f64 = failed.0.split('-').next().unwrap().parse().unwrap();
    assert!(
        behind_applied_ms < dead_lettered_ms,
        "the event behind ({behind_applied_ms}) waited for the poison ({dead_lettered_ms})"
    );
    assert_eq!(
        display_name(&h, &alice.id).await.unwrap(),
        ("Alice Behind The Poison".into(), 2)
    );
    assert_eq!(times_processed(&h, &poison.id.to_string()).await, 0);
    assert_eq!(
        h.metric("events_dead_lettered_total", &["apply_failed"])
            .await,
        1.0
    );
    assert_eq!(
        h.metric("events_dead_lettered_total", &["malformed"]).await,
        1.0
    );
    assert_eq!(h.metric("events_ignored_total", &[]).await, 1.0);
    assert!(h.metric("events_retried_total", &[]).await >= 2.0);
    eventually(3, "the dead-letter gauge", || async {
        (h.metric("events_dead_letter_length", &[]).await == 2.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_revocation_writes_redis_again() {
    let h = Harness::start(BUILD, "events_redelivery_side_effects").await;
    let alice = h.sign_up().await;
    assert_eq!(h.log_out(&alice.access_token).await, 204);
    h.events_settled().await;
    let stream = format!("{}events", h.redis_prefix);
    let (_, revoked) = entries(&h, &stream)
        .await
        .into_iter()
        .find(|(_, f)| f["type"] == "session.revoked")
        .expect("session.revoked in the stream");
    let event: Event = serde_json::from_str(&revoked["payload"]).unwrap();
    let EventKind::SessionRevoked { session_id, .. } = event.kind else {
        panic!("not a revocation: {event:?}");
    };
    let key = format!("{}revoked:{session_id}", h.redis_prefix);
    let mut conn = h.redis.clone();
    let _: i64 = conn.del(&key).await.unwrap();

    // The same event once more (what a redelivery looks like).
    let again: Vec<(&str, String)> = ["id", "type", "payload"]
        .iter()
        .map(|k| (*k, revoked[*k].clone()))
        .collect();
    add(&h, &again).await;
    h.events_settled().await;
    let exists: bool = conn.exists(&key).await.unwrap();
    assert!(
        exists,
        "the redelivered revocation re-wrote the Redis entry"
    );
    assert_eq!(times_processed(&h, &event.id.to_string()).await, 1);
    assert_eq!(
        h.metric(
            "events_applied_total",
            &["session.revoked", "outcome=\"duplicate\""]
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_publishing_and_marking_loses_and_doubles_nothing() {
    let mut h = Harness::start(BUILD, "events_relay_crash").await;
    let alice = h.sign_up().await;
    h.events_settled().await;

    h.stop_service("auth");
    h.restart_service("auth", &[("CONFAB_FAULT_RELAY", "exit_after_publish")])
        .await;
    // An event committed with its change (written here as auth would).
    let event = user_updated(&alice.id, "Alice After The Crash", 2);
    sqlx::query("INSERT INTO outbox (id, type, payload, created_at) VALUES ($1, $2, $3, now())")
        .bind(event.id.0)
        .bind(event.kind.type_name())
        .bind(sqlx::types::Json(&event))
        .execute(&h.dbs.auth)
        .await
        .unwrap();
    assert_eq!(h.service_exited("auth", 5).await, 86, "the injected crash");

    let stream = format!("{}events", h.redis_prefix);
    let copies = |all: Vec<Entry>| {
        all.iter()
            .filter(|(_, f)| f["id"] == event.id.to_string())
            .count()
    };
    assert_eq!(copies(entries(&h, &stream).await), 1, "published once");
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE id = $1 AND published_at IS NULL")
            .bind(event.id.0)
            .fetch_one(&h.dbs.auth)
            .await
            .unwrap();
    assert_eq!(unpublished, 1, "the crash came before the row was marked");

    h.restart_service("auth", &[]).await;
    h.events_settled().await;
    assert_eq!(
        copies(entries(&h, &stream).await),
        2,
        "relayed again after the restart"
    );
    assert_eq!(
        display_name(&h, &alice.id).await.unwrap(),
        ("Alice After The Crash".into(), 2)
    );
    assert_eq!(times_processed(&h, &event.id.to_string()).await, 1);
    let applied = |outcome: &'static str| {
        let h = &h;
        async move {
            h.metric(
                "events_applied_total",
                &["user.updated", &format!("outcome=\"{outcome}\"")],
            )
            .await
        }
    };
    assert_eq!(applied("applied").await, 1.0);
    assert_eq!(applied("duplicate").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_catches_up_in_order_applying_each_update_once() {
    let mut h = Harness::start(BUILD, "events_backend_down_catch_up").await;
    let alice = h.sign_up().await;
    h.events_settled().await;
    h.stop_service("backend");
    let me = format!("{}/v1/auth/me", h.auth_url);
    for name in ["First Rename", "Second Rename"] {
        let (s, b) = h
            .call(
                reqwest::Method::PATCH,
                &me,
                Some(&alice.access_token),
                Some(serde_json::json!({"display_name": name})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    h.restart_service("backend", &[]).await;
    h.events_settled().await;
    assert_eq!(
        display_name(&h, &alice.id).await.unwrap(),
        ("Second Rename".into(), 3)
    );
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM outbox WHERE type = 'user.updated' ORDER BY seq")
            .fetch_all(&h.dbs.auth)
            .await
            .unwrap();
    assert_eq!(ids.len(), 2);
    let applied: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM processed_events WHERE event_type = 'user.updated'
         ORDER BY processed_at",
    )
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap();
    assert_eq!(applied, ids, "each applied once, in order");
}
