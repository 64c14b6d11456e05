//! Flow 6 — agent error → user notification → recovery, in a real browser.
//!
//! For each kind of provider failure (500, no first token in time, a stream
//! cut after a few tokens, a malformed stream, 429) the user sees a specific,
//! friendly message in place of the reply, with Retry; Retry brings a
//! complete reply in the same thread, and the chat goes on. The database
//! holds the failed attempt and the good one; the server log has the
//! failure's line under the reference the page shows. A transient failure
//! the automatic retry absorbs shows nothing at all. And the controls around
//! a reply: Stop generating (keeps the partial, cancels the upstream
//! request), Regenerate (on stopped and good replies), Copy (reply and code
//! block), highlighted code, Markdown rendered while it streams, and no
//! script from a reply ever running.

use crate::BUILD;
use confab_testkit::{
    browser::{by_testid, log_in},
    eventually,
    llm::echo_reply,
    Harness, Options, Reply, TestUser,
};
use fantoccini::{Client, Locator};
use std::{sync::Arc, time::Duration};

const LAST: &str = "[data-testid=message-list] > li:last-child";

fn options() -> Options {
    let env = [
        ("CONFAB_LLM_FIRST_TOKEN_TIMEOUT_MS", "300"),
        ("CONFAB_LLM_RETRIES", "1"),
        ("CONFAB_LLM_RETRY_BASE_MS", "20"),
        ("CONFAB_LLM_BREAKER_FAILURES", "0"),
    ];
    Options {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::with_browser()
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    let el = c.find(Locator::Css(css)).await.ok()?;
    el.attr(name).await.ok().flatten()
}

async fn text(c: &Client, css: &str) -> Option<String> {
    let el = c.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok()
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

async fn send(c: &Client, message: &str) {
    by_testid(c, "chat-input")
        .await
        .send_keys(message)
        .await
        .unwrap();
    by_testid(c, "chat-send").await.click().await.unwrap();
}

/// Wait until the last message is a reply in `status` whose text contains
/// `needle`; returns its text.
async fn last_reply(c: &Client, status: &str, needle: &str) -> String {
    eventually(
        10,
        &format!("the last reply {status} with {needle:?}"),
        || async {
            if attr(c, LAST, "data-role").await? != "assistant"
                || attr(c, LAST, "data-status").await? != status
            {
                return None;
            }
            let t = text(c, LAST).await?;
            t.contains(needle).then_some(t)
        },
    )
    .await
}

/// Click like a user: scroll the control into view first. (The message
/// list scrolls smoothly; a click computed mid-animation can land on the
/// composer below it.)
async fn click(c: &Client, css: &str) {
    let el = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    c.execute(
        "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})",
        vec![serde_json::to_value(&el).unwrap()],
    )
    .await
    .unwrap();
    el.click().await.unwrap();
}

/// The attempts at the question with this text: (status, current, code).
async fn attempts(h: &Harness, question: &str) -> Vec<(String, bool, Option<String>)> {
    sqlx::query_as(
        "SELECT r.status, r.current, r.error_code FROM messages r JOIN messages q ON r.reply_to = q.id
         WHERE q.content = $1 ORDER BY r.seq",
    )
    .bind(question)
    .fetch_all(&h.dbs.backend)
    .await
    .unwrap()
}

/// One kind of failure: what the stand-in does, what the user reads, the
/// partial text kept (if any) and the stored code.
struct Case {
    kind: &'static str,
    script: Vec<Reply>,
    friendly: &'static str,
    partial: Option<&'static str>,
    code: &'static str,
}

/// Each case in turn, in one thread: the failure shown in place of the
/// reply, specifically, with the reference the server logged; then Retry
/// brings a complete reply in place.
async fn failures_then_retries(h: &Harness, user: &TestUser, c: &Client, cases: Vec<Case>) {
    let llm = h.llm.as_ref().expect("stand-in");
    for (i, case) in cases.into_iter().enumerate() {
        let Case {
            kind,
            script,
            friendly,
            partial,
            code,
        } = case;
        llm.script(script);
        let question = format!("Question {} ({kind})", i + 1);
        let before = count(c, "[data-testid=message-list] > li").await;
        send(c, &question).await;
        // The question and its reply are on the page: until then the
        // last failed reply is the previous case's.
        eventually(
            10,
            &format!("{kind}: the question and its reply listed"),
            || async {
                (count(c, "[data-testid=message-list] > li").await >= before + 2).then_some(())
            },
        )
        .await;

        // The failure is shown in place of the reply, specifically.
        let shown = last_reply(c, "failed", "").await;
        let error_css = format!("{LAST} [data-testid=message-error]");
        let error = eventually(5, &format!("{kind}: the friendly error shown"), || async {
            text(c, &error_css).await.filter(|t| !t.is_empty())
        })
        .await;
        assert!(error.contains(friendly), "{kind}: {error:?}");
        match partial {
            Some(p) => {
                if !shown.contains(p) {
                    // What the page holds, for the report.
                    let list = c
                        .execute(
                            "return document.querySelector('[data-testid=message-list]').outerHTML",
                            vec![],
                        )
                        .await
                        .unwrap_or_default();
                    panic!("{kind}: partial text gone: {shown:?}; the list: {list}");
                }
                assert_eq!(
                    count(c, &format!("{LAST} [data-testid=reply-incomplete]")).await,
                    1,
                    "{kind}: the partial reply is not marked incomplete"
                );
            }
            None => assert_eq!(
                count(c, &format!("{LAST} [data-testid=reply-incomplete]")).await,
                0
            ),
        }
        // The reference on the page is the one in the server's log.
        let reference = text(c, &format!("{LAST} [data-testid=error-reference]"))
            .await
            .expect("a reference");
        let request_id = reference
            .trim_start_matches("Reference ")
            .trim()
            .to_string();
        let log = h.log("backend");
        let line = log
            .lines()
            .find(|l| l.contains("reply failed") && l.contains(&request_id))
            .unwrap_or_else(|| panic!("{kind}: no log line for {request_id}"));
        assert!(
            line.contains(&user.id) && line.contains(code),
            "{kind}: {line}"
        );

        // Retry: a complete reply, in place, in the same thread.
        click(c, &format!("{LAST} [data-testid=retry]")).await;
        last_reply(c, "complete", &echo_reply(&question)).await;
        assert_eq!(
            count(c, "[data-testid=message][data-role=assistant]").await,
            i + 1,
            "{kind}: the failed attempt is still shown next to the good one"
        );
        assert_eq!(count(c, "[data-testid=message-error]").await, 0, "{kind}");
        assert_eq!(
            attempts(h, &question).await,
            vec![
                ("failed".to_string(), false, Some(code.to_string())),
                ("complete".to_string(), true, None)
            ],
            "{kind}"
        );
        h.mark(kind);
    }
}

/// Every message of the test went to one thread.
async fn one_thread(h: &Harness) {
    let threads: i64 = sqlx::query_scalar("SELECT count(*) FROM threads")
        .fetch_one(&h.dbs.backend)
        .await
        .unwrap();
    assert_eq!(threads, 1);
}

/// The provider fails with a 500, starts too late, cuts its stream: each
/// shown specifically, each recovered with Retry, and the chat goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow06_agent_error_and_retry() {
    let h = Harness::start_with(BUILD, "flow06_agent_error_and_retry", options()).await;
    let user = h.sign_up().await;
    let browser = h.browser().await;
    let (h, user) = (&h, &user);
    browser
        .run(|c| async move {
            log_in(&c, &h.web_url, user).await;
            h.mark("log-in");
            let late = || Reply::Delayed {
                delay: Duration::from_millis(1000),
                chunks: vec!["too late".into()],
            };
            let cases = vec![
                Case {
                    kind: "500",
                    script: vec![Reply::Status(500), Reply::Status(500)],
                    friendly: "The AI model's service had an error (500). Retry to try again.",
                    partial: None,
                    code: "agent_unavailable",
                },
                Case {
                    kind: "timeout",
                    script: vec![late(), late()],
                    friendly: "The AI model took too long to start answering.",
                    partial: None,
                    code: "agent_timeout",
                },
                Case {
                    kind: "cut",
                    script: vec![Reply::CutAfter(vec!["Half ".into(), "an answer".into()])],
                    friendly: "The AI model's reply was cut off.",
                    partial: Some("Half an answer"),
                    code: "agent_interrupted",
                },
            ];
            failures_then_retries(h, user, &c, cases).await;

            // The chat goes on in the same thread.
            send(&c, "And one more thing").await;
            last_reply(&c, "complete", &echo_reply("And one more thing")).await;
            one_thread(h).await;

            let png = c.screenshot().await.expect("screenshot");
            std::fs::write(h.artifacts.join("recovered.png"), png).expect("save screenshot");
        })
        .await;
}

/// A stream Confab cannot read and a provider rate-limiting us: each shown
/// specifically and recovered with Retry; a transient failure the automatic
/// retry absorbs shows nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow06_unreadable_and_rate_limited_replies() {
    let h = Harness::start_with(BUILD, "flow06_unreadable_and_rate_limited", options()).await;
    let llm = h.llm.as_ref().expect("stand-in");
    let user = h.sign_up().await;
    let browser = h.browser().await;
    let (h, user) = (&h, &user);
    browser
        .run(|c| async move {
            log_in(&c, &h.web_url, user).await;
            h.mark("log-in");
            let cases = vec![
                Case {
                    kind: "malformed",
                    script: vec![Reply::Malformed],
                    friendly: "The AI model sent a reply Confab could not read.",
                    partial: None,
                    code: "agent_bad_response",
                },
                Case {
                    kind: "429",
                    script: vec![Reply::RateLimited {
                        retry_after: Some(30),
                    }],
                    friendly:
                        "The AI model is rate-limiting us right now. Retry in about 30 seconds.",
                    partial: None,
                    code: "agent_rate_limited",
                },
            ];
            failures_then_retries(h, user, &c, cases).await;

            // A transient failure the automatic retry absorbs shows nothing.
            let before = llm.requests().len();
            llm.script([Reply::Status(503)]);
            send(&c, "A hiccup").await;
            last_reply(&c, "complete", &echo_reply("A hiccup")).await;
            assert_eq!(llm.requests().len(), before + 2);
            assert_eq!(count(&c, "[data-testid=message-error]").await, 0);
            assert_eq!(
                attempts(h, "A hiccup").await,
                vec![("complete".to_string(), true, None)]
            );
            one_thread(h).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow06_stop_regenerate_and_copy() {
    let h = Harness::start_with(BUILD, "flow06_stop_regenerate_and_copy", options()).await;
    let llm = h.llm.as_ref().expect("stand-in");
    let user = h.sign_up().await;
    let browser = h.browser().await;
    let (h, user) = (&h, &user);
    browser
        .run(|c| async move {
            log_in(&c, &h.web_url, user).await;

            // A reply that would go on for ever, Markdown rendered while it
            // streams.
            llm.script([Reply::Gated {
                before: vec!["**Streaming** ".into(), "into view ".into()],
                gate: Arc::new(tokio::sync::Notify::new()),
                after: vec![],
            }]);
            send(&c, "Tell me a story").await;
            last_reply(&c, "streaming", "into view").await;
            let html = c
                .find(Locator::Css(&format!(
                    "{LAST} [data-testid=message-content]"
                )))
                .await
                .unwrap()
                .html(true)
                .await
                .unwrap();
            assert!(
                html.contains("<strong>Streaming</strong>"),
                "not rendered while streaming: {html}"
            );

            // Stop generating: the partial stays, marked stopped, and the
            // request to the provider is cancelled.
            click(&c, &format!("{LAST} [data-testid=stop-generating]")).await;
            last_reply(&c, "stopped", "into view").await;
            assert_eq!(
                count(&c, &format!("{LAST} [data-testid=reply-stopped]")).await,
                1
            );
            eventually(5, "the upstream request to be cancelled", || async {
                (llm.abandoned() == 1).then_some(())
            })
            .await;
            assert_eq!(
                attempts(h, "Tell me a story").await,
                vec![("stopped".to_string(), true, None)]
            );

            // Regenerate the stopped reply: a new one in its place, with a
            // highlighted code block, and nothing from the reply runs.
            llm.script([Reply::text(
                "Here is code:\n\n```rust\nfn main() { println!(\"hi\"); }\n```\n\n\
                 <img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script> done.",
            )]);
            click(&c, &format!("{LAST} [data-testid=regenerate]")).await;
            last_reply(&c, "complete", "done.").await;
            assert_eq!(
                count(&c, "[data-testid=message][data-role=assistant]").await,
                1
            );
            assert_eq!(count(&c, "[data-testid=reply-stopped]").await, 0);
            assert!(
                count(&c, &format!("{LAST} pre code span[class*=hl-]")).await > 0,
                "code not highlighted"
            );
            let pwned = c
                .execute("return window.__pwned === undefined", vec![])
                .await
                .unwrap();
            assert_eq!(pwned, serde_json::json!(true), "script from a reply ran");

            // Copy the code block and the reply.
            click(&c, &format!("{LAST} [data-testid=copy-code]")).await;
            eventually(5, "the code block copied", || async {
                (attr(
                    &c,
                    &format!("{LAST} [data-testid=copy-code]"),
                    "data-copied",
                )
                .await?
                    == "true")
                    .then_some(())
            })
            .await;
            click(&c, &format!("{LAST} [data-testid=copy-reply]")).await;
            eventually(5, "the reply copied", || async {
                (attr(
                    &c,
                    &format!("{LAST} [data-testid=copy-reply]"),
                    "data-copied",
                )
                .await?
                    == "true")
                    .then_some(())
            })
            .await;

            // Regenerate a good reply too; every attempt is kept.
            llm.script([Reply::text("A second take.")]);
            click(&c, &format!("{LAST} [data-testid=regenerate]")).await;
            last_reply(&c, "complete", "A second take.").await;
            assert_eq!(
                count(&c, "[data-testid=message][data-role=assistant]").await,
                1
            );
            assert_eq!(
                attempts(h, "Tell me a story").await,
                vec![
                    ("stopped".to_string(), false, None),
                    ("complete".to_string(), false, None),
                    ("complete".to_string(), true, None)
                ]
            );

            // After a reload the conversation shows the current attempt only.
            c.refresh().await.unwrap();
            last_reply(&c, "complete", "A second take.").await;
            assert_eq!(
                count(&c, "[data-testid=message][data-role=assistant]").await,
                1
            );
        })
        .await;
}
