//! The payment provider of the tests: PyPI `localstripe` (a stateful fake
//! of Stripe's API that sends signed webhooks; installed by
//! `scripts/deps.sh --payments` into `.confab/payments-venv`), started per
//! test on a free loopback port, plus a small stand-in of our own for what
//! localstripe lacks: Stripe Checkout. The stand-in is the API base URL the
//! backend is given: it serves `POST /v1/checkout/sessions` and the hosted
//! checkout page, and forwards every other `/v1/*` call to localstripe.
//! Paying on the page makes the subscription in localstripe (which then
//! sends its own `customer.subscription.created`) and delivers
//! `checkout.session.completed` to the webhook, signed in Stripe's format
//! (`Stripe-Signature: t=…,v1=<HMAC-SHA256 of "t.body">`).

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Json, Router,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::{
    collections::HashMap,
    os::unix::process::CommandExt,
    path::{Path as FsPath, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

pub const SECRET_KEY: &str = "sk_test_confab";
/// The price (a legacy "plan" in localstripe) that buys Pro.
pub const PRO_PRICE: &str = "confab_pro_monthly";

/// The stand-in's `Stripe-Signature` for `body` at `t` with `secret`.
pub fn stripe_signature(body: &[u8], secret: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

fn localstripe_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CONFAB_TEST_LOCALSTRIPE") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.confab/payments-venv/bin/localstripe")
}

#[derive(Clone)]
struct Shared {
    localstripe: String,
    public: String,
    webhook_secret: String,
    webhook_url: Arc<Mutex<Option<String>>>,
    sessions: Arc<Mutex<HashMap<String, Value>>>,
    http: reqwest::Client,
}

pub struct Payments {
    /// The API base the backend calls (`CONFAB_BILLING_API_URL`).
    pub api_url: String,
    pub localstripe_url: String,
    pub webhook_secret: String,
    shared: Shared,
    child: Child,
    server: tokio::task::JoinHandle<()>,
}

impl Payments {
    pub async fn start(log_dir: &FsPath) -> Self {
        let bin = localstripe_bin();
        assert!(
            bin.exists(),
            "localstripe is not installed at {}: run ./scripts/deps.sh --payments",
            bin.display()
        );
        let port = confab_infra::free_port().expect("free port");
        let log = std::fs::File::create(log_dir.join("localstripe.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("--port")
            .arg(port.to_string())
            .arg("--from-scratch")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        let localstripe = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared {
            localstripe: localstripe.clone(),
            public: public.clone(),
            webhook_secret: format!("whsec_{}", uuid::Uuid::new_v4().simple()),
            webhook_url: Arc::new(Mutex::new(None)),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            http,
        };
        let app = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/pay/{id}", get(page).post(pay))
            .fallback(forward)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut payments = Self {
            api_url: public,
            localstripe_url: localstripe,
            webhook_secret: shared.webhook_secret.clone(),
            shared,
            child,
            server,
        };
        payments.wait_ready(log_dir).await;
        // The product and its price (localstripe's legacy plan object).
        payments
            .stripe(
                Method::POST,
                "/v1/products",
                &[
                    ("id", "confab_pro"),
                    ("name", "Confab Pro"),
                    ("type", "service"),
                ],
            )
            .await;
        payments
            .stripe(
                Method::POST,
                "/v1/plans",
                &[
                    ("id", PRO_PRICE),
                    ("product", "confab_pro"),
                    ("amount", "1200"),
                    ("currency", "usd"),
                    ("interval", "month"),
                ],
            )
            .await;
        payments
    }

    async fn wait_ready(&mut self, log_dir: &FsPath) {
        let deadline = confab_core::clock::instant() + Duration::from_secs(20);
        loop {
            let r = self
                .shared
                .http
                .get(format!("{}/v1/customers", self.localstripe_url))
                .basic_auth(SECRET_KEY, Some(""))
                .send()
                .await;
            if r.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "localstripe exited ({status}); its log:\n{}",
                    std::fs::read_to_string(log_dir.join("localstripe.log")).unwrap_or_default()
                );
            }
            assert!(
                confab_core::clock::instant() < deadline,
                "localstripe did not start in 20 s"
            );
            confab_core::clock::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where webhooks go: localstripe's own events and the stand-in's
    /// `checkout.session.completed`.
    pub async fn set_webhook(&self, url: &str) {
        *self.shared.webhook_url.lock().unwrap() = Some(url.to_string());
        let r = self
            .shared
            .http
            .post(format!("{}/_config/webhooks/confab", self.localstripe_url))
            .basic_auth(SECRET_KEY, Some(""))
            .form(&[("url", url), ("secret", self.webhook_secret.as_str())])
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "localstripe webhook config: {}",
            r.status()
        );
    }

    /// One call to localstripe's API; the JSON answer.
    pub async fn stripe(&self, method: Method, path: &str, form: &[(&str, &str)]) -> Value {
        let r = self
            .shared
            .http
            .request(method, format!("{}{path}", self.localstripe_url))
            .basic_auth(SECRET_KEY, Some(""))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "localstripe {path}: {status} {body}");
        body
    }

    /// Deliver `event` to `url` signed at `t` with `secret` (tests of bad
    /// signatures pass another one).
    pub async fn deliver(
        &self,
        url: &str,
        event: &Value,
        t: i64,
        secret: &str,
    ) -> reqwest::Response {
        let body = serde_json::to_vec(event).unwrap();
        self.shared
            .http
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", stripe_signature(&body, secret, t))
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Payments {
    fn drop(&mut self) {
        self.server.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_session(
    State(s): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let id = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "mode": form.get("mode").cloned().unwrap_or_default(),
        "customer": form.get("customer"),
        "client_reference_id": form.get("client_reference_id"),
        "price": form.get("line_items[0][price]"),
        "success_url": form.get("success_url"),
        "cancel_url": form.get("cancel_url"),
        "status": "open",
        "payment_status": "unpaid",
        "subscription": null,
        "url": format!("{}/pay/{id}", s.public),
    });
    s.sessions.lock().unwrap().insert(id, session.clone());
    Json(session).into_response()
}

async fn page(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(session) = s.sessions.lock().unwrap().get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such checkout").into_response();
    };
    let cancel = session["cancel_url"].as_str().unwrap_or("/").to_string();
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Checkout</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head>
<body><h1 data-testid="checkout-title">Confab Pro</h1><p>$12.00 per month · test mode</p>
<form method="post" action="/pay/{id}"><p>Card <input name="card" value="4242 4242 4242 4242" data-testid="checkout-card"></p>
<button type="submit" data-testid="checkout-pay">Pay and subscribe</button> <a href="{cancel}" data-testid="checkout-cancel">Cancel</a></form></body></html>"#
    ))
    .into_response()
}

async fn pay(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(session) = s.sessions.lock().unwrap().get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such checkout").into_response();
    };
    let customer = session["customer"].as_str().unwrap_or_default().to_string();
    let price = session["price"].as_str().unwrap_or_default().to_string();
    let call = |method: Method, path: String, form: Vec<(&'static str, String)>| {
        let s = s.clone();
        async move {
            let r = s
                .http
                .request(method, format!("{}{path}", s.localstripe))
                .basic_auth(SECRET_KEY, Some(""))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "localstripe {path}: {status} {v}");
            v
        }
    };
    let pm = call(
        Method::POST,
        "/v1/payment_methods".into(),
        vec![
            ("type", "card".into()),
            ("card[number]", "4242424242424242".into()),
            ("card[exp_month]", "12".into()),
            ("card[exp_year]", "2034".into()),
            ("card[cvc]", "123".into()),
        ],
    )
    .await;
    let pm = pm["id"].as_str().unwrap_or_default().to_string();
    call(
        Method::POST,
        format!("/v1/payment_methods/{pm}/attach"),
        vec![("customer", customer.clone())],
    )
    .await;
    call(
        Method::POST,
        format!("/v1/customers/{customer}"),
        vec![("invoice_settings[default_payment_method]", pm)],
    )
    .await;
    let sub = call(
        Method::POST,
        "/v1/subscriptions".into(),
        vec![("customer", customer.clone()), ("items[0][plan]", price)],
    )
    .await;
    let mut completed = session.clone();
    completed["status"] = "complete".into();
    completed["payment_status"] = "paid".into();
    completed["subscription"] = sub["id"].clone();
    s.sessions.lock().unwrap().insert(id, completed.clone());
    let now = confab_core::clock::Clock::system().now().timestamp();
    let event = json!({
        "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "type": "checkout.session.completed",
        "created": now,
        "data": {"object": completed},
    });
    let url = s.webhook_url.lock().unwrap().clone();
    if let Some(url) = url {
        let body = serde_json::to_vec(&event).unwrap();
        let r = s
            .http
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "stripe-signature",
                stripe_signature(&body, &s.webhook_secret, now),
            )
            .body(body)
            .send()
            .await;
        if let Ok(r) = r {
            assert!(
                r.status().is_success(),
                "the webhook refused checkout.session.completed: {}",
                r.status()
            );
        }
    }
    Redirect::to(session["success_url"].as_str().unwrap_or("/")).into_response()
}

/// Everything else is Stripe's API: localstripe answers it.
async fn forward(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.localstripe))
        .body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    match req.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = r.bytes().await.unwrap_or_default();
            (status, [("content-type", "application/json")], body).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
