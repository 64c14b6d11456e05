//! OpenAI-compatible `/chat/completions` with server-sent-event streaming:
//! the one interface OpenAI, Ollama, vLLM, llama.cpp's server and LM Studio
//! all speak.
//!
//! One request, classified: every way it can fail is a distinct
//! [`ProviderError`] (unreachable, each kind of status, no first token in
//! time, silence mid-reply, past the deadline, cut, malformed, filtered).
//! Retrying and the circuit breaker live in [`super::resilience`]. The
//! stream owns the HTTP response: dropping it (Stop generating, shutdown)
//! closes the connection, which cancels the request upstream.

use super::{AgentInfo, ChatMessage, LlmConfig, Provider, ProviderError, Timeouts, TokenStream};
use async_trait::async_trait;
use confab_core::clock;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{stream::BoxStream, StreamExt};
use serde::Deserialize;
use std::time::{Duration, Instant};

pub struct OpenAi {
    config: LlmConfig,
    http: reqwest::Client,
}

impl OpenAi {
    pub fn new(config: LlmConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            // Chat is many small writes; do not let Nagle hold them.
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { config, http })
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[async_trait]
impl Provider for OpenAi {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            kind: "openai",
            model: self.config.model.clone(),
            offline: false,
            notice: None,
        }
    }

    async fn stream(&self, messages: Vec<ChatMessage>) -> Result<TokenStream, ProviderError> {
        let base = self.config.base_url.as_deref().unwrap_or_default();
        let mut req = self
            .http
            .post(format!("{base}/chat/completions"))
            .json(&serde_json::json!({
                "model": self.config.model,
                "messages": messages,
                "stream": true,
            }));
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let t = self.config.timeouts;
        let started = clock::instant();
        let first_token_by = started + t.first_token;
        let resp = match tokio::time::timeout_at(first_token_by.into(), req.send()).await {
            Err(_) => return Err(ProviderError::Timeout),
            Ok(Err(e)) if e.is_connect() => return Err(ProviderError::Connection(e.to_string())),
            Ok(Err(e)) if e.is_timeout() => return Err(ProviderError::Timeout),
            Ok(Err(e)) => return Err(ProviderError::Connection(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            // The error body is only for the log; it may not hold the reply
            // hostage either.
            let body = tokio::time::timeout_at(first_token_by.into(), resp.text()).await;
            let detail: String = match body {
                Ok(Ok(text)) => text.chars().take(300).collect(),
                _ => String::new(),
            };
            return Err(if status.as_u16() == 429 {
                ProviderError::RateLimited {
                    retry_after,
                    detail,
                }
            } else {
                ProviderError::Status {
                    status: status.as_u16(),
                    detail,
                }
            });
        }
        let events = resp.bytes_stream().eventsource().boxed();
        Ok(tokens(events, t, started))
    }
}

type Events =
    BoxStream<'static, Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>;

struct Reading {
    events: Events,
    timeouts: Timeouts,
    started: Instant,
    got_text: bool,
    /// A finish reason said the reply is over.
    done: bool,
    /// A failure to report after the text that came with it.
    pending: Option<ProviderError>,
}

impl Reading {
    /// When waiting for the next event must end, and what it means then.
    fn limit(&self) -> (Instant, ProviderError) {
        let deadline = self.started + self.timeouts.deadline;
        let (at, why) = if self.got_text {
            (
                clock::instant() + self.timeouts.idle,
                ProviderError::Stalled,
            )
        } else {
            (
                self.started + self.timeouts.first_token,
                ProviderError::Timeout,
            )
        };
        if deadline < at {
            (deadline, ProviderError::Deadline)
        } else {
            (at, why)
        }
    }

    /// The next piece of text, `None` at a proper end, or the failure.
    async fn next_text(&mut self) -> Option<Result<String, ProviderError>> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        loop {
            let (until, why) = self.limit();
            let ev = match tokio::time::timeout_at(until.into(), self.events.next()).await {
                Err(_) => return Some(Err(why)),
                // A stream that ends without `[DONE]` or a finish reason was
                // cut, not completed.
                Ok(None) => return Some(Err(ProviderError::Cut)),
                Ok(Some(Err(EventStreamError::Transport(_)))) => {
                    return Some(Err(ProviderError::Cut))
                }
                Ok(Some(Err(other))) => {
                    return Some(Err(ProviderError::Malformed(other.to_string())))
                }
                Ok(Some(Ok(ev))) => ev,
            };
            let data = ev.data.trim();
            if data == "[DONE]" {
                return None;
            }
            if data.is_empty() {
                continue;
            }
            let chunk = match serde_json::from_str::<Chunk>(data) {
                Ok(c) => c,
                Err(e) => return Some(Err(ProviderError::Malformed(e.to_string()))),
            };
            let mut text = String::new();
            let mut finish = None;
            for c in chunk.choices {
                if let Some(t) = c.delta.content {
                    text.push_str(&t);
                }
                finish = finish.or(c.finish_reason);
            }
            match finish.as_deref() {
                // The text that came with it is shown, then the failure.
                Some("content_filter") => self.pending = Some(ProviderError::ContentFiltered),
                // `stop`, `length`, `tool_calls`: the reply is over. The
                // `[DONE]` that usually follows is not needed.
                Some(_) => self.done = true,
                None => {}
            }
            if !text.is_empty() {
                self.got_text = true;
                return Some(Ok(text));
            }
            if let Some(e) = self.pending.take() {
                return Some(Err(e));
            }
            if self.done {
                return None;
            }
        }
    }
}

/// The reply's text pieces, with the first-token, idle and overall limits.
fn tokens(events: Events, timeouts: Timeouts, started: Instant) -> TokenStream {
    let reading = Reading {
        events,
        timeouts,
        started,
        got_text: false,
        done: false,
        pending: None,
    };
    futures::stream::unfold(Some(reading), |state| async move {
        let mut r = state?;
        match r.next_text().await? {
            Ok(t) => Some((Ok(t), Some(r))),
            // A failure ends the stream (and drops the response).
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// `Retry-After` is seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.with_timezone(&chrono::Utc) - clock::Clock::system().now()).num_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::parse_retry_after;
    use std::time::Duration;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("30"), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
