//! `confab up` from nothing: private PostgreSQL and Redis started from the
//! machine's server binaries in a data folder, migrations, the three
//! services; with no model file, sign up and chat with the offline assistant
//! through web (which says how to get a model); a clean stop on SIGTERM; and
//! a second start that reuses the data folder (the user is still there) and
//! finds the local model placed in it, which then answers.

use crate::BUILD;
use confab_testkit::{user::unique_email, Socket};
use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running `confab up`; stopped (SIGTERM) when dropped, so a failing test
/// leaves nothing behind; its stderr is kept in a file and printed on failure.
struct Up {
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

impl Up {
    /// `confab up` with no arguments in `cwd`, as the README runs it (so the
    /// data folder is the relative default `.confab`).
    async fn start(cwd: &Path, log: PathBuf) -> Self {
        let mut child = Command::new(BUILD.confab_bin)
            .arg("up")
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
            )
            // Free ports, so the test never collides with a Confab on 3000.
            .env("CONFAB_AUTH_PORT", "0")
            .env("CONFAB_BACKEND_PORT", "0")
            .env("CONFAB_WEB_PORT", "0")
            .env("CONFAB_OFFLINE_TOKEN_DELAY_MS", "1")
            .env("CONFAB_LOCAL_MAX_TOKENS", "24")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start confab up");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["event"] == "ready" {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(v["url"].as_str().unwrap_or_default().to_string());
                        }
                    }
                }
            }
        });
        let mut up = Up {
            child: Some(child),
            url: String::new(),
            log,
        };
        match tokio::time::timeout(Duration::from_secs(120), rx).await {
            Ok(Ok(url)) => up.url = url,
            _ => panic!("confab up did not become ready:\n{}", up.log_text()),
        }
        up
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..600 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            confab_core::clock::blocking_sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- confab up ({}) -----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        self.stop();
    }
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    confab_testkit::api::request(
        &reqwest::Client::new(),
        reqwest::Method::POST,
        url,
        None,
        Some(&body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confab_up_runs_everything_from_nothing() {
    let logs = PathBuf::from(BUILD.target_tmpdir)
        .join("e2e")
        .join("confab_up");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    // The working folder is under the system's temp folder: PostgreSQL runs
    // as the postgres user, who may not be able to enter the checkout.
    let dir =
        std::env::temp_dir().join(format!("confab-up-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join(".confab");

    let mut up = Up::start(&dir, logs.join("up-1.log")).await;
    assert!(
        data.join("postgres").join("PG_VERSION").exists(),
        "no private PostgreSQL in the data folder"
    );
    let email = unique_email("up");
    let (status, body) = post(
        &format!("{}/v1/auth/signup", up.url),
        json!({"email": email, "password": "a long enough password", "display_name": "Uma"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let ws_url = up.url.replacen("http://", "ws://", 1) + "/v1/ws";
    let mut ws = Socket::connect(&ws_url, Some(&up.url)).await;
    let ready = ws.authenticate(&token).await;
    assert_eq!(ready["agent"]["offline"], true);
    let notice = ready["agent"]["notice"].as_str().unwrap_or_default();
    assert!(notice.contains("./scripts/deps.sh --model"), "{ready}");
    ws.send_message("up-1", None, "2 + 2 * 10").await;
    let reply = ws.collect_reply().await;
    assert!(reply.text.contains("22"), "{}", reply.text);
    ws.close().await;

    assert!(
        up.stop(),
        "confab up did not stop cleanly:\n{}",
        up.log_text()
    );
    assert!(
        !data.join("postgres").join("postmaster.pid").exists(),
        "the private PostgreSQL is still running"
    );

    // The data folder is reused: the account and its chat survive a restart.
    // The default model is now in its models/ (as ./scripts/up.sh puts it).
    let models = data.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let model = confab_testkit::local_model_path();
    let placed = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if std::fs::hard_link(&model, &placed).is_err() {
        std::fs::copy(&model, &placed).expect("place the model in the data folder");
    }
    let mut up2 = Up::start(&dir, logs.join("up-2.log")).await;
    let (status, body) = post(
        &format!("{}/v1/auth/login", up2.url),
        json!({"email": email, "password": "a long enough password"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, threads) = confab_testkit::api::request(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        &format!("{}/v1/threads", up2.url),
        body["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(threads["threads"][0]["title"], "2 + 2 * 10", "{threads}");
    let ws_url = up2.url.replacen("http://", "ws://", 1) + "/v1/ws";
    let mut ws = Socket::connect(&ws_url, Some(&up2.url)).await;
    let ready = ws
        .authenticate(body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(ready["agent"]["kind"], "local", "{ready}");
    ws.send_message("up-2", None, "Hello! Who are you?").await;
    let reply = ws.collect_reply().await;
    assert!(
        !reply.text.trim().is_empty() && reply.deltas > 1,
        "{reply:?}"
    );
    ws.close().await;
    assert!(
        up2.stop(),
        "confab up did not stop cleanly:\n{}",
        up2.log_text()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_setting_stops_a_service_with_the_variable_named() {
    for (service, var, value) in [
        ("auth", "CONFAB_AUTH_PORT", "eighty"),
        ("backend", "CONFAB_LLM_BASE_URL", "ftp://models.example"),
        ("web", "CONFAB_BACKEND_URL", "not a url"),
        ("backend", "CONFAB_LOG", "info,,=="),
    ] {
        let out = Command::new(BUILD.confab_bin)
            .arg(service)
            .env(var, value)
            .stdin(Stdio::null())
            .output()
            .expect("run confab");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{service} started with {var}={value:?}"
        );
        assert!(
            stderr.contains(var),
            "{service}: error does not name {var}:\n{stderr}"
        );
    }
}
