//! The OpenID Connect provider of the tests: panva's `oidc-provider` (npm,
//! installed by `scripts/deps.sh`), started per test on a free loopback
//! port by `oidc-provider/provider.mjs`. Tests set an account's claims and,
//! for the refusal tests, make it alter the ID tokens it issues.

use serde_json::json;
use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/oidc-provider");

/// One client registered at the provider (one Confab provider config).
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
    pub redirect_uri: String,
}

/// How the provider alters the ID tokens it issues from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    None,
    WrongAudience,
    WrongIssuer,
    Expired,
    BadSignature,
    Nonce,
    /// Sign with a new key that the JWKS also publishes (a real rotation).
    RotateKey,
}

impl Tamper {
    fn mode(self) -> &'static str {
        match self {
            Tamper::None => "none",
            Tamper::WrongAudience => "wrong_aud",
            Tamper::WrongIssuer => "wrong_iss",
            Tamper::Expired => "expired",
            Tamper::BadSignature => "bad_signature",
            Tamper::Nonce => "nonce",
            Tamper::RotateKey => "rotate_key",
        }
    }
}

pub struct OidcProvider {
    /// The issuer, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    child: Child,
    http: reqwest::Client,
}

impl OidcProvider {
    pub async fn start(clients: &[Client], log_dir: &Path) -> Self {
        let script = PathBuf::from(DIR).join("provider.mjs");
        assert!(
            Path::new(DIR).join("node_modules/oidc-provider").exists(),
            "the test OpenID Connect provider is not installed: run ./scripts/deps.sh --browser (npm ci in {DIR})"
        );
        let config = json!({
            "clients": clients.iter().map(|c| json!({
                "client_id": c.id,
                "client_secret": c.secret,
                "redirect_uris": [c.redirect_uri],
            })).collect::<Vec<_>>()
        });
        let log = std::fs::File::create(log_dir.join("oidc-provider.log")).expect("log file");
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(DIR)
            .process_group(0)
            .env("OIDC_TEST_CONFIG", config.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start node {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["event"] == "listening" {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(v["url"].as_str().unwrap_or_default().to_string());
                        }
                    }
                }
            }
        });
        let url = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let _ = child.kill();
                panic!(
                    "the OpenID Connect provider did not start; its log:\n{}",
                    std::fs::read_to_string(log_dir.join("oidc-provider.log")).unwrap_or_default()
                );
            }
        };
        Self {
            url,
            child,
            http: reqwest::Client::new(),
        }
    }

    /// The claims the provider gives account `id` (its log-in name).
    pub async fn set_account(&self, id: &str, name: &str, email: &str, email_verified: bool) {
        let status = self
            .http
            .put(format!("{}/__test/accounts/{id}", self.url))
            .json(&json!({"name": name, "email": email, "email_verified": email_verified}))
            .send()
            .await
            .expect("set account at the provider")
            .status();
        assert_eq!(status, 204);
    }

    pub async fn tamper(&self, how: Tamper) {
        let status = self
            .http
            .put(format!("{}/__test/tamper", self.url))
            .json(&json!({"mode": how.mode()}))
            .send()
            .await
            .expect("set tamper mode at the provider")
            .status();
        assert_eq!(status, 204);
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-g", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A cookie-keeping HTTP client that walks a sign-in the way a browser
/// does (redirects, the provider's real log-in and consent forms) but stops
/// where a test wants to look or interfere: at the callback URL.
pub struct Agent {
    http: reqwest::Client,
    web_url: String,
}

/// A page the agent ended on.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: reqwest::Url,
    pub body: String,
}

impl Agent {
    pub fn new(web_url: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
            web_url: web_url.to_string(),
        }
    }

    /// Click "Log in with {provider}", sign in at the provider as `login`
    /// and consent; returns the callback URL the provider redirects to,
    /// not yet visited.
    pub async fn sign_in_at_provider(&self, provider: &str, login: &str) -> String {
        self.walk(
            &format!("{}/v1/auth/oidc/{provider}/start", self.web_url),
            Some(login),
        )
        .await
    }

    /// From a signed-in browser: link a provider to the account ("Link" in
    /// settings), signing in at the provider as `login`.
    pub async fn link_at_provider(&self, provider: &str, login: &str) -> String {
        self.walk(
            &format!("{}/v1/auth/oidc/{provider}/start?intent=link", self.web_url),
            Some(login),
        )
        .await
    }

    /// Start, then press the provider's Cancel link.
    pub async fn cancel_at_provider(&self, provider: &str) -> String {
        self.walk(
            &format!("{}/v1/auth/oidc/{provider}/start", self.web_url),
            None,
        )
        .await
    }

    /// Start a sign-in and return the provider's authorization URL (the
    /// state in it is bound to this agent's cookie).
    pub async fn start(&self, provider: &str) -> reqwest::Url {
        let url = format!("{}/v1/auth/oidc/{provider}/start", self.web_url);
        let resp = self.http.get(&url).send().await.expect("start");
        assert_eq!(resp.status(), 303, "start did not redirect");
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        reqwest::Url::parse(&location).expect("absolute authorization URL")
    }

    async fn walk(&self, start: &str, login: Option<&str>) -> String {
        let callback_prefix = format!("{}/v1/auth/oidc/", self.web_url);
        let mut url = reqwest::Url::parse(start).expect("url");
        let mut first = true;
        for _ in 0..20 {
            let resp = self.http.get(url.clone()).send().await.expect("request");
            if resp.status().is_redirection() {
                let next = url
                    .join(resp.headers()["location"].to_str().unwrap())
                    .unwrap();
                if !first && next.as_str().starts_with(&callback_prefix) {
                    return next.to_string();
                }
                first = false;
                url = next;
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            let form_action = |body: &str| -> reqwest::Url {
                let at = body
                    .find("action=\"")
                    .expect("a form on the provider's page")
                    + 8;
                let end = body[at..].find('"').unwrap() + at;
                url.join(&body[at..end].replace("&amp;", "&")).unwrap()
            };
            let abort = |body: &str| -> reqwest::Url {
                let at = body
                    .find("/abort")
                    .expect("a cancel link on the provider's page");
                let start = body[..at].rfind('"').unwrap() + 1;
                let end = body[at..].find('"').unwrap() + at;
                url.join(&body[start..end]).unwrap()
            };
            let Some(login) = login else {
                // Cancel on whichever page the provider shows.
                url = abort(&body);
                continue;
            };
            let form: Vec<(&str, &str)> = if body.contains("name=\"login\"") {
                vec![
                    ("prompt", "login"),
                    ("login", login),
                    ("password", "any password"),
                ]
            } else if body.contains("value=\"consent\"") {
                vec![("prompt", "consent")]
            } else {
                panic!("unexpected page at {url}: {body}");
            };
            let resp = self
                .http
                .post(form_action(&body))
                .form(&form)
                .send()
                .await
                .expect("submit");
            assert!(
                resp.status().is_redirection(),
                "the provider did not accept the form"
            );
            url = url
                .join(resp.headers()["location"].to_str().unwrap())
                .unwrap();
        }
        panic!("the sign-in never came back to the callback");
    }

    /// Visit a URL and follow redirects on our origin to the page shown.
    pub async fn open(&self, url: &str) -> Page {
        let mut url = reqwest::Url::parse(url).expect("url");
        for _ in 0..10 {
            let resp = self.http.get(url.clone()).send().await.expect("request");
            if resp.status().is_redirection() {
                url = url
                    .join(resp.headers()["location"].to_str().unwrap())
                    .unwrap();
                continue;
            }
            return Page {
                status: resp.status().as_u16(),
                url,
                body: resp.text().await.unwrap_or_default(),
            };
        }
        panic!("too many redirects from {url}");
    }

    /// `POST` a form on our origin and follow the redirects.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let url = format!("{}{path}", self.web_url);
        let resp = self.http.post(&url).form(form).send().await.expect("post");
        assert!(
            resp.status().is_redirection(),
            "{url} answered {}",
            resp.status()
        );
        let next = reqwest::Url::parse(&url)
            .unwrap()
            .join(resp.headers()["location"].to_str().unwrap())
            .unwrap();
        self.open(next.as_str()).await
    }

    /// Trade the refresh cookie for an access token, as the app's script
    /// does on boot; returns status and body.
    pub async fn refresh(&self) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/v1/auth/refresh", self.web_url))
            .header("x-confab-refresh-transport", "cookie")
            .send()
            .await
            .expect("refresh");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Log in with a password as the web app does (refresh token only in
    /// the cookie); returns status and body.
    pub async fn log_in(&self, email: &str, password: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/v1/auth/login", self.web_url))
            .header("x-confab-refresh-transport", "cookie")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("log in");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
