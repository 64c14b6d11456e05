//! The end-to-end harness: starts the real `confab` binaries on free ports
//! for each test, each test with its own databases (cloned from a migrated
//! template) and its own Redis key prefix, so tests run in parallel without
//! touching each other. Gives tests a user factory over the real HTTP API, a
//! socket client, read access to both databases, a headless Chromium, and a
//! stand-in for the one external system a chat needs: the LLM provider.

// Test code: a panic with a message is how a test fails, so `unwrap` and
// `expect` are fine here (clippy's allow-unwrap-in-tests does not cover
// integration-test crates and test-support libraries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod bench;
pub mod browser;
pub mod db;
pub mod fault_proxy;
pub mod llm;
pub mod oidc;
pub mod payments;
pub mod process;
pub mod prometheus;
pub mod scan;
pub mod smtp;
pub mod socket;
pub mod timing;
pub mod user;

pub use browser::Browser;
pub use fault_proxy::{FaultProxy, Network};
pub use llm::{LlmStandIn, Reply};
pub use oidc::OidcProvider;
pub use payments::Payments;
pub use smtp::{Mail, SmtpCapture};
pub use socket::Socket;
pub use user::TestUser;

use process::Proc;
use std::{path::PathBuf, time::Instant};

/// How the backend's agent is provided in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// The OpenAI-compatible stand-in (scriptable replies and faults).
    StandIn,
    /// The rule-based offline assistant (no model file in the data folder).
    Offline,
    /// The real local model ([`local_model_path`]), greedy and short.
    Local,
}

/// The local model file the tests run: `CONFAB_TEST_LOCAL_MODEL`, or the
/// default model where `./scripts/deps.sh --model` puts it in the checkout.
pub fn local_model_path() -> PathBuf {
    match std::env::var("CONFAB_TEST_LOCAL_MODEL") {
        Ok(p) if !p.trim().is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../.confab/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    }
}

pub struct Options {
    pub agent: Agent,
    /// Extra environment for every service (`CONFAB_*` overrides).
    pub env: Vec<(String, String)>,
    /// Extra environment for the backend instances only, after `env`
    /// (e.g. `CONFAB_REDIS_URL` through a [`FaultProxy::tcp`]).
    pub backend_env: Vec<(String, String)>,
    /// How many backend instances web fronts (its `CONFAB_BACKEND_URL`
    /// lists them all); at least one.
    pub backends: usize,
    /// Start the test OpenID Connect provider and configure auth with two
    /// providers at it: the Google preset (`google`, its issuer pointed at
    /// the test provider) and a generic one (`acme`, "Acme SSO").
    pub oidc: bool,
    /// Start the payment provider (localstripe and the checkout stand-in,
    /// [`Payments`]) and configure the backend with it: Pro costs
    /// [`payments::PRO_PRICE`], webhooks go to the first backend.
    pub payments: bool,
    /// Browsers to start while the services start rather than after them
    /// (a Chromium session takes about a second to open): `h.browser()` and
    /// `h.browser_as(name, ua)` hand out the matching one at once.
    pub browsers: Vec<BrowserSpec>,
    /// Start the SMTP capture server (aiosmtpd) and point auth's
    /// `CONFAB_SMTP_*` at it; `CONFAB_PUBLIC_URL` is then web's origin, so
    /// links in the captured mail open this test's pages.
    pub smtp: bool,
    /// Put a [`FaultProxy`] between the services and Redis
    /// (`Harness::redis_proxy`), so a test can stall or stop "Redis" for
    /// them while the test itself still reads Redis directly.
    pub redis_proxy: bool,
    /// Put a [`FaultProxy`] between the services and PostgreSQL
    /// (`Harness::pg_proxy`): cutting it is a PostgreSQL restart as the
    /// services see it, while the test's own pools (`dbs`) still read.
    pub pg_proxy: bool,
    /// Also start a second origin: one more backend instance and a web
    /// process fronting only it (`Harness::second_origin`), as a second
    /// region or device would reach Confab; started with the others.
    pub second_origin: bool,
}

/// A browser the harness starts up front ([`Options::browsers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowserSpec {
    /// `None`: `h.browser()`'s (the artifacts folder itself); `Some(name)`:
    /// `h.browser_as(name, …)`'s (a folder of its own).
    pub name: Option<&'static str>,
    pub user_agent: Option<&'static str>,
}

impl BrowserSpec {
    /// What `h.browser()` returns.
    pub const DEFAULT: Self = Self {
        name: None,
        user_agent: None,
    };

    /// What `h.browser_as(name, user_agent)` returns.
    pub const fn named(name: &'static str, user_agent: Option<&'static str>) -> Self {
        Self {
            name: Some(name),
            user_agent,
        }
    }
}

impl Options {
    /// The defaults, with one browser started alongside the services.
    pub fn with_browser() -> Self {
        Self {
            browsers: vec![BrowserSpec::DEFAULT],
            ..Self::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            agent: Agent::StandIn,
            env: Vec::new(),
            backend_env: Vec::new(),
            backends: 1,
            oidc: false,
            payments: false,
            browsers: Vec::new(),
            smtp: false,
            redis_proxy: false,
            pg_proxy: false,
            second_origin: false,
        }
    }
}

/// One running Confab: auth, backend and web processes with their own
/// databases and Redis prefix. Everything stops when it is dropped, panics
/// included; on a panic each process's log is printed.
pub struct Harness {
    pub name: String,
    pub auth_url: String,
    /// The first backend instance (`backend_urls[0]`).
    pub backend_url: String,
    /// Every backend instance web fronts, in the order web was given them.
    pub backend_urls: Vec<String>,
    pub web_url: String,
    pub dbs: db::TestDatabases,
    pub redis: redis::aio::ConnectionManager,
    pub redis_prefix: String,
    pub llm: Option<LlmStandIn>,
    pub oidc: Option<OidcProvider>,
    pub payments: Option<Payments>,
    pub smtp: Option<SmtpCapture>,
    /// The proxy the services reach Redis through (`Options::redis_proxy`).
    pub redis_proxy: Option<FaultProxy>,
    /// The proxy the services reach PostgreSQL through (`Options::pg_proxy`).
    pub pg_proxy: Option<FaultProxy>,
    /// The second origin's backend and web URLs (`Options::second_origin`).
    pub second_origin: Option<(String, String)>,
    pub artifacts: PathBuf,
    pub http: reqwest::Client,
    procs: Vec<Proc>,
    started: Instant,
    /// How long `start_with` took (reported with the test's time).
    start_took: std::time::Duration,
    /// The test's own milestones ([`Harness::mark`]): what, and when since
    /// `started`.
    marks: std::sync::Mutex<Vec<(&'static str, std::time::Duration)>>,
    /// Browsers started up front, not yet handed out.
    browsers: std::sync::Mutex<Vec<(BrowserSpec, tokio::task::JoinHandle<Browser>)>>,
    confab_bin: &'static str,
    auth_env: Vec<(String, String)>,
    backend_env: Vec<(String, String)>,
    /// Where in `procs` each of `backend_urls` runs.
    backend_procs: Vec<usize>,
    web_env: Vec<(String, String)>,
}

/// Paths the harness needs from the test binary (`env!` values are only
/// available there).
#[derive(Clone, Copy)]
pub struct Build {
    pub confab_bin: &'static str,
    pub target_tmpdir: &'static str,
}

impl Harness {
    pub async fn start(build: Build, name: &str) -> Self {
        Self::start_with(build, name, Options::default()).await
    }

    pub async fn start_with(build: Build, name: &str, options: Options) -> Self {
        let started = confab_core::clock::instant();
        let artifacts = PathBuf::from(build.target_tmpdir).join("e2e").join(name);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).expect("artifacts folder");
        // Chromium starts while the databases are cloned and the services
        // start: neither waits for the other.
        let browsers = options
            .browsers
            .iter()
            .map(|spec| {
                let dir = match spec.name {
                    None => artifacts.clone(),
                    Some(n) => artifacts.join(n),
                };
                let ua = spec.user_agent;
                let task = tokio::spawn(async move { Browser::start_as(&dir, ua).await });
                (*spec, task)
            })
            .collect();

        let dbs = db::TestDatabases::create(name).await;
        let redis_url = db::redis_url();
        let redis = confab_core::redis_conn::connect(&redis_url)
            .await
            .unwrap_or_else(|e| panic!("Redis at {redis_url} is not reachable: {e}"));
        let redis_prefix = format!("t:{}:", uuid::Uuid::new_v4().simple());
        let redis_proxy = match options.redis_proxy {
            true => Some(FaultProxy::tcp(&host_port(&redis_url)).await),
            false => None,
        };
        let service_redis_url = via(&redis_url, redis_proxy.as_ref());
        let pg_proxy = match options.pg_proxy {
            true => Some(FaultProxy::tcp(&host_port(&dbs.auth_url)).await),
            false => None,
        };
        let llm = match options.agent {
            Agent::StandIn => Some(LlmStandIn::start().await),
            Agent::Offline | Agent::Local => None,
        };

        let mut common: Vec<(String, String)> = vec![
            ("CONFAB_REDIS_URL".into(), service_redis_url),
            ("CONFAB_REDIS_PREFIX".into(), redis_prefix.clone()),
            ("CONFAB_HOST".into(), "127.0.0.1".into()),
            (
                "CONFAB_LOG".into(),
                "info,confab_backend=debug,confab_auth=debug,sqlx=warn".into(),
            ),
            ("CONFAB_OFFLINE_TOKEN_DELAY_MS".into(), "2".into()),
            // Auth's brute-force throttle and the plans' limits stay out of
            // the way of tests that are not about them (those set their own).
            (
                "CONFAB_AUTH_THROTTLE_IP_PER_MINUTE".into(),
                "1000000".into(),
            ),
            (
                "CONFAB_AUTH_THROTTLE_ACCOUNT_PER_MINUTE".into(),
                "1000000".into(),
            ),
            (
                "CONFAB_PLAN_FREE_RATE_PER_MINUTE".into(),
                "unlimited".into(),
            ),
            ("CONFAB_PLAN_FREE_DAILY_MESSAGES".into(), "unlimited".into()),
            ("CONFAB_PLAN_FREE_CONCURRENT".into(), "unlimited".into()),
        ];
        common.extend(options.env.iter().cloned());

        // The provider must know the redirect URIs, and mailed links the
        // page to open, which contain the web origin: with either, web's port
        // is chosen up front.
        let web_port = if options.oidc || options.payments || options.smtp {
            confab_infra::free_port().expect("free port")
        } else {
            0
        };
        let mut oidc_env: Vec<(String, String)> = Vec::new();
        let oidc = if options.oidc {
            let public = format!("http://127.0.0.1:{web_port}");
            let clients: Vec<oidc::Client> = ["google", "acme"]
                .iter()
                .map(|id| oidc::Client {
                    id: format!("confab-{id}"),
                    secret: format!("{id}-secret-{}", uuid::Uuid::new_v4().simple()),
                    redirect_uri: format!("{public}/v1/auth/oidc/{id}/callback"),
                })
                .collect();
            let provider = OidcProvider::start(&clients, &artifacts).await;
            oidc_env.push(("CONFAB_PUBLIC_URL".into(), public));
            oidc_env.push(("CONFAB_OIDC_PROVIDERS".into(), "google,acme".into()));
            oidc_env.push(("CONFAB_OIDC_GOOGLE_ISSUER".into(), provider.url.clone()));
            oidc_env.push(("CONFAB_OIDC_ACME_ISSUER".into(), provider.url.clone()));
            oidc_env.push(("CONFAB_OIDC_ACME_NAME".into(), "Acme SSO".into()));
            for (c, id) in clients.iter().zip(["GOOGLE", "ACME"]) {
                oidc_env.push((format!("CONFAB_OIDC_{id}_CLIENT_ID"), c.id.clone()));
                oidc_env.push((format!("CONFAB_OIDC_{id}_CLIENT_SECRET"), c.secret.clone()));
            }
            Some(provider)
        } else {
            None
        };

        let payments = if options.payments {
            Some(Payments::start(&artifacts).await)
        } else {
            None
        };
        let smtp = if options.smtp {
            let capture = SmtpCapture::start(&artifacts).await;
            oidc_env.push((
                "CONFAB_PUBLIC_URL".into(),
                format!("http://127.0.0.1:{web_port}"),
            ));
            oidc_env.push(("CONFAB_SMTP_HOST".into(), "127.0.0.1".into()));
            oidc_env.push(("CONFAB_SMTP_PORT".into(), capture.port.to_string()));
            oidc_env.push(("CONFAB_SMTP_TLS".into(), "none".into()));
            oidc_env.push((
                "CONFAB_SMTP_FROM".into(),
                "Confab <confab@test.invalid>".into(),
            ));
            Some(capture)
        } else {
            None
        };

        let mut procs = Vec::new();
        let bin = build.confab_bin;
        let mut auth_env = common.clone();
        auth_env.extend(oidc_env);
        // A test's own env wins (it is appended after).
        auth_env.extend(options.env.iter().cloned());
        auth_env.push(("CONFAB_AUTH_PORT".into(), "0".into()));
        auth_env.push((
            "CONFAB_AUTH_DATABASE_URL".into(),
            via(&dbs.auth_url, pg_proxy.as_ref()),
        ));
        let auth = Proc::spawn(bin, "auth", &auth_env, &artifacts).await;
        let auth_url = auth.url.clone();
        procs.push(auth);

        let mut backend_env = common.clone();
        backend_env.push(("CONFAB_BACKEND_PORT".into(), "0".into()));
        backend_env.push((
            "CONFAB_BACKEND_DATABASE_URL".into(),
            via(&dbs.backend_url, pg_proxy.as_ref()),
        ));
        backend_env.push(("CONFAB_AUTH_URL".into(), auth_url.clone()));
        if let Some(llm) = &llm {
            backend_env.push(("CONFAB_LLM_BASE_URL".into(), format!("{}/v1", llm.url)));
            backend_env.push(("CONFAB_LLM_API_KEY".into(), llm::API_KEY.into()));
            backend_env.push(("CONFAB_LLM_MODEL".into(), "stand-in-model".into()));
            backend_env.push(("CONFAB_LLM_TIMEOUT_SECS".into(), "5".into()));
        }
        if let Some(p) = &payments {
            for (k, v) in [
                ("CONFAB_BILLING_API_URL", p.api_url.clone()),
                (
                    "CONFAB_BILLING_SECRET_KEY",
                    payments::SECRET_KEY.to_string(),
                ),
                ("CONFAB_BILLING_WEBHOOK_SECRET", p.webhook_secret.clone()),
                ("CONFAB_PLAN_PRO_PRICE", payments::PRO_PRICE.to_string()),
                ("CONFAB_PUBLIC_URL", format!("http://127.0.0.1:{web_port}")),
            ] {
                backend_env.push((k.into(), v));
            }
        }
        // A data folder of its own: a model in the checkout's is never
        // picked up by accident (Offline means no model file).
        backend_env.push(("CONFAB_DATA_DIR".into(), artifacts.display().to_string()));
        if options.agent == Agent::Local {
            let model = local_model_path();
            assert!(
                model.exists(),
                "no local model at {} (run ./scripts/deps.sh --model)",
                model.display()
            );
            backend_env.push(("CONFAB_LOCAL_MODEL".into(), model.display().to_string()));
            backend_env.push(("CONFAB_LOCAL_TEMPERATURE".into(), "0".into()));
            backend_env.push(("CONFAB_LOCAL_MAX_TOKENS".into(), "48".into()));
            // One worker: a test sees the replies one after the other.
            backend_env.push(("CONFAB_LOCAL_WORKERS".into(), "1".into()));
        }
        backend_env.extend(options.backend_env.iter().cloned());
        // Insert-if-absent: a test's own env may already name these.
        let mut harness = Harness {
            name: name.to_string(),
            auth_url,
            backend_url: String::new(),
            backend_urls: Vec::new(),
            web_url: String::new(),
            dbs,
            redis,
            redis_prefix,
            llm,
            oidc,
            payments,
            smtp,
            redis_proxy,
            pg_proxy,
            second_origin: None,
            artifacts,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .expect("http client"),
            procs,
            started,
            start_took: std::time::Duration::ZERO,
            marks: std::sync::Mutex::new(Vec::new()),
            browsers: std::sync::Mutex::new(browsers),
            confab_bin: bin,
            auth_env,
            backend_env: backend_env.clone(),
            backend_procs: Vec::new(),
            web_env: Vec::new(),
        };
        for _ in 0..options.backends.max(1) {
            let url = harness.spawn(bin, "backend", &backend_env).await;
            harness.backend_procs.push(harness.procs.len() - 1);
            harness.backend_urls.push(url);
        }
        harness.backend_url = harness.backend_urls[0].clone();

        let mut web_env = common;
        web_env.push(("CONFAB_WEB_PORT".into(), web_port.to_string()));
        web_env.push(("CONFAB_AUTH_URL".into(), harness.auth_url.clone()));
        web_env.push(("CONFAB_BACKEND_URL".into(), harness.backend_urls.join(",")));
        harness.web_env = web_env.clone();
        let web = harness.spawn(bin, "web", &web_env).await;
        harness.web_url = web;
        if options.second_origin {
            let backend = harness.spawn(bin, "backend", &backend_env).await;
            let web_env = harness.web_env_for(&backend);
            let web = harness.spawn(bin, "web", &web_env).await;
            harness.second_origin = Some((backend, web));
        }
        for p in &harness.procs {
            p.wait_ready(&harness.http).await;
        }
        if let Some(p) = &harness.payments {
            p.set_webhook(&format!("{}/v1/billing/webhook", harness.backend_url))
                .await;
        }
        harness.start_took = started.elapsed();
        harness
    }

    /// Note that the test reached milestone `what`: the report line of this
    /// test gives the time from the previous milestone (or the end of the
    /// start) to this one, so a slow flow shows where its time went.
    pub fn mark(&self, what: &'static str) {
        let at = self.started.elapsed();
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((what, at));
    }

    /// The browser started up front for `spec`, if there is one left.
    async fn prestarted(&self, spec: BrowserSpec) -> Option<Browser> {
        let task = {
            let mut list = self.browsers.lock().unwrap_or_else(|e| e.into_inner());
            let i = list.iter().position(|(s, _)| *s == spec)?;
            list.remove(i).1
        };
        Some(match task.await {
            Ok(b) => b,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        })
    }

    async fn spawn(
        &mut self,
        bin: &str,
        service: &'static str,
        env: &[(String, String)],
    ) -> String {
        let p = Proc::spawn(bin, service, env, &self.artifacts).await;
        let url = p.url.clone();
        self.procs.push(p);
        url
    }

    /// The web origin as a browser sees it.
    pub fn web_ws_url(&self) -> String {
        self.web_url.replacen("http://", "ws://", 1) + "/v1/ws"
    }

    /// The first backend's `/metrics` page (Prometheus text).
    pub async fn metrics_text(&self) -> String {
        self.metrics_text_of(&self.backend_url).await
    }

    /// The `/metrics` page of the service at `url`.
    async fn metrics_text_of(&self, url: &str) -> String {
        self.http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The sum of the first backend's samples of metric `name` whose line
    /// contains every one of `labels` (`kind="stalled"`); 0 when none.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        MetricsPage(self.metrics_text().await).sum(name, labels)
    }

    /// The auth service's `/metrics` page, read once.
    pub async fn auth_metrics(&self) -> MetricsPage {
        MetricsPage(self.metrics_text_of(&self.auth_url).await)
    }

    /// Sign up a fresh user through the real auth API.
    pub async fn sign_up(&self) -> TestUser {
        TestUser::sign_up(self).await
    }

    /// Open an authenticated chat socket through web's same-origin proxy,
    /// as a page of the app would.
    pub async fn socket(&self, user: &TestUser) -> Socket {
        let mut s = self.raw_socket().await;
        s.authenticate(&user.access_token).await;
        s
    }

    /// A socket through web's proxy, not yet authenticated (sends the web
    /// origin, like a browser tab on the app).
    pub async fn raw_socket(&self) -> Socket {
        Socket::connect(&self.web_ws_url(), Some(&self.web_url)).await
    }

    /// A headless Chromium session for this test: the one started with the
    /// services ([`Options::browsers`]) if there is one, else a new one.
    pub async fn browser(&self) -> Browser {
        match self.prestarted(BrowserSpec::DEFAULT).await {
            Some(b) => b,
            None => Browser::start(&self.artifacts).await,
        }
    }

    /// A headless Chromium of its own (profile and artifacts under `name`),
    /// optionally with another User-Agent: a second device of a user.
    pub async fn browser_as(
        &self,
        name: &'static str,
        user_agent: Option<&'static str>,
    ) -> Browser {
        match self.prestarted(BrowserSpec::named(name, user_agent)).await {
            Some(b) => b,
            None => Browser::start_as(&self.artifacts.join(name), user_agent).await,
        }
    }

    /// Web's environment with `backend_url` as its only backend.
    fn web_env_for(&self, backend_url: &str) -> Vec<(String, String)> {
        let mut env = self.web_env.clone();
        env.retain(|(k, _)| k != "CONFAB_BACKEND_URL");
        env.push(("CONFAB_BACKEND_URL".into(), backend_url.to_string()));
        env
    }

    /// Start one more backend process against the same databases and Redis
    /// (scaling out); returns its URL once it is ready.
    pub async fn add_backend(&mut self) -> String {
        let env = self.backend_env.clone();
        let url = self.spawn(self.confab_bin, "backend", &env).await;
        let proc = self.procs.last().expect("just spawned");
        proc.wait_ready(&self.http).await;
        url
    }

    /// The process id of the first running process of `service`.
    pub fn pid(&self, service: &str) -> Option<u32> {
        self.procs
            .iter()
            .find(|p| p.service == service)
            .and_then(|p| p.pid())
    }

    /// The process ids of every running process of `service`.
    pub fn pids(&self, service: &str) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|p| p.service == service && p.is_running())
            .filter_map(|p| p.pid())
            .collect()
    }

    /// Kill backend instance `i` (of `backend_urls`) with SIGKILL, as a
    /// crash or the OOM killer would: no graceful shutdown, nothing flushed.
    pub fn kill_backend(&mut self, i: usize) {
        self.procs[self.backend_procs[i]].kill();
    }

    /// Start backend instance `i` again on its old address (web's list of
    /// instances does not change) and wait until it is ready.
    pub async fn restart_backend(&mut self, i: usize) {
        let port = self.backend_urls[i]
            .rsplit(':')
            .next()
            .expect("a port in the URL")
            .to_string();
        let mut env = self.backend_env.clone();
        env.retain(|(k, _)| k != "CONFAB_BACKEND_PORT");
        env.push(("CONFAB_BACKEND_PORT".into(), port));
        let p = Proc::spawn(self.confab_bin, "backend", &env, &self.artifacts).await;
        assert_eq!(p.url, self.backend_urls[i], "restarted on another address");
        p.wait_ready(&self.http).await;
        let slot = self.backend_procs[i];
        self.procs[slot] = p;
    }

    /// How many chat sockets backend instance `i` holds now (its
    /// `ws_connections` gauge).
    pub async fn backend_sockets(&self, i: usize) -> u64 {
        let page = self.metrics_text_of(&self.backend_urls[i]).await;
        MetricsPage(page).sum("ws_connections ", &[]) as u64
    }

    /// The slot of `service`'s first process that is running (`running`)
    /// or was stopped (`!running`).
    fn slot(&self, service: &str, running: bool) -> usize {
        self.procs
            .iter()
            .position(|p| p.service == service && p.is_running() == running)
            .unwrap_or_else(|| panic!("no {service} process (running: {running})"))
    }

    /// Stop `service` gracefully (SIGTERM); `restart_service` brings it back.
    pub fn stop_service(&mut self, service: &str) {
        let i = self.slot(service, true);
        self.procs[i].stop();
    }

    /// Wait for `service` to exit by itself (a fault injected into it);
    /// its exit code. Panics if it is still running after `secs`.
    pub async fn service_exited(&mut self, service: &str, secs: u64) -> i32 {
        let i = self.slot(service, true);
        let code = self.procs[i].exited(secs).await;
        code.unwrap_or_else(|| panic!("{service} did not exit within {secs}s"))
    }

    /// Start a stopped `service` (`auth` or `backend`) again on its old
    /// address (the other services know it by that), with its original
    /// environment plus `extra`; returns once it is ready.
    pub async fn restart_service(&mut self, service: &'static str, extra: &[(&str, &str)]) {
        let i = self.slot(service, false);
        let (mut env, port_var) = match service {
            "auth" => (self.auth_env.clone(), "CONFAB_AUTH_PORT"),
            "backend" => (self.backend_env.clone(), "CONFAB_BACKEND_PORT"),
            other => panic!("cannot restart {other}"),
        };
        let port = self.procs[i].port().to_string();
        env.retain(|(k, _)| k != port_var && !extra.iter().any(|(e, _)| e == k));
        env.push((port_var.to_string(), port));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let p = Proc::spawn(self.confab_bin, service, &env, &self.artifacts).await;
        assert_eq!(p.url, self.procs[i].url, "restarted on another address");
        p.wait_ready(&self.http).await;
        self.procs[i] = p;
    }

    /// The log of one service so far.
    pub fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.artifacts.join(format!("{service}.log"))).unwrap_or_default()
    }

    fn print_logs(&self) {
        eprintln!(
            "\n===== {}: service logs (full files in {}) =====",
            self.name,
            self.artifacts.display()
        );
        for p in &self.procs {
            p.print_log_tail(150);
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.print_logs();
        }
        // Every process gets its SIGTERM at once; then each is waited for.
        let stopping = confab_core::clock::instant();
        for p in &mut self.procs {
            p.terminate();
        }
        for p in &mut self.procs {
            p.stop();
        }
        if !failed {
            let mut phases = vec![("start", self.start_took)];
            let marks = std::mem::take(self.marks.get_mut().unwrap_or_else(|e| e.into_inner()));
            let mut last = self.start_took;
            for (what, at) in marks {
                phases.push((what, at.saturating_sub(last)));
                last = at;
            }
            phases.push(("stop", stopping.elapsed()));
            timing::record(&self.name, self.started.elapsed(), &phases);
        }
        self.dbs.drop_now();
        remove_redis_keys(&db::redis_url(), &self.redis_prefix);
    }
}

/// Poll `check` until it returns `Some`, for at most `secs` seconds: for
/// outcomes that happen asynchronously by design (an event applied by a
/// consumer, a page updated by script). Panics with `what` on timeout.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = confab_core::clock::instant() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            confab_core::clock::instant() < deadline,
            "timed out after {secs}s waiting for: {what}"
        );
        confab_core::clock::sleep(browser::POLL).await;
    }
}

/// Delete every Redis key under a test's prefix (a blocking connection:
/// this runs in `Drop`).
fn remove_redis_keys(url: &str, prefix: &str) {
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
    }
}

/// `host:port` of a service URL (`redis://…`, `postgres://…`).
fn host_port(url: &str) -> String {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    let port = u.port().unwrap_or(match u.scheme() {
        "redis" => 6379,
        _ => 5432,
    });
    format!("{}:{port}", u.host_str().unwrap_or("127.0.0.1"))
}

/// `url` with its host and port those of `proxy`, when there is one.
fn via(url: &str, proxy: Option<&FaultProxy>) -> String {
    let Some(proxy) = proxy else {
        return url.to_string();
    };
    let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    let (host, port) = proxy.addr.rsplit_once(':').expect("proxy address");
    u.set_host(Some(host)).expect("proxy host");
    u.set_port(port.parse().ok()).expect("proxy port");
    u.to_string()
}

/// A service's `/metrics` page (Prometheus text) as read at one moment.
pub struct MetricsPage(String);

impl MetricsPage {
    /// The sum of the samples of metric `name` whose line contains every one
    /// of `labels` (`kind="stalled"`); 0 when none.
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
