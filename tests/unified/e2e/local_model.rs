//! The local model in the product: a backend that runs the real model file
//! (SmolLM2-135M-Instruct) answers over the chat socket, streams, stores the
//! reply, and the app page names the model; a model file that is missing or
//! corrupt stops the backend with the documented error.

use crate::BUILD;
use confab_testkit::{browser::log_in, eventually, Agent, Harness, Options};
use fantoccini::Locator;
use serde_json::json;
use std::process::{Command, Stdio};

const MODEL_NAME: &str = "SmolLM2-135M-Instruct.Q4_1";

/// The backend's `local_model_tokens_total` counter.
async fn tokens_generated(h: &Harness) -> u64 {
    h.metric("local_model_tokens_total ", &[]).await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_model_answers_in_the_chat_and_the_page_names_it() {
    let h = Harness::start_with(
        BUILD,
        "local_model_chat",
        Options {
            agent: Agent::Local,
            ..Options::with_browser()
        },
    )
    .await;
    let user = h.sign_up().await;
    let mut ws = h.raw_socket().await;
    let ready = ws.authenticate(&user.access_token).await;
    assert_eq!(ready["agent"]["kind"], "local", "{ready}");
    assert_eq!(ready["agent"]["model"], MODEL_NAME, "{ready}");
    assert_eq!(ready["agent"]["offline"], false, "{ready}");
    assert!(ready["agent"].get("notice").is_none(), "{ready}");

    let ack = ws
        .send_message("l-1", None, "What is the capital of France?")
        .await;
    let thread = ack["thread_id"].as_str().unwrap().to_string();
    let reply = ws.collect_reply().await;
    assert!(
        reply.deltas > 3,
        "streamed token by token: {}",
        reply.deltas
    );
    assert!(reply.text.contains("Paris"), "{:?}", reply.text);
    let (status, content): (String, String) =
        sqlx::query_as("SELECT status, content FROM messages WHERE id = $1::uuid")
            .bind(&reply.message_id)
            .fetch_one(&h.dbs.backend)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), content.as_str()),
        ("complete", reply.text.as_str())
    );

    // A follow-up in the same thread: the history goes through the model's
    // chat template, and greedy decoding gives a reply again.
    ws.send_message("l-2", Some(&thread), "And of Italy?").await;
    let second = ws.collect_reply().await;
    assert!(!second.text.trim().is_empty());

    // Stop generating: the reply ends as stopped, and the model's worker
    // stops with it (it generated about as many tokens as were sent, not
    // the whole budget).
    let before = tokens_generated(&h).await;
    ws.send_message("l-3", Some(&thread), "Write a long story about a dragon.")
        .await;
    let first = ws.recv_type("delta").await;
    ws.send(json!({"type": "stop", "message_id": first["message_id"]}))
        .await;
    let mut deltas = 1;
    let done = loop {
        let f = ws.recv().await;
        match f["type"].as_str() {
            Some("delta") => deltas += 1,
            Some("done") => break f,
            _ => {}
        }
    };
    assert_eq!(done["status"], "stopped", "{done}");
    let stopped_after = eventually(10, "the stopped generation to end", || async {
        let now = tokens_generated(&h).await;
        (now > before).then_some(now - before)
    })
    .await;
    // Unstopped, this story runs to the 48-token budget.
    assert!(
        stopped_after < 40,
        "{stopped_after} tokens generated, {deltas} deltas received before done"
    );
    ws.close().await;

    let browser = h.browser().await;
    let (h, user) = (&h, &user);
    browser
        .run(|c| async move {
            log_in(&c, &h.web_url, user).await;
            eventually(15, "the app page names the local model", || async {
                let el = c
                    .find(Locator::Css("[data-testid=agent-model]"))
                    .await
                    .ok()?;
                (el.text().await.ok()? == MODEL_NAME).then_some(())
            })
            .await;
            assert!(
                c.find(Locator::Css("[data-testid=agent-notice]"))
                    .await
                    .is_err(),
                "no offline notice with a model"
            );
        })
        .await;
}

#[test]
fn a_missing_or_corrupt_model_file_stops_the_backend_with_the_documented_error() {
    let dir = std::path::PathBuf::from(BUILD.target_tmpdir).join("e2e/local_model_errors");
    std::fs::create_dir_all(&dir).unwrap();
    let corrupt = dir.join("corrupt.gguf");
    std::fs::write(&corrupt, b"GGUF but not really").unwrap();
    let missing = dir.join("missing.gguf");
    let _ = std::fs::remove_file(&missing);
    for (path, expected) in [
        (
            &missing,
            format!(
                "CONFAB_LOCAL_MODEL: no model file at {}; point CONFAB_LOCAL_MODEL at a GGUF file, \
                 or fetch the default model with ./scripts/deps.sh --model",
                missing.display()
            ),
        ),
        (
            &corrupt,
            format!(
                "CONFAB_LOCAL_MODEL: {} is not a usable GGUF model (unreadable GGUF header",
                corrupt.display()
            ),
        ),
    ] {
        // Nothing else configured: the model is checked before any
        // database or Redis is touched.
        let out = Command::new(BUILD.confab_bin)
            .arg("backend")
            .env_clear()
            .env("CONFAB_LOCAL_MODEL", path)
            .env("CONFAB_BACKEND_PORT", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run confab backend");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {}", path.display());
        assert!(stderr.contains(&expected), "{stderr}");
    }
}
