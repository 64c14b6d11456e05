//! Headless Chromium through chromedriver (Debian's `chromium` and
//! `chromium-driver`) and fantoccini. On a failing step the page's
//! screenshot and HTML are saved next to the service logs.

use fantoccini::{Client, ClientBuilder, Locator};
// chromedriver is on loopback: plain HTTP, no TLS stack needed.
use hyper_util::client::legacy::connect::HttpConnector;
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct Browser {
    client: Option<Client>,
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
        Self::start_as(artifacts, None).await
    }

    /// A browser with its own profile folder under `artifacts` (so several
    /// can run in one test) and, optionally, another User-Agent (a "phone").
    pub async fn start_as(artifacts: &Path, user_agent: Option<&str>) -> Self {
        std::fs::create_dir_all(artifacts).expect("browser artifacts folder");
        // Each browser of a test gets its own profile (two Chromiums cannot
        // share one) and its own driver log.
        // Claimed by creating it, so browsers starting at the same moment
        // (the harness starts them alongside the services) never share one.
        let n = (1..)
            .find(|n| {
                std::fs::create_dir(artifacts.join(Self::numbered("chrome-profile", *n))).is_ok()
            })
            .expect("an unused profile name");
        let profile = artifacts.join(Self::numbered("chrome-profile", n));
        let downloads = downloads_dir(artifacts);
        std::fs::create_dir_all(&downloads).expect("downloads folder");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--window-size=1280,900",
            // New messages fade in from opacity 0 (0.2 s); WebDriver
            // reads text of a not-yet-opaque element as "". Tests
            // assert what is on the page, not how fast it fades in,
            // so the page honours reduced motion (its CSS does).
            "--force-prefers-reduced-motion",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        // For screenshots of the dark theme (the pages follow
        // prefers-color-scheme): CONFAB_E2E_DARK=1.
        if std::env::var_os("CONFAB_E2E_DARK").is_some() {
            args.push("--force-dark-mode".into());
        }
        if let Some(ua) = user_agent {
            args.push(format!("--user-agent={ua}"));
        }
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                // Downloads land in the test's folder without a prompt
                // (chromedriver applies this to headless Chromium too).
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
                "binary": chromium_binary(),
                "args": args,
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("literal object")
        };
        let driver_bin =
            std::env::var("CONFAB_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let log_path = artifacts.join(Self::numbered("chromedriver", n) + ".log");
        let mut last = String::new();
        // The free port is released before chromedriver binds it, so another
        // process may take it first: chromedriver then exits, and we try again.
        for _attempt in 0..3 {
            let port = confab_infra::free_port().expect("free port");
            let log = std::fs::File::create(&log_path).expect("log");
            // Its own process group, so Chromium (its child) dies with it.
            let driver = Command::new(&driver_bin)
                .process_group(0)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("could not start {driver_bin} (apt-get install chromium-driver): {e}")
                });
            let mut browser = Self {
                client: None,
                driver,
                artifacts: artifacts.to_path_buf(),
            };
            let url = format!("http://127.0.0.1:{port}");
            for _ in 0..200 {
                match ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => {
                        browser.client = Some(client);
                        return browser;
                    }
                    Err(e) => last = e.to_string(),
                }
                if let Ok(Some(status)) = browser.driver.try_wait() {
                    last = format!("chromedriver exited ({status}); see {}", log_path.display());
                    break;
                }
                confab_core::clock::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("could not start a Chromium session: {last}");
    }

    fn numbered(name: &str, n: usize) -> String {
        if n == 1 {
            name.to_string()
        } else {
            format!("{name}-{n}")
        }
    }

    fn client(&self) -> Client {
        self.client.clone().expect("a started browser has a client")
    }

    /// Run the browser part of a test. If it panics, save a screenshot and
    /// the page's HTML, close the browser, and re-raise.
    pub async fn run<F, Fut>(self, f: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use futures::FutureExt;
        let result = std::panic::AssertUnwindSafe(f(self.client()))
            .catch_unwind()
            .await;
        if let Err(panic) = result {
            if let Ok(png) = self.client().screenshot().await {
                let _ = std::fs::write(self.artifacts.join("failure.png"), png);
            }
            if let Ok(html) = self.client().source().await {
                let _ = std::fs::write(self.artifacts.join("failure.html"), html);
            }
            eprintln!(
                "browser step failed; screenshot and HTML saved in {}",
                self.artifacts.display()
            );
            drop(self);
            std::panic::resume_unwind(panic);
        }
        // No polite WebDriver close (Chromium takes half a second to wind
        // down, and nothing of it is kept): dropping kills chromedriver's
        // process group, Chromium included.
        drop(self);
    }
}

impl Drop for Browser {
    /// Kill chromedriver's whole process group (Chromium included), also when
    /// a test panics before `run` or a polite close hangs.
    fn drop(&mut self) {
        // pkill -g takes the group id as a positive number. (`kill -KILL
        // -<pgid>` is parsed by procps' kill in a way that can hit every
        // process the user owns.)
        let _ = Command::new("pkill")
            .args(["-KILL", "-g", &self.driver.id().to_string()])
            .status();
        let _ = self.driver.wait();
    }
}

/// Where a browser started for these artifacts saves its downloads.
pub fn downloads_dir(artifacts: &Path) -> PathBuf {
    artifacts.join("downloads")
}

/// Wait until Chromium has finished downloading a file whose name ends with
/// `suffix` into `dir` (no `.crdownload` left), and return its path.
pub async fn downloaded(dir: &Path, suffix: &str) -> PathBuf {
    crate::eventually(
        15,
        &format!("a downloaded *{suffix} in {}", dir.display()),
        || async {
            let entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            if entries
                .iter()
                .any(|p| p.extension().is_some_and(|x| x == "crdownload"))
            {
                return None;
            }
            entries.into_iter().find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
            })
        },
    )
    .await
}

/// How often a wait asks the page again (fantoccini's default, 250 ms,
/// adds up to seconds over a flow's steps).
pub const POLL: Duration = Duration::from_millis(20);

/// Wait up to 15 s for an element.
pub async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(15))
        .every(POLL)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
}

/// Wait for an element by `data-testid`.
pub async fn by_testid(c: &Client, id: &str) -> fantoccini::elements::Element {
    wait_for(c, &format!("[data-testid=\"{id}\"]")).await
}

/// Put `text` into a form field as if typed: the value, then the `input`
/// and `change` events a page listens to. For forms a flow only passes
/// through (log-in); WebDriver's `send_keys` sends each character as its
/// own key events, a round trip each, and is kept for what a flow is about.
pub async fn fill(c: &Client, testid: &str, text: &str) {
    let el = by_testid(c, testid).await;
    c.execute(
        "const [el, v] = arguments; el.focus(); el.value = v;
         el.dispatchEvent(new Event('input', {bubbles: true}));
         el.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![serde_json::to_value(&el).expect("element"), text.into()],
    )
    .await
    .unwrap_or_else(|e| panic!("fill {testid}: {e}"));
}

/// Wait until the chat page's socket is connected.
pub async fn connected(c: &Client) {
    crate::eventually(15, "the chat socket to connect", || async {
        let el = c
            .find(Locator::Css("[data-testid=connection-status]"))
            .await
            .ok()?;
        (el.attr("data-state").await.ok()?? == "connected").then_some(())
    })
    .await;
}

/// Log `user` in through `web_url`'s log-in page; returns once the chat
/// page is shown and its socket is connected.
pub async fn log_in(c: &Client, web_url: &str, user: &crate::TestUser) {
    submit_log_in(c, web_url, user).await;
    connected(c).await;
}

/// Log in like [`log_in`], and once on the chat page open `page` instead
/// (`/settings`, `/app?debug-withhold-reauth`, …); the caller waits for
/// what that page should show.
pub async fn log_in_then_open(c: &Client, web_url: &str, user: &crate::TestUser, page: &str) {
    submit_log_in(c, web_url, user).await;
    crate::eventually(15, "the chat page after logging in", || async {
        (c.current_url().await.ok()?.path() == "/app").then_some(())
    })
    .await;
    c.goto(&format!("{web_url}{page}"))
        .await
        .unwrap_or_else(|e| panic!("open {page}: {e}"));
    settled(c).await;
}

/// Wait until no part of the page is still loading (`aria-busy="true"`):
/// sections that fill in later change the layout, and a click computed
/// before they do can land on whatever moved under it.
pub async fn settled(c: &Client) {
    crate::eventually(15, "the page to finish loading", || async {
        let busy = c
            .execute(
                "return document.querySelector('[aria-busy=\"true\"]') !== null",
                vec![],
            )
            .await
            .ok()?;
        (busy == serde_json::Value::Bool(false)).then_some(())
    })
    .await;
}

async fn submit_log_in(c: &Client, web_url: &str, user: &crate::TestUser) {
    c.goto(&format!("{web_url}/login"))
        .await
        .expect("open login page");
    fill(c, "login-email", &user.email).await;
    fill(c, "login-password", &user.password).await;
    by_testid(c, "login-submit")
        .await
        .click()
        .await
        .expect("submit");
}

/// A Chrome DevTools command through chromedriver's
/// `goog/cdp/execute` endpoint.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = serde_json::json!({"cmd": self.cmd, "params": self.params});
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// Show pages in the dark (or light) colour scheme, as with the system
/// setting, and at `width` × `height`: for screenshots of both themes and
/// of a phone-sized and a desktop-sized window.
pub async fn emulate(c: &Client, dark: bool, width: u32, height: u32) {
    let scheme = if dark { "dark" } else { "light" };
    c.issue_cmd(Cdp {
        cmd: "Emulation.setEmulatedMedia",
        params: serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
    })
    .await
    .expect("emulate the colour scheme");
    c.issue_cmd(Cdp {
        cmd: "Emulation.setDeviceMetricsOverride",
        params: serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
    })
    .await
    .expect("emulate the window size");
}

/// Save a screenshot of the page as `<dir>/<name>.png`.
pub async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("save screenshot");
}
