//! OpenAI-compatible `/chat/completions` with server-sent-event streaming:
//! the one interface OpenAI, Ollama, vLLM, llama.cpp's server and LM Studio
//! all speak.

use super::{AgentInfo, ChatMessage, LlmConfig, Provider, ProviderError, TokenStream};
use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;

pub struct OpenAi {
    config: LlmConfig,
    http: reqwest::Client,
}

impl OpenAi {
    pub fn new(config: LlmConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(10)))
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
        let timeout = self.config.timeout;
        let resp = match tokio::time::timeout(timeout, req.send()).await {
            Err(_) => return Err(ProviderError::Timeout),
            Ok(Err(e)) if e.is_timeout() => return Err(ProviderError::Timeout),
            Ok(Err(e)) => return Err(ProviderError::Connection(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !status.is_success() {
            let detail = resp.text().await.unwrap_or_default();
            return Err(ProviderError::Status {
                status: status.as_u16(),
                detail: detail.chars().take(300).collect(),
            });
        }
        let mut events = resp.bytes_stream().eventsource();
        let stream = async_stream(move |tx| async move {
            let mut finished = false;
            loop {
                let next = match tokio::time::timeout(timeout, events.next()).await {
                    Err(_) => Some(Err(ProviderError::Timeout)),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some(Err(match e {
                        eventsource_stream::EventStreamError::Transport(_) => ProviderError::Cut,
                        other => ProviderError::Malformed(other.to_string()),
                    })),
                    Ok(Some(Ok(ev))) => {
                        let data = ev.data.trim();
                        if data == "[DONE]" {
                            finished = true;
                            None
                        } else if data.is_empty() {
                            continue;
                        } else {
                            match serde_json::from_str::<Chunk>(data) {
                                Err(e) => Some(Err(ProviderError::Malformed(e.to_string()))),
                                Ok(chunk) => {
                                    let mut text = String::new();
                                    for c in &chunk.choices {
                                        if let Some(t) = &c.delta.content {
                                            text.push_str(t);
                                        }
                                        if c.finish_reason.is_some() {
                                            finished = true;
                                        }
                                    }
                                    if text.is_empty() {
                                        continue;
                                    }
                                    Some(Ok(text))
                                }
                            }
                        }
                    }
                };
                match next {
                    Some(item) => {
                        let is_err = item.is_err();
                        if tx.send(item).await.is_err() || is_err {
                            return;
                        }
                    }
                    None => {
                        // A stream that ends without `[DONE]` or a finish
                        // reason was cut, not completed.
                        if !finished {
                            let _ = tx.send(Err(ProviderError::Cut)).await;
                        }
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}

/// A stream fed by a task through a small channel (keeps the parsing loop
/// readable without a stream-combinator tower).
fn async_stream<F, Fut>(f: F) -> TokenStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<String, ProviderError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, ProviderError>>,
) -> TokenStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
