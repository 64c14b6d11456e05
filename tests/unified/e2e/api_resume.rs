//! Resume and history on a thread far longer than one page: a resume from
//! the start pages through all of it (no cap), and history reads backwards
//! from the newest message, one page at a time, down to the first.

use crate::BUILD;
use confab_testkit::Harness;
use serde_json::json;

/// Messages in the long thread: more than two resume pages (500 each).
const LONG: i64 = 1202;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_thread_resumes_in_pages_and_history_reads_newest_first() {
    let h = Harness::start(BUILD, "api_resume_pages").await;
    let user = h.sign_up().await;
    let thread = h.chat(&user, &["the first question"]).await;
    // The rest of a long history, written straight to the database (1,200
    // socket round trips would only test patience).
    sqlx::query(
        "INSERT INTO messages (id, thread_id, user_id, role, content, status, seq)
         SELECT gen_random_uuid(), $1::uuid, $2::uuid,
                CASE WHEN g % 2 = 1 THEN 'user' ELSE 'assistant' END, 'message ' || g, 'complete', g
         FROM generate_series(3, $3) AS g",
    )
    .bind(&thread)
    .bind(&user.id)
    .bind(LONG)
    .execute(&h.dbs.backend)
    .await
    .unwrap();
    sqlx::query("UPDATE threads SET last_seq = $2 WHERE id = $1::uuid")
        .bind(&thread)
        .bind(LONG)
        .execute(&h.dbs.backend)
        .await
        .unwrap();

    // Resume from 0: pages of at most 500, each closed by `resumed`, until
    // `more` is false; every message once, in order.
    let mut ws = h.socket(&user).await;
    let mut after = 0i64;
    let mut seqs = Vec::new();
    let mut pages = 0;
    loop {
        ws.send(json!({"type": "resume", "thread_id": thread, "after_seq": after}))
            .await;
        let mut in_page = 0;
        let end = loop {
            let f = ws.recv().await;
            match f["type"].as_str() {
                Some("message") => {
                    seqs.push(f["message"]["seq"].as_i64().unwrap());
                    in_page += 1;
                }
                Some("resumed") => break f,
                _ => panic!("unexpected frame during a resume: {f}"),
            }
        };
        pages += 1;
        assert_eq!(end["thread_id"], thread.as_str());
        assert!(in_page <= 500, "a page of {in_page}");
        assert_eq!(end["through_seq"], *seqs.last().unwrap());
        after = end["through_seq"].as_i64().unwrap();
        if end["more"] == false {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seqs, (1..=LONG).collect::<Vec<_>>());
    // Caught up: an empty page that says so.
    ws.send(json!({"type": "resume", "thread_id": thread, "after_seq": LONG}))
        .await;
    let end = ws.recv().await;
    assert_eq!(
        end,
        json!({"type": "resumed", "thread_id": thread, "through_seq": LONG, "more": false})
    );

    // History: newest first by default, then earlier pages back to seq 1.
    let base = format!("{}/v1/threads/{thread}/messages", h.web_url);
    let (status, page) = h.get(&base, Some(&user.access_token)).await;
    assert_eq!(status, 200, "{page}");
    let seqs_of = |page: &serde_json::Value| -> Vec<i64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        seqs_of(&page),
        ((LONG - 99)..=LONG).collect::<Vec<_>>(),
        "the newest 100, oldest first"
    );
    assert_eq!(page["has_earlier"], true);
    let mut oldest = LONG - 99;
    let mut all = seqs_of(&page);
    while oldest > 1 {
        let (status, page) = h
            .get(
                &format!("{base}?before_seq={oldest}&limit=400"),
                Some(&user.access_token),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let got = seqs_of(&page);
        assert_eq!(*got.last().unwrap(), oldest - 1);
        assert_eq!(page["has_earlier"], got[0] > 1);
        oldest = got[0];
        all.splice(0..0, got);
    }
    assert_eq!(all, (1..=LONG).collect::<Vec<_>>());

    // Bad pages are refused with a specific error and change nothing.
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("after_seq=1&before_seq=5", "invalid_page"),
        ("before_seq=soon", "malformed_request"),
        ("page=2", "malformed_request"),
    ] {
        let (status, body) = h
            .get(&format!("{base}?{query}"), Some(&user.access_token))
            .await;
        assert!(status == 400 || status == 422, "{query}: {status} {body}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }
}
