//! The admin console's status summary, `GET /v1/admin/status` (served by
//! web itself, not proxied): the numbers the status page plots, read from
//! the services' own `/metrics` — auth, every backend instance web fronts,
//! and this web process — and condensed into one small JSON document.
//!
//! Web knows no users, so it asks auth whether the caller is an admin
//! (`GET /v1/auth/admin/whoami` with the caller's `Authorization`): auth's
//! answer to anyone else (401, 403) is passed back unchanged, and nothing
//! is scraped. The page polls every few seconds and keeps the history
//! itself; counters here are the processes' own (since each started), so
//! the page plots their differences.

use crate::{proxy, AppState};
use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use std::{collections::BTreeMap, time::Duration};

/// How long one scrape may take; a slower instance counts as down.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read the Prometheus text exposition format (comments skipped, label
/// values unescaped, an optional timestamp ignored). Lines that do not
/// parse are skipped: one odd line must not blank the page.
pub(crate) fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_string();
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    other => value.push(other),
                }
            };
            labels.push((key, value));
            rest = &rest[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The samples of one process, with the lookups the summary needs.
struct Metrics(Vec<Sample>);

impl Metrics {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }

    fn sum(&self, name: &str) -> f64 {
        self.all(name).map(|s| s.value).sum()
    }

    fn sum_where(&self, name: &str, label: &str, value: &str) -> f64 {
        self.all(name)
            .filter(|s| s.label(label) == Some(value))
            .map(|s| s.value)
            .sum()
    }

    fn max(&self, name: &str) -> Option<f64> {
        self.all(name).map(|s| s.value).reduce(f64::max)
    }

    /// A summary's quantile (the highest across label sets, e.g. providers);
    /// `None` without observations. The exporter's summaries cover a rolling
    /// window and read 0 once it holds no observation: no time to first
    /// token is 0, so a 0 is "nothing recent", not a measurement.
    fn quantile(&self, name: &str, q: &str) -> Option<f64> {
        self.all(name)
            .filter(|s| s.label("quantile") == Some(q) && s.value.is_finite() && s.value > 0.0)
            .map(|s| s.value)
            .reduce(f64::max)
    }

    /// Sums by one label's value.
    fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.all(name) {
            if let Some(v) = s.label(label) {
                *out.entry(v.to_string()).or_insert(0.0) += s.value;
            }
        }
        out
    }
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub(crate) struct BackendStatus {
    pub url: String,
    pub up: bool,
    /// Open chat sockets (`ws_connections`).
    pub sockets: f64,
    /// Messages people sent, and replies written, since the process started
    /// (`chat_messages_total{role}`).
    pub questions: f64,
    pub replies: f64,
    /// Time to the provider's first token, over the summary's recent window
    /// (`llm_time_to_first_token_seconds`), and how many were observed.
    pub ttft_p50: Option<f64>,
    pub ttft_p99: Option<f64>,
    pub ttft_count: f64,
    /// Failed replies by kind since start (`llm_failures_total{kind}`).
    pub failures: BTreeMap<String, f64>,
    /// Events not yet delivered to the consumer group
    /// (`events_consumer_lag`), and dead letters.
    pub consumer_lag: f64,
    pub dead_letters: f64,
    /// The provider's circuit breaker is open (`llm_breaker_state` 2).
    pub breaker_open: bool,
}

pub(crate) fn backend_status(url: &str, text: Option<&str>) -> BackendStatus {
    let Some(text) = text else {
        return BackendStatus {
            url: url.to_string(),
            ..BackendStatus::default()
        };
    };
    let m = Metrics(parse_metrics(text));
    BackendStatus {
        url: url.to_string(),
        up: true,
        sockets: m.sum("ws_connections"),
        questions: m.sum_where("chat_messages_total", "role", "user"),
        replies: m.sum_where("chat_messages_total", "role", "assistant"),
        ttft_p50: m.quantile("llm_time_to_first_token_seconds", "0.5"),
        ttft_p99: m.quantile("llm_time_to_first_token_seconds", "0.99"),
        ttft_count: m.sum("llm_time_to_first_token_seconds_count"),
        failures: m.by("llm_failures_total", "kind"),
        consumer_lag: m.max("events_consumer_lag").unwrap_or(0.0),
        dead_letters: m.max("events_dead_letter_length").unwrap_or(0.0),
        breaker_open: m.max("llm_breaker_state").is_some_and(|v| v >= 2.0),
    }
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub(crate) struct Totals {
    pub backends_up: usize,
    pub sockets: f64,
    pub questions: f64,
    pub replies: f64,
    /// Quantiles cannot be merged exactly: p50 is the observation-weighted
    /// mean of the instances' medians, p99 the highest instance's p99.
    pub ttft_p50: Option<f64>,
    pub ttft_p99: Option<f64>,
    pub failures: BTreeMap<String, f64>,
    /// The highest lag of any instance (they share one consumer group).
    pub consumer_lag: f64,
    pub dead_letters: f64,
}

pub(crate) fn totals(backends: &[BackendStatus]) -> Totals {
    let mut t = Totals::default();
    let (mut weighted, mut weight) = (0.0, 0.0);
    for b in backends.iter().filter(|b| b.up) {
        t.backends_up += 1;
        t.sockets += b.sockets;
        t.questions += b.questions;
        t.replies += b.replies;
        if let Some(p50) = b.ttft_p50 {
            let w = b.ttft_count.max(1.0);
            weighted += p50 * w;
            weight += w;
        }
        t.ttft_p99 = match (t.ttft_p99, b.ttft_p99) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (kind, n) in &b.failures {
            *t.failures.entry(kind.clone()).or_insert(0.0) += n;
        }
        t.consumer_lag = t.consumer_lag.max(b.consumer_lag);
        t.dead_letters = t.dead_letters.max(b.dead_letters);
    }
    t.ttft_p50 = (weight > 0.0).then(|| weighted / weight);
    t
}

#[derive(Debug, Serialize)]
struct AuthStatus {
    up: bool,
    logins: f64,
    login_failures: f64,
    signups: f64,
}

#[derive(Debug, Serialize)]
struct WebStatus {
    /// Sockets this web instance relays.
    relayed_sockets: f64,
}

#[derive(Debug, Serialize)]
struct StatusBody {
    /// Milliseconds since the epoch, when these numbers were read.
    at: i64,
    totals: Totals,
    backends: Vec<BackendStatus>,
    auth: AuthStatus,
    web: WebStatus,
}

async fn scrape(http: &reqwest::Client, base: &str) -> Option<String> {
    let response = http
        .get(format!("{base}/metrics"))
        .timeout(SCRAPE_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// Ask auth whether the caller is an admin; `Err` is the answer to send
/// back instead (auth's own refusal, or 502 when auth is not reachable).
async fn ensure_admin(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let mut request = state
        .http
        .get(format!("{}/v1/auth/admin/whoami", state.config.auth_url))
        .timeout(SCRAPE_TIMEOUT);
    for name in [
        header::AUTHORIZATION.as_str(),
        confab_core::REQUEST_ID_HEADER,
    ] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.clone());
        }
    }
    let response = request
        .send()
        .await
        .map_err(|_| proxy::unavailable(proxy::Upstream::Auth))?;
    if response.status().is_success() {
        return Ok(());
    }
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let www = response.headers().get(header::WWW_AUTHENTICATE).cloned();
    let body = response.bytes().await.unwrap_or_default();
    let mut refused = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(v) = www {
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    Err(refused)
}

/// `GET /v1/admin/status`.
#[tracing::instrument(name = "admin_status", skip_all)]
pub(crate) async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = ensure_admin(&state, &headers).await {
        return refused;
    }
    let urls: Vec<String> = (0..state.backends.len())
        .map(|i| state.backends.url(i).to_string())
        .collect();
    let (auth_text, backend_texts) = tokio::join!(
        scrape(&state.http, &state.config.auth_url),
        futures::future::join_all(urls.iter().map(|u| scrape(&state.http, u))),
    );
    let backends: Vec<BackendStatus> = urls
        .iter()
        .zip(&backend_texts)
        .map(|(url, text)| backend_status(url, text.as_deref()))
        .collect();
    let auth = match auth_text {
        Some(text) => {
            let m = Metrics(parse_metrics(&text));
            AuthStatus {
                up: true,
                logins: m.sum_where("auth_logins_total", "outcome", "success"),
                login_failures: m.sum_where("auth_logins_total", "outcome", "failure"),
                signups: m.sum("auth_signups_total"),
            }
        }
        None => AuthStatus {
            up: false,
            logins: 0.0,
            login_failures: 0.0,
            signups: 0.0,
        },
    };
    let own = Metrics(parse_metrics(&confab_core::http::prometheus().render()));
    let body = StatusBody {
        at: confab_core::clock::Clock::system().now().timestamp_millis(),
        totals: totals(&backends),
        backends,
        auth,
        web: WebStatus {
            relayed_sockets: own.sum("web_relayed_sockets"),
        },
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKEND: &str = r#"# TYPE ws_connections gauge
ws_connections 3
# TYPE chat_messages_total counter
chat_messages_total{role="user"} 7
chat_messages_total{role="assistant"} 6
llm_time_to_first_token_seconds{provider="openai",quantile="0"} 0.01
llm_time_to_first_token_seconds{provider="openai",quantile="0.5"} 0.02
llm_time_to_first_token_seconds{provider="openai",quantile="0.99"} 0.25
llm_time_to_first_token_seconds_sum{provider="openai"} 0.3
llm_time_to_first_token_seconds_count{provider="openai"} 6
llm_failures_total{provider="openai",kind="server_error"} 1
llm_failures_total{provider="openai",kind="rejected"} 2
events_consumer_lag 4
events_dead_letter_length 0
llm_breaker_state{provider="openai"} 0
http_requests_total{service="backend",method="GET",path="/v1/a \"b\", c\\d",status="200"} 5 1700000000
"#;

    #[test]
    fn parses_the_text_format() {
        let samples = parse_metrics(BACKEND);
        assert_eq!(samples.len(), 14);
        let http = samples.last().unwrap();
        assert_eq!(http.name, "http_requests_total");
        assert_eq!(http.label("path"), Some("/v1/a \"b\", c\\d"));
        assert_eq!(http.value, 5.0);
        assert_eq!(parse_line("x +Inf").unwrap().value, f64::INFINITY);
        assert_eq!(parse_line("broken{a=\"b} 1"), None);
        assert_eq!(parse_line("no_value"), None);
        // An empty rolling window reads 0: no reading.
        let idle = backend_status(
            "http://b",
            Some("llm_time_to_first_token_seconds{quantile=\"0.5\"} 0\n"),
        );
        assert_eq!(idle.ttft_p50, None);
    }

    #[test]
    fn a_backend_and_the_totals() {
        let b = backend_status("http://b1", Some(BACKEND));
        assert!(b.up);
        assert_eq!((b.sockets, b.questions, b.replies), (3.0, 7.0, 6.0));
        assert_eq!((b.ttft_p50, b.ttft_p99), (Some(0.02), Some(0.25)));
        assert_eq!(b.failures["rejected"], 2.0);
        assert_eq!(b.consumer_lag, 4.0);
        assert!(!b.breaker_open);
        let down = backend_status("http://b2", None);
        assert!(!down.up);
        let other = backend_status(
            "http://b3",
            Some("ws_connections 2\nchat_messages_total{role=\"user\"} 1\nevents_consumer_lag 9\nllm_failures_total{provider=\"openai\",kind=\"rejected\"} 1\nllm_time_to_first_token_seconds{quantile=\"0.5\"} 0.1\nllm_time_to_first_token_seconds{quantile=\"0.99\"} 0.5\nllm_time_to_first_token_seconds_count 2\n"),
        );
        let t = totals(&[b, down, other]);
        assert_eq!(t.backends_up, 2);
        assert_eq!((t.sockets, t.questions), (5.0, 8.0));
        assert_eq!(t.failures["rejected"], 3.0);
        assert_eq!(t.consumer_lag, 9.0);
        assert_eq!(t.ttft_p99, Some(0.5));
        let p50 = t.ttft_p50.unwrap();
        assert!((p50 - (0.02 * 6.0 + 0.1 * 2.0) / 8.0).abs() < 1e-9);
    }
}
