//! Headless Chromium through chromedriver (Debian's `chromium` and
//! `chromium-driver`) and fantoccini. On a failing step the page's
//! screenshot and HTML are saved next to the service logs.

use fantoccini::{Client, ClientBuilder, Locator};
// chromedriver is on loopback: plain HTTP, no TLS stack needed.
use hyper_util::client::legacy::connect::HttpConnector;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct Browser {
    pub client: Client,
    driver: Child,
    artifacts: PathBuf,
}

fn chromium_binary() -> String {
    std::env::var("CONFAB_CHROMIUM").unwrap_or_else(|_| {
        [
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/usr/bin/chromium")
        .to_string()
    })
}

impl Browser {
    pub async fn start(artifacts: &Path) -> Self {
        let port = confab_core::infra::free_port().expect("free port");
        let log = std::fs::File::create(artifacts.join("chromedriver.log")).expect("log");
        let driver_bin =
            std::env::var("CONFAB_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let mut driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start {driver_bin} (apt-get install chromium-driver): {e}")
            });
        let profile = artifacts.join("chrome-profile");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("literal object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last = String::new();
        for _ in 0..200 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        driver,
                        artifacts: artifacts.to_path_buf(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if let Ok(Some(status)) = driver.try_wait() {
                panic!(
                    "chromedriver exited ({status}); see {}",
                    artifacts.join("chromedriver.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = driver.kill();
        panic!("could not start a Chromium session: {last}");
    }

    /// Run the browser part of a test. If it panics, save a screenshot and
    /// the page's HTML, close the browser, and re-raise.
    pub async fn run<F, Fut>(self, f: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use futures::FutureExt;
        let result = std::panic::AssertUnwindSafe(f(self.client.clone()))
            .catch_unwind()
            .await;
        if let Err(panic) = result {
            if let Ok(png) = self.client.screenshot().await {
                let _ = std::fs::write(self.artifacts.join("failure.png"), png);
            }
            if let Ok(html) = self.client.source().await {
                let _ = std::fs::write(self.artifacts.join("failure.html"), html);
            }
            eprintln!(
                "browser step failed; screenshot and HTML saved in {}",
                self.artifacts.display()
            );
            self.shutdown().await;
            std::panic::resume_unwind(panic);
        }
        self.shutdown().await;
    }

    async fn shutdown(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Wait for an element by `data-testid`.
pub async fn by_testid(c: &Client, id: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&format!("[data-testid=\"{id}\"]")))
        .await
        .unwrap_or_else(|e| panic!("no element [data-testid={id}]: {e}"))
}
