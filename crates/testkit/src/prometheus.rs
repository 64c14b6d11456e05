//! A real Prometheus (Debian's `prometheus` package, installed by
//! `scripts/deps.sh`) running the repository's own configuration
//! (`ops/prometheus/`) against a test's services, with short intervals, and
//! a client for its HTTP API.

use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The repository's Prometheus configuration folder.
pub fn config_dir() -> PathBuf {
    crate::timing::workspace_root().join("ops/prometheus")
}

pub struct Prometheus {
    pub url: String,
    dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    http: reqwest::Client,
}

/// Where each job's targets are (`host:port`, no scheme).
pub struct Targets<'a> {
    pub auth: &'a [String],
    pub backend: &'a [String],
    pub web: &'a [String],
}

/// `http://127.0.0.1:8000` → `127.0.0.1:8000`.
pub fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

impl Prometheus {
    /// Copy `ops/prometheus/{prometheus,alerts}.yml` into `dir`, with every
    /// interval set to `interval` (e.g. `"500ms"`) and every alert's `for:`
    /// set to 0 s (the rules' `for:` are covered by `alerts_test.yml`), and
    /// start Prometheus with no targets; returns once it is ready. Give it
    /// the targets with [`Prometheus::set_targets`]. Prometheus 2.42 applies
    /// discovered targets on a fixed 5 s tick from its start, so starting it
    /// early (alongside the harness) saves that much of a test's time.
    pub async fn start(dir: &Path, interval: &str) -> Self {
        let src = config_dir();
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("targets")).expect("prometheus folder");
        let config = std::fs::read_to_string(src.join("prometheus.yml")).expect("prometheus.yml");
        let config = config
            .replace(
                "scrape_interval: 15s",
                &format!("scrape_interval: {interval}"),
            )
            .replace(
                "evaluation_interval: 15s",
                &format!("evaluation_interval: {interval}"),
            )
            .replace("scrape_timeout: 5s", &format!("scrape_timeout: {interval}"));
        assert!(
            config.contains(&format!("scrape_interval: {interval}")),
            "prometheus.yml no longer has `scrape_interval: 15s`"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let rules = std::fs::read_to_string(src.join("alerts.yml")).expect("alerts.yml");
        let rules: String = rules
            .lines()
            .map(|l| match l.trim_start().strip_prefix("for: ") {
                Some(_) => format!("{}for: 0s\n", &l[..l.len() - l.trim_start().len()]),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(dir.join("alerts.yml"), rules).expect("write rules");
        for job in ["auth", "backend", "web"] {
            std::fs::write(dir.join(format!("targets/{job}.json")), "[]").expect("write targets");
        }
        let bin = std::env::var("CONFAB_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let log = dir.join("prometheus.log");
        let http = reqwest::Client::new();
        let mut last = String::new();
        // The free port is released before Prometheus binds it; if another
        // process takes it first Prometheus exits, and we try another one.
        for _attempt in 0..3 {
            let port = confab_infra::free_port().expect("free port");
            let file = std::fs::File::create(&log).expect("log");
            let child = Command::new(&bin)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log"))
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("could not start {bin} (apt-get install prometheus): {e}")
                });
            let mut p = Self {
                dir: dir.to_path_buf(),
                url: format!("http://127.0.0.1:{port}"),
                child: Some(child),
                log: log.clone(),
                http: http.clone(),
            };
            let deadline = confab_core::clock::instant() + Duration::from_secs(20);
            while confab_core::clock::instant() < deadline {
                if let Some(Ok(Some(_))) = p.child.as_mut().map(|c| c.try_wait()) {
                    break; // exited: the port was taken
                }
                match http.get(format!("{}/-/ready", p.url)).send().await {
                    Ok(r) if r.status().is_success() => return p,
                    Ok(r) => last = format!("{}", r.status()),
                    Err(e) => last = e.to_string(),
                }
                confab_core::clock::sleep(Duration::from_millis(50)).await;
            }
            p.stop();
        }
        panic!(
            "Prometheus never became ready ({last}); its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Write each job's target file (file-based discovery picks them up).
    pub fn set_targets(&self, targets: Targets<'_>) {
        for (job, list) in [
            ("auth", targets.auth),
            ("backend", targets.backend),
            ("web", targets.web),
        ] {
            let body = serde_json::json!([{ "targets": list }]);
            // Written whole then renamed: discovery never reads half a file.
            let tmp = self.dir.join(format!("targets/.{job}.json.tmp"));
            std::fs::write(&tmp, body.to_string()).expect("write targets");
            std::fs::rename(&tmp, self.dir.join(format!("targets/{job}.json")))
                .expect("move targets");
        }
    }

    /// `GET /api/v1/query?query=…`: the result vector.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("Prometheus query")
            .json()
            .await
            .expect("Prometheus JSON");
        assert_eq!(v["status"], "success", "query {promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/v1/alerts`: the firing and pending alerts.
    pub async fn alerts(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/api/v1/alerts", self.url))
            .send()
            .await
            .expect("Prometheus alerts")
            .json()
            .await
            .expect("Prometheus JSON");
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/v1/targets`: the active targets.
    pub async fn targets(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await
            .expect("Prometheus targets")
            .json()
            .await
            .expect("Prometheus JSON");
        v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- prometheus ({}) -----\n{}",
                self.log.display(),
                self.log()
            );
        }
        self.stop();
    }
}
