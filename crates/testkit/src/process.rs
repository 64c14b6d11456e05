//! One service process: spawned from the real binary, its address read from
//! the "listening" line it prints, its output kept in a log file.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct Proc {
    pub service: &'static str,
    pub url: String,
    child: Option<Child>,
    log: PathBuf,
    /// SIGTERM was sent (once is enough: it starts the graceful shutdown).
    terminated: bool,
}

impl Proc {
    pub async fn spawn(
        bin: &str,
        service: &'static str,
        env: &[(String, String)],
        dir: &Path,
    ) -> Self {
        // A second instance of a service (scale-out tests) gets its own log.
        let log = (1..)
            .map(|n| match n {
                1 => dir.join(format!("{service}.log")),
                n => dir.join(format!("{service}-{n}.log")),
            })
            .find(|p| !p.exists())
            .expect("an unused log name");
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.arg(service)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file.try_clone().expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start `{bin} {service}`: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut file = file;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["event"] == "listening" {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(v["url"].as_str().unwrap_or_default().to_string());
                        }
                    }
                }
                let _ = writeln!(file, "{line}");
            }
        });
        let mut proc = Proc {
            service,
            url: String::new(),
            child: Some(child),
            log,
            terminated: false,
        };
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(url)) => proc.url = url,
            _ => {
                proc.stop();
                panic!(
                    "{service} did not report its address; its log:\n{}",
                    std::fs::read_to_string(&proc.log).unwrap_or_default()
                );
            }
        }
        proc
    }

    /// Poll `/readyz` until it answers 200.
    pub async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = confab_core::clock::instant() + Duration::from_secs(30);
        let url = format!("{}/readyz", self.url);
        let mut last = String::new();
        while confab_core::clock::instant() < deadline {
            match http.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => last = r.text().await.unwrap_or_default(),
                Err(e) => last = e.to_string(),
            }
            confab_core::clock::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{} never became ready ({last}); its log:\n{}",
            self.service,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Send SIGTERM without waiting (to stop several processes at once;
    /// `stop` then waits).
    pub fn terminate(&mut self) {
        if let (Some(pid), false) = (self.pid(), self.terminated) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            self.terminated = true;
        }
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        self.terminate();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = confab_core::clock::instant() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if confab_core::clock::instant() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => confab_core::clock::blocking_sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGKILL at once: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True until it was stopped or exited.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Wait (at most `secs`) for the process to exit on its own; its exit
    /// code, `None` if it is still running (or was killed by a signal).
    pub async fn exited(&mut self, secs: u64) -> Option<i32> {
        let deadline = confab_core::clock::instant() + Duration::from_secs(secs);
        while confab_core::clock::instant() < deadline {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            confab_core::clock::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .expect("a port in the service URL")
    }

    pub fn print_log_tail(&self, lines: usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        eprintln!("----- {} ({}) -----", self.service, self.log.display());
        for l in &all[from..] {
            eprintln!("{l}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}
