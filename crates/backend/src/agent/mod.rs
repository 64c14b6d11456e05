//! The agent: a provider trait with streaming output and two providers — an
//! OpenAI-compatible client (OpenAI, Ollama, vLLM, llama.cpp, LM Studio) and
//! the embedded offline assistant that needs no network.

pub mod offline;
pub mod openai;

use async_trait::async_trait;
use confab_core::config::{ConfigError, Env};
use futures::stream::BoxStream;
use serde::Serialize;
use std::{sync::Arc, time::Duration};

#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// `CONFAB_LLM_BASE_URL`, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1`; unset means the offline assistant.
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub model: String,
    /// Longest wait for the response headers and for each streamed chunk.
    pub timeout: Duration,
    /// How much earlier conversation (in characters) goes into the context.
    pub context_chars: usize,
    /// Delay between tokens of the offline assistant (so streaming shows).
    pub offline_token_delay: Duration,
}

impl LlmConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base_url = match env.opt_string("CONFAB_LLM_BASE_URL") {
            Some(v) => Some(env.url("CONFAB_LLM_BASE_URL", &v, &["http", "https"])?),
            None => None,
        };
        Ok(Self {
            base_url,
            api_key: env.opt_string("CONFAB_LLM_API_KEY"),
            model: env.string("CONFAB_LLM_MODEL", "gpt-4o-mini"),
            timeout: Duration::from_secs(env.parse("CONFAB_LLM_TIMEOUT_SECS", 60u64)?),
            context_chars: env.parse("CONFAB_LLM_CONTEXT_CHARS", 24_000usize)?,
            offline_token_delay: Duration::from_millis(
                env.parse("CONFAB_OFFLINE_TOKEN_DELAY_MS", 12u64)?,
            ),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// What the UI is told about the agent (shown plainly when offline).
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    pub kind: &'static str,
    pub model: String,
    pub offline: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("the model provider answered {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("the model provider did not answer in time")]
    Timeout,
    #[error("could not reach the model provider: {0}")]
    Connection(String),
    #[error("the model provider sent a malformed stream: {0}")]
    Malformed(String),
    #[error("the model provider's stream was cut off")]
    Cut,
}

impl ProviderError {
    /// Worth retrying automatically (only before the first token).
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Status { status, .. } => *status >= 500 || *status == 429,
            ProviderError::Timeout | ProviderError::Connection(_) => true,
            ProviderError::Malformed(_) | ProviderError::Cut => false,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Status { status, .. } if *status == 429 => "agent_rate_limited",
            ProviderError::Status { status, .. } if *status == 401 || *status == 403 => {
                "agent_auth_failed"
            }
            ProviderError::Status { .. } => "agent_unavailable",
            ProviderError::Timeout => "agent_timeout",
            ProviderError::Connection(_) => "agent_unreachable",
            ProviderError::Malformed(_) => "agent_bad_response",
            ProviderError::Cut => "agent_interrupted",
        }
    }

    /// A friendly, specific explanation for the chat UI.
    pub fn user_message(&self) -> String {
        match self {
            ProviderError::Status { status, .. } if *status == 429 => {
                "The AI model is rate-limiting us right now. Wait a moment and retry.".into()
            }
            ProviderError::Status { status, .. } if *status == 401 || *status == 403 => {
                "The AI model rejected Confab's credentials. An operator needs to check CONFAB_LLM_API_KEY.".into()
            }
            ProviderError::Status { status, .. } => {
                format!("The AI model's service had an error ({status}). Retry to try again.")
            }
            ProviderError::Timeout => "The AI model took too long to answer. Retry to try again.".into(),
            ProviderError::Connection(_) => "Confab could not reach the AI model. Retry in a moment.".into(),
            ProviderError::Malformed(_) => {
                "The AI model sent a reply Confab could not read. Retry to try again.".into()
            }
            ProviderError::Cut => "The AI model's reply was cut off. Retry to generate it again.".into(),
        }
    }
}

pub type TokenStream = BoxStream<'static, Result<String, ProviderError>>;

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    fn info(&self) -> AgentInfo;
    /// Start a completion; the stream yields text deltas and ends when the
    /// reply is complete (an error item means it failed).
    async fn stream(&self, messages: Vec<ChatMessage>) -> Result<TokenStream, ProviderError>;
}

pub fn build(config: &LlmConfig) -> Result<Arc<dyn Provider>, confab_core::error::InfraError> {
    Ok(match &config.base_url {
        Some(_) => Arc::new(openai::OpenAi::new(config.clone())?),
        None => Arc::new(offline::Offline::new(config.offline_token_delay)),
    })
}
