//! The agent: a provider trait with streaming output and three providers — an
//! OpenAI-compatible client (OpenAI, Ollama, vLLM, llama.cpp, LM Studio), the
//! local model run on this machine's CPU (the default), and the rule-based
//! offline assistant that stands in when no model file is there.

pub mod local;
pub mod offline;
pub mod openai;
pub mod resilience;

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
    /// How long one attempt may wait, at each stage (see [`Timeouts`]).
    pub timeouts: Timeouts,
    /// Automatic retries and the circuit breaker (see [`resilience`]).
    pub resilience: resilience::Policy,
    /// How much earlier conversation (in characters) goes into the context.
    pub context_chars: usize,
    /// Delay between tokens of the offline assistant (so streaming shows).
    pub offline_token_delay: Duration,
    /// The local model, used when no `CONFAB_LLM_BASE_URL` is set.
    pub local: local::LocalConfig,
}

/// The stages of one request to a provider, each with its own limit: a dead
/// host, a model that never starts, one that stops half-way and one that
/// rambles on are different failures with different fixes.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP (and TLS) connection (`CONFAB_LLM_CONNECT_TIMEOUT_MS`).
    pub connect: Duration,
    /// From sending the request to the first token of the reply
    /// (`CONFAB_LLM_FIRST_TOKEN_TIMEOUT_MS`): a model on a CPU can think long.
    pub first_token: Duration,
    /// Longest silence between two chunks once the reply has started
    /// (`CONFAB_LLM_IDLE_TIMEOUT_MS`).
    pub idle: Duration,
    /// The whole reply, first byte to last (`CONFAB_LLM_DEADLINE_SECS`).
    pub deadline: Duration,
}

impl LlmConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base_url = match env.opt_string("CONFAB_LLM_BASE_URL") {
            Some(v) => Some(env.url("CONFAB_LLM_BASE_URL", &v, &["http", "https"])?),
            None => None,
        };
        // `CONFAB_LLM_TIMEOUT_SECS` is the older name of the first-token limit.
        let first_token_default = env.parse("CONFAB_LLM_TIMEOUT_SECS", 60u64)? * 1000;
        let ms = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            let v: u64 = env.parse(var, default)?;
            if v == 0 {
                return Err(env.invalid(var, "must be at least 1 (milliseconds)"));
            }
            Ok(Duration::from_millis(v))
        };
        let deadline_secs: u64 = env.parse("CONFAB_LLM_DEADLINE_SECS", 600u64)?;
        if deadline_secs == 0 {
            return Err(env.invalid("CONFAB_LLM_DEADLINE_SECS", "must be at least 1 (seconds)"));
        }
        let timeouts = Timeouts {
            connect: ms("CONFAB_LLM_CONNECT_TIMEOUT_MS", 5_000)?,
            first_token: ms("CONFAB_LLM_FIRST_TOKEN_TIMEOUT_MS", first_token_default)?,
            idle: ms("CONFAB_LLM_IDLE_TIMEOUT_MS", 30_000)?,
            deadline: Duration::from_secs(deadline_secs),
        };
        if base_url.is_some() && env.opt_string("CONFAB_LOCAL_MODEL").is_some() {
            return Err(env.invalid(
                "CONFAB_LOCAL_MODEL",
                "set either CONFAB_LOCAL_MODEL (a model file run here) or CONFAB_LLM_BASE_URL \
                 (a model server), not both",
            ));
        }
        Ok(Self {
            base_url,
            api_key: env.opt_string("CONFAB_LLM_API_KEY"),
            model: env.string("CONFAB_LLM_MODEL", "gpt-4o-mini"),
            timeouts,
            resilience: resilience::Policy::from_env(env)?,
            context_chars: env.parse("CONFAB_LLM_CONTEXT_CHARS", 24_000usize)?,
            offline_token_delay: Duration::from_millis(
                env.parse("CONFAB_OFFLINE_TOKEN_DELAY_MS", 12u64)?,
            ),
            local: local::LocalConfig::from_env(env)?,
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

/// What the UI is told about the agent: its name is shown, and a notice
/// (when there is one) explains what to do, e.g. how to get a model.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    /// `local`, `openai` or `offline`.
    pub kind: &'static str,
    pub model: String,
    pub offline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// Why a provider request failed. Each variant is one [`FailureKind`], which
/// decides what happens next (automatic retry, a Retry button, the breaker).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// An error status other than 429.
    #[error("the model provider answered {status}: {detail}")]
    Status { status: u16, detail: String },
    /// 429, with how long the provider asked us to wait (`Retry-After`).
    #[error("the model provider is rate-limiting us (retry after {retry_after:?}): {detail}")]
    RateLimited {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Nothing (no headers or no first token) within the first-token limit.
    #[error("the model provider did not start answering in time")]
    Timeout,
    /// The reply started, then went quiet for longer than the idle limit.
    #[error("the model provider went quiet in the middle of the reply")]
    Stalled,
    /// The reply took longer than the overall deadline.
    #[error("the model provider's reply went past the deadline")]
    Deadline,
    #[error("could not reach the model provider: {0}")]
    Connection(String),
    #[error("the model provider sent a malformed stream: {0}")]
    Malformed(String),
    #[error("the model provider's stream was cut off")]
    Cut,
    /// The provider stopped the reply with `finish_reason: content_filter`.
    #[error("the model provider's content filter stopped the reply")]
    ContentFiltered,
    /// The circuit breaker is open: recent requests failed, so this one is
    /// not even tried until `retry_in` has passed.
    #[error("the model provider is failing; requests paused for {retry_in:?}")]
    CircuitOpen { retry_in: Duration },
    /// The local model's workers and queue are all taken.
    #[error("the local model is busy with other replies")]
    Busy,
    /// The local model failed while generating.
    #[error("the local model failed: {0}")]
    Model(String),
    /// The reply reached `CONFAB_MAX_REPLY_CHARS` and was stopped there
    /// (decided by the chat, not the provider).
    #[error("the reply reached the longest allowed ({max_chars} characters)")]
    TooLong { max_chars: usize },
}

/// The kinds of provider failure, as metrics and logs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Unreachable,
    Timeout,
    Stalled,
    Deadline,
    RateLimited,
    ServerError,
    /// 401/403: the key is wrong or lacks access.
    BadKey,
    /// 404: the configured model does not exist there.
    UnknownModel,
    /// Any other 4xx: the request itself was refused (too long, invalid).
    Rejected,
    Cut,
    Malformed,
    ContentFiltered,
    CircuitOpen,
    /// The local model has no free worker or queue slot.
    Busy,
    /// The local model failed while generating.
    ModelFailed,
    /// The reply reached the maximum length.
    TooLong,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Timeout => "timeout",
            FailureKind::Stalled => "stalled",
            FailureKind::Deadline => "deadline",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::ServerError => "server_error",
            FailureKind::BadKey => "bad_key",
            FailureKind::UnknownModel => "unknown_model",
            FailureKind::Rejected => "rejected",
            FailureKind::Cut => "cut",
            FailureKind::Malformed => "malformed",
            FailureKind::ContentFiltered => "content_filtered",
            FailureKind::CircuitOpen => "circuit_open",
            FailureKind::Busy => "busy",
            FailureKind::ModelFailed => "model_failed",
            FailureKind::TooLong => "too_long",
        }
    }
}

impl ProviderError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ProviderError::Status { status, .. } => match status {
                401 | 403 => FailureKind::BadKey,
                404 => FailureKind::UnknownModel,
                429 => FailureKind::RateLimited,
                s if *s >= 500 => FailureKind::ServerError,
                _ => FailureKind::Rejected,
            },
            ProviderError::RateLimited { .. } => FailureKind::RateLimited,
            ProviderError::Timeout => FailureKind::Timeout,
            ProviderError::Stalled => FailureKind::Stalled,
            ProviderError::Deadline => FailureKind::Deadline,
            ProviderError::Connection(_) => FailureKind::Unreachable,
            ProviderError::Malformed(_) => FailureKind::Malformed,
            ProviderError::Cut => FailureKind::Cut,
            ProviderError::ContentFiltered => FailureKind::ContentFiltered,
            ProviderError::CircuitOpen { .. } => FailureKind::CircuitOpen,
            ProviderError::Busy => FailureKind::Busy,
            ProviderError::Model(_) => FailureKind::ModelFailed,
            ProviderError::TooLong { .. } => FailureKind::TooLong,
        }
    }

    /// Worth retrying automatically, before the first token only (after it,
    /// a retry would repeat text): the provider may well answer next time.
    /// A bad key, an unknown model or a refused request will not change by
    /// themselves; a malformed stream is a bug somewhere, not a hiccup.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            FailureKind::Unreachable
                | FailureKind::Timeout
                | FailureKind::RateLimited
                | FailureKind::ServerError
                | FailureKind::Busy
        )
    }

    /// Evidence that the provider is down (counts towards opening the
    /// circuit breaker). A 429 is not: the provider is alive, just busy.
    pub fn is_outage(&self) -> bool {
        matches!(
            self.kind(),
            FailureKind::Unreachable | FailureKind::Timeout | FailureKind::ServerError
        )
    }

    /// Whether a user's Retry can help. Not for what only an operator can
    /// fix (key, model name) or what the same question will hit again (a
    /// refused request, the content filter).
    pub fn is_retryable(&self) -> bool {
        retryable_code(self.code())
    }

    /// The stable code of the failed reply and its error frame.
    pub fn code(&self) -> &'static str {
        match self.kind() {
            FailureKind::Unreachable => "agent_unreachable",
            FailureKind::Timeout => "agent_timeout",
            FailureKind::Stalled => "agent_stalled",
            FailureKind::Deadline => "agent_deadline",
            FailureKind::RateLimited => "agent_rate_limited",
            FailureKind::ServerError => "agent_unavailable",
            FailureKind::BadKey => "agent_auth_failed",
            FailureKind::UnknownModel => "agent_model_not_found",
            FailureKind::Rejected => "agent_rejected",
            FailureKind::Cut => "agent_interrupted",
            FailureKind::Malformed => "agent_bad_response",
            FailureKind::ContentFiltered => "agent_content_filtered",
            FailureKind::CircuitOpen => "agent_circuit_open",
            FailureKind::Busy => "agent_busy",
            FailureKind::ModelFailed => "agent_model_failed",
            FailureKind::TooLong => "agent_reply_too_long",
        }
    }

    /// A friendly, specific explanation for the chat UI.
    pub fn user_message(&self) -> String {
        match self {
            ProviderError::RateLimited {
                retry_after: Some(d),
                ..
            } => format!(
                "The AI model is rate-limiting us right now. Retry in about {}.",
                human_secs(*d)
            ),
            ProviderError::CircuitOpen { retry_in } => format!(
                "The AI model has been failing, so Confab paused requests to it. Retry in about {}.",
                human_secs(*retry_in)
            ),
            ProviderError::Status { status, .. } => match self.kind() {
                FailureKind::BadKey => "The AI model rejected Confab's credentials. An operator needs to check CONFAB_LLM_API_KEY.".into(),
                FailureKind::UnknownModel => "The configured AI model does not exist at the provider. An operator needs to check CONFAB_LLM_MODEL.".into(),
                FailureKind::RateLimited => "The AI model is rate-limiting us right now. Wait a moment and retry.".into(),
                FailureKind::ServerError => format!("The AI model's service had an error ({status}). Retry to try again."),
                _ => format!("The AI model refused this request ({status}). Try rephrasing or shortening the conversation."),
            },
            ProviderError::RateLimited { retry_after: None, .. } => {
                "The AI model is rate-limiting us right now. Wait a moment and retry.".into()
            }
            ProviderError::Timeout => "The AI model took too long to start answering. Retry to try again.".into(),
            ProviderError::Stalled => "The AI model stopped sending its reply part-way. What arrived is kept; retry for a complete one.".into(),
            ProviderError::Deadline => "The AI model's reply took too long and was stopped. What arrived is kept; retry for a complete one.".into(),
            ProviderError::TooLong { max_chars } => format!("The AI model's reply reached the longest reply Confab keeps ({max_chars} characters) and was stopped there. What arrived is kept."),
            ProviderError::Connection(_) => "Confab could not reach the AI model. Retry in a moment.".into(),
            ProviderError::Malformed(_) => "The AI model sent a reply Confab could not read. Retry to try again.".into(),
            ProviderError::Cut => "The AI model's reply was cut off. What arrived is kept; retry for a complete one.".into(),
            ProviderError::ContentFiltered => "The AI model's content filter stopped this reply. Try rephrasing your message.".into(),
            ProviderError::Busy => "The local model is busy with other replies right now. Retry in a moment.".into(),
            ProviderError::Model(_) => "The local model failed while writing this reply. What arrived is kept; retry to try again.".into(),
        }
    }
}

/// Whether Retry can help a reply that failed with `code` (stored replies
/// keep only the code).
pub fn retryable_code(code: &str) -> bool {
    !matches!(
        code,
        "agent_auth_failed" | "agent_model_not_found" | "agent_rejected" | "agent_content_filtered"
    )
}

/// "1 second", "30 seconds", "2 minutes".
fn human_secs(d: Duration) -> String {
    let s = d.as_secs_f64().ceil().max(1.0) as u64;
    match s {
        1 => "1 second".into(),
        s if s < 120 => format!("{s} seconds"),
        s => format!("{} minutes", s.div_ceil(60)),
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

/// Why no provider could be built at start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Infra(#[from] confab_core::error::InfraError),
    #[error(transparent)]
    Model(#[from] local::ModelError),
}

/// The configured provider: a model server when `CONFAB_LLM_BASE_URL` is set,
/// otherwise the local model (loaded here, off the async runtime). A default
/// model file that is missing is not an error: the offline assistant stands
/// in and the chat page says how to get the model. A file that is there but
/// unusable, or one chosen with `CONFAB_LOCAL_MODEL`, must load.
pub async fn build(config: &LlmConfig) -> Result<Arc<dyn Provider>, BuildError> {
    if config.base_url.is_some() {
        let client =
            openai::OpenAi::new(config.clone()).map_err(confab_core::error::InfraError::from)?;
        return Ok(Arc::new(client));
    }
    if let local::ModelSource::Default(path) = &config.local.model {
        if !path.exists() {
            tracing::warn!(
                path = %path.display(),
                "no local model file; the offline assistant answers instead (./scripts/deps.sh --model fetches the model)"
            );
            return Ok(Arc::new(
                offline::Offline::new(config.offline_token_delay).missing_model(path),
            ));
        }
    }
    let local = config.local.clone();
    let model = tokio::task::spawn_blocking(move || local::Local::load(local))
        .await
        .map_err(|e| local::ModelError::Panicked(e.to_string()))??;
    Ok(Arc::new(model))
}

/// `provider` behind automatic retries and a circuit breaker.
pub fn resilient(provider: Arc<dyn Provider>, config: &LlmConfig) -> Arc<dyn Provider> {
    Arc::new(resilience::Resilient::new(
        provider,
        config.resilience.clone(),
    ))
}
