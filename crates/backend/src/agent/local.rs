//! The local model: a GGUF language model run on this machine's CPU, so the
//! default agent is a real model with no account anywhere and no network.
//!
//! Inference is candle's quantized llama (pure Rust); the tokenizer is built
//! from the GGUF file's own metadata and the prompt from its own chat
//! template. The weights are loaded once per process and shared by a few
//! worker threads (each reply gets its own KV cache). Generation never runs
//! on the async runtime: a reply is a job on a bounded queue, a worker
//! streams its tokens back through a channel, and a full queue is a clear
//! "busy" error rather than an unbounded wait. Dropping the token stream
//! (the reply was stopped, the process is shutting down) cancels the job:
//! the worker checks before every token.

pub mod prompt;
#[cfg(test)]
mod tests;

use super::{AgentInfo, ChatMessage, Provider, ProviderError, TokenStream};
use async_trait::async_trait;
use candle_core::{
    quantized::{gguf_file, tokenizer::TokenizerFromGguf},
    Device, Tensor,
};
use candle_transformers::{
    generation::{LogitsProcessor, Sampling},
    models::quantized_llama::{ModelWeights, MAX_SEQ_LEN},
};
use confab_core::config::{ConfigError, Env};
use prompt::{ChatTemplate, TextStream};
use std::{
    hash::{BuildHasher, Hasher},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokenizers::Tokenizer;

/// The default model's file name, as the set-up scripts place it in the
/// data folder's `models/`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `CONFAB_LOCAL_WORKERS` when unset.
///
/// The workers' matrix multiplications run on candle's process-wide pool of
/// threads, sized once from `CANDLE_NUM_THREADS` (default: one per core);
/// calls into it from several workers queue behind each other. Confab
/// leaves candle its default: a reply that generates alone gets every core (the 2-core reference machine: one stream
/// 30.7 tokens/s against 20.1 on one thread per reply), and replies that
/// generate at once take turns on the pool (four streams on two workers:
/// 31.4 tokens/s in all against 45.9 with `CANDLE_NUM_THREADS=1`, which an
/// operator serving many users at once may prefer). docs/benchmarks.md has
/// the figures.
pub const DEFAULT_WORKERS: usize = 2;

/// Which file to load, and who chose it (for error messages and fallback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `CONFAB_LOCAL_MODEL`: must load, or the backend does not start.
    Chosen(PathBuf),
    /// The default model in the data folder: when it is missing the
    /// offline assistant stands in and tells how to get it.
    Default(PathBuf),
}

impl ModelSource {
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Chosen(p) | ModelSource::Default(p) => p,
        }
    }

    fn var(&self) -> &'static str {
        match self {
            ModelSource::Chosen(_) => "CONFAB_LOCAL_MODEL",
            ModelSource::Default(_) => "CONFAB_DATA_DIR",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub model: ModelSource,
    /// 0 means greedy: always the most likely token.
    pub temperature: f64,
    pub top_p: f64,
    /// A fixed seed makes sampled replies reproducible; unset, each reply
    /// draws its own.
    pub seed: Option<u64>,
    pub max_tokens: usize,
    /// Penalty for repeating a token seen in the last `repeat_last_n`
    /// (small models loop without it); 1 disables it.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Replies generated at the same time (each a thread with its own KV
    /// cache; the weights are shared).
    pub workers: usize,
    /// Replies that may wait for a free worker before new ones are refused
    /// as busy.
    pub queue: usize,
}

impl LocalConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let model = match env.opt_string("CONFAB_LOCAL_MODEL") {
            Some(p) => ModelSource::Chosen(PathBuf::from(p)),
            None => ModelSource::Default(
                PathBuf::from(env.string("CONFAB_DATA_DIR", ".confab"))
                    .join("models")
                    .join(DEFAULT_MODEL_FILE),
            ),
        };
        let temperature: f64 = env.parse("CONFAB_LOCAL_TEMPERATURE", 0.2)?;
        if !(0.0..=5.0).contains(&temperature) {
            return Err(env.invalid(
                "CONFAB_LOCAL_TEMPERATURE",
                "must be between 0 (greedy) and 5",
            ));
        }
        let top_p: f64 = env.parse("CONFAB_LOCAL_TOP_P", 0.9)?;
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(env.invalid("CONFAB_LOCAL_TOP_P", "must be above 0 and at most 1"));
        }
        let max_tokens: usize = env.parse("CONFAB_LOCAL_MAX_TOKENS", 512)?;
        if max_tokens == 0 || max_tokens >= MAX_SEQ_LEN {
            return Err(env.invalid(
                "CONFAB_LOCAL_MAX_TOKENS",
                format!("must be between 1 and {}", MAX_SEQ_LEN - 1),
            ));
        }
        let repeat_penalty: f32 = env.parse("CONFAB_LOCAL_REPEAT_PENALTY", 1.1)?;
        if !(1.0..=2.0).contains(&repeat_penalty) {
            return Err(env.invalid(
                "CONFAB_LOCAL_REPEAT_PENALTY",
                "must be between 1 (off) and 2",
            ));
        }
        let workers: usize = env.parse("CONFAB_LOCAL_WORKERS", DEFAULT_WORKERS)?;
        if !(1..=64).contains(&workers) {
            return Err(env.invalid("CONFAB_LOCAL_WORKERS", "must be between 1 and 64"));
        }
        let seed = match env.opt_string("CONFAB_LOCAL_SEED") {
            None => None,
            Some(_) => Some(env.parse("CONFAB_LOCAL_SEED", 0u64)?),
        };
        Ok(Self {
            model,
            temperature,
            top_p,
            seed,
            max_tokens,
            repeat_penalty,
            repeat_last_n: 64,
            workers,
            queue: env.parse("CONFAB_LOCAL_QUEUE", 8)?,
        })
    }

    fn sampling(&self) -> Sampling {
        if self.temperature == 0.0 {
            Sampling::ArgMax
        } else if self.top_p >= 1.0 {
            Sampling::All {
                temperature: self.temperature,
            }
        } else {
            Sampling::TopP {
                p: self.top_p,
                temperature: self.temperature,
            }
        }
    }
}

/// Why a model file cannot be used. Each names the variable that chose the
/// file, so the start-up error says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{var}: no model file at {path}; point CONFAB_LOCAL_MODEL at a GGUF file, or fetch the \
         default model with ./scripts/deps.sh --model"
    )]
    Missing { var: &'static str, path: PathBuf },
    #[error("{var}: cannot read the model file {path}: {source}")]
    Unreadable {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{var}: {path} is not a usable GGUF model ({reason}); fetch the default model again with \
         ./scripts/deps.sh --model, or point CONFAB_LOCAL_MODEL at another file"
    )]
    Corrupt {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("loading the local model failed unexpectedly: {0}")]
    Panicked(String),
}

/// A loaded model: the weights (read-only; each reply clones the handle,
/// which shares the tensors and starts an empty KV cache), the tokenizer and
/// the chat template. Cheap to clone; load it once per process.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Loaded>,
}

struct Loaded {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Tokens that end a reply (end of turn, end of text).
    stop_tokens: Vec<u32>,
    /// Tokens the prompt and the reply may use together.
    context: usize,
    name: String,
    load_time: Duration,
}

impl Model {
    /// Read a GGUF file: metadata, tokenizer, chat template, weights.
    /// Blocking (reads ~100 MB): call from a blocking thread.
    pub fn load(source: &ModelSource) -> Result<Self, ModelError> {
        let started = confab_core::clock::instant();
        let (var, path) = (source.var(), source.path().to_path_buf());
        let corrupt = |reason: String| ModelError::Corrupt {
            var,
            path: path.clone(),
            reason,
        };
        let mut file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::Missing {
                var,
                path: path.clone(),
            },
            _ => ModelError::Unreadable {
                var,
                path: path.clone(),
                source: e,
            },
        })?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| corrupt(format!("unreadable GGUF header: {e}")))?;
        let meta_str = |key: &str| {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_string().ok())
                .cloned()
        };
        let arch = meta_str("general.architecture").unwrap_or_default();
        if arch != "llama" {
            return Err(corrupt(format!(
                "architecture {arch:?}; only llama-family models (Llama, SmolLM, TinyLlama, \
                 Mistral) are supported"
            )));
        }
        let mut tokenizer = Tokenizer::from_gguf(&content)
            .map_err(|e| corrupt(format!("its tokenizer metadata is unusable: {e}")))?;
        adjust_pre_tokenizer(&mut tokenizer, meta_str("tokenizer.ggml.pre").as_deref());
        let token_text = |key: &str| {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_u32().ok())
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let (bos, eos) = (
            token_text("tokenizer.ggml.bos_token_id"),
            token_text("tokenizer.ggml.eos_token_id"),
        );
        let template = match meta_str("tokenizer.chat_template") {
            Some(source) => ChatTemplate::new(&source, &bos, &eos).or_else(|e| {
                tracing::warn!(error = %e, "the model's chat template does not render; using ChatML");
                ChatTemplate::new(prompt::CHATML, &bos, &eos)
            }),
            None => {
                tracing::warn!("the model has no chat template; using ChatML");
                ChatTemplate::new(prompt::CHATML, &bos, &eos)
            }
        }
        .map_err(|e| corrupt(format!("chat template: {e}")))?;
        let mut stop_tokens: Vec<u32> = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        if let Some(id) = tokenizer.token_to_id(&eos) {
            stop_tokens.push(id);
        }
        let trained_context = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(MAX_SEQ_LEN, |n| n as usize);
        let weights = match with_fast_weights(&content, &mut file)
            .map_err(|e| corrupt(format!("its weights do not load: {e}")))?
        {
            Some((content, mut converted)) => {
                ModelWeights::from_gguf(content, &mut converted, &Device::Cpu)
            }
            None => ModelWeights::from_gguf(content, &mut file, &Device::Cpu),
        }
        .map_err(|e| corrupt(format!("its weights do not load: {e}")))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
            .unwrap_or_else(|| "local model".into());
        let load_time = started.elapsed();
        tracing::info!(
            model = %name,
            path = %path.display(),
            load_ms = load_time.as_millis() as u64,
            "local model loaded"
        );
        Ok(Self {
            inner: Arc::new(Loaded {
                weights,
                tokenizer,
                template,
                stop_tokens,
                // candle's llama precomputes positions up to MAX_SEQ_LEN.
                context: trained_context.min(MAX_SEQ_LEN),
                name,
                load_time,
            }),
        })
    }

    /// The name shown in the UI: the file's name without `.gguf`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// Tokens the prompt and the reply may use together.
    pub fn context(&self) -> usize {
        self.inner.context
    }
}

struct Job {
    messages: Vec<ChatMessage>,
    tx: tokio::sync::mpsc::Sender<Result<String, ProviderError>>,
    cancel: Arc<AtomicBool>,
    queued_at: Instant,
}

/// The provider: worker threads generating from a shared [`Model`], fed by
/// a bounded job queue. Dropping it (with every stream it handed out) lets
/// the workers finish and exit.
pub struct Local {
    name: String,
    jobs: mpsc::SyncSender<Job>,
    generated: Arc<AtomicU64>,
}

impl Local {
    /// Load the configured model file and start the workers.
    pub fn load(config: LocalConfig) -> Result<Self, ModelError> {
        let model = Model::load(&config.model)?;
        Self::start(&model, config)
    }

    /// Start workers generating from an already loaded model with these
    /// sampling settings.
    pub fn start(model: &Model, config: LocalConfig) -> Result<Self, ModelError> {
        let (var, path) = (config.model.var(), config.model.path().to_path_buf());
        let context = model.context();
        if config.max_tokens + 16 > context {
            return Err(ModelError::Corrupt {
                var,
                path,
                reason: format!(
                    "its context window ({context} tokens) is smaller than CONFAB_LOCAL_MAX_TOKENS"
                ),
            });
        }
        let generated = Arc::new(AtomicU64::new(0));
        let (jobs, rx) = mpsc::sync_channel::<Job>(config.queue);
        let rx = Arc::new(Mutex::new(rx));
        let config = Arc::new(config);
        for i in 0..config.workers {
            let worker = Worker {
                model: model.inner.clone(),
                config: config.clone(),
                generated: generated.clone(),
            };
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("local-model-{i}"))
                .spawn(move || worker.run(&rx))
                .map_err(|e| ModelError::Unreadable {
                    var,
                    path: path.clone(),
                    source: e,
                })?;
        }
        tracing::info!(
            model = %model.name(),
            context,
            workers = config.workers,
            queue = config.queue,
            "local model workers started"
        );
        Ok(Self {
            name: model.name().to_string(),
            jobs,
            generated,
        })
    }

    /// Tokens generated by this provider's workers so far.
    pub fn generated_tokens(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }
}

/// candle has SIMD kernels for Q4_0, Q8_0 and the K-quants, but multiplies
/// Q4_1, Q5_0 and Q5_1 weights (the default model is Q4_1) with a scalar
/// loop several times slower. Such weights are converted once, at load, to
/// Q8_0: near-lossless (8 bits per weight where the file has 4 or 5), about
/// 1.7 times the memory, and the fast kernel. The converted model is
/// written to an in-memory GGUF that candle's loader reads like the file.
fn with_fast_weights(
    content: &gguf_file::Content,
    file: &mut std::fs::File,
) -> candle_core::Result<Option<(gguf_file::Content, std::io::Cursor<Vec<u8>>)>> {
    use candle_core::quantized::{GgmlDType, QTensor};
    let slow = |t: GgmlDType| matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
    if !content.tensor_infos.values().any(|i| slow(i.ggml_dtype)) {
        return Ok(None);
    }
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(file, name, &Device::Cpu)?;
        let tensor = if slow(tensor.dtype()) {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut buffer = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buffer, &metadata, &tensors)?;
    buffer.set_position(0);
    let converted = gguf_file::Content::read(&mut buffer)?;
    Ok(Some((converted, buffer)))
}

/// SmolLM's tokenizer splits digits one by one before the byte-level step
/// and adds no space in front of the text (its `tokenizer.json`); candle's
/// generic GPT-2 pipeline adds one, which shifts every prompt. Other
/// pre-tokenizer kinds keep candle's pipeline.
fn adjust_pre_tokenizer(tokenizer: &mut Tokenizer, pre: Option<&str>) {
    use tokenizers::pre_tokenizers::{
        byte_level::ByteLevel, digits::Digits, sequence::Sequence, PreTokenizerWrapper,
    };
    if pre == Some("smollm") {
        let steps: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        tokenizer.with_pre_tokenizer(Some(Sequence::new(steps)));
    }
}

struct Worker {
    model: Arc<Loaded>,
    config: Arc<LocalConfig>,
    generated: Arc<AtomicU64>,
}

impl Worker {
    fn run(&self, jobs: &Mutex<mpsc::Receiver<Job>>) {
        let mut opening = None;
        loop {
            // The lock is held only while waiting; whoever gets a job
            // releases it for the next idle worker.
            let job = match jobs.lock().map(|rx| rx.recv()) {
                Ok(Ok(job)) => job,
                _ => return,
            };
            metrics::gauge!("local_model_queued").decrement(1.0);
            if job.cancel.load(Ordering::Relaxed) || job.tx.is_closed() {
                continue;
            }
            let wait = job.queued_at.elapsed();
            let started = confab_core::clock::instant();
            let mut tokens = 0u64;
            let result = self.generate(&job, &mut tokens, &mut opening);
            self.generated.fetch_add(tokens, Ordering::Relaxed);
            metrics::counter!("local_model_tokens_total").increment(tokens);
            if let Err(e) = &result {
                tracing::warn!(error = %e, model = %self.model.name, "local generation failed");
                let _ = job
                    .tx
                    .blocking_send(Err(ProviderError::Model(e.to_string())));
            }
            let secs = started.elapsed().as_secs_f64();
            tracing::debug!(
                model = %self.model.name,
                tokens,
                queued_ms = wait.as_millis() as u64,
                tokens_per_second = tokens as f64 / secs.max(1e-9),
                "local generation finished"
            );
        }
    }
}

/// A conversation opening (the system prompt) already run through the
/// model: most prompts start with the same one, and skipping it is most of
/// the time to first token.
struct Opening {
    text: String,
    tokens: Vec<u32>,
    /// The model with the opening in its KV cache (tensors are immutable:
    /// clones share them, and each reply appends to its own).
    state: ModelWeights,
}

impl Worker {
    /// The model to continue the prompt with, and how many of the prompt's
    /// tokens it has already seen. The opening is always run on its own, so
    /// a reply is computed the same way whether or not it was cached.
    fn start_from_opening(
        &self,
        job: &Job,
        prompt: &[u32],
        opening: &mut Option<Opening>,
    ) -> Result<(ModelWeights, usize), GenerateError> {
        let m = &*self.model;
        let text = m
            .template
            .render_opening(&job.messages)
            .map_err(prompt::PromptError::from)?;
        let usable = |tokens: &[u32]| {
            !tokens.is_empty() && tokens.len() < prompt.len() && prompt.starts_with(tokens)
        };
        if let Some(o) = opening
            .as_ref()
            .filter(|o| o.text == text && usable(&o.tokens))
        {
            return Ok((o.state.clone(), o.tokens.len()));
        }
        let tokens = prompt::encode(&m.tokenizer, &text)?;
        if !usable(&tokens) {
            // A template whose opening is not a prefix of the whole prompt.
            return Ok((m.weights.clone(), 0));
        }
        let mut state = m.weights.clone();
        state.forward(
            &Tensor::new(tokens.as_slice(), &Device::Cpu)?.unsqueeze(0)?,
            0,
        )?;
        let done = tokens.len();
        *opening = Some(Opening {
            text,
            tokens,
            state: state.clone(),
        });
        Ok((state, done))
    }
}

#[derive(Debug, thiserror::Error)]
enum GenerateError {
    #[error(transparent)]
    Prompt(#[from] prompt::PromptError),
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Worker {
    /// Generate one reply into the job's channel. Returns when the reply is
    /// complete, the token budget is spent, or the job was cancelled.
    fn generate(
        &self,
        job: &Job,
        generated: &mut u64,
        opening: &mut Option<Opening>,
    ) -> Result<(), GenerateError> {
        let (cfg, m) = (&*self.config, &*self.model);
        let budget = m.context - cfg.max_tokens;
        let prompt = m
            .template
            .encode_within(&m.tokenizer, job.messages.clone(), budget)?;
        let cancelled = || job.cancel.load(Ordering::Relaxed) || job.tx.is_closed();
        let seed = cfg.seed.unwrap_or_else(|| {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        let mut sampler = LogitsProcessor::from_sampling(seed, cfg.sampling());
        let (mut model, done) = self.start_from_opening(job, &prompt, opening)?;
        let mut text = TextStream::new(&m.tokenizer);
        let mut context = prompt.clone();

        let input = Tensor::new(&prompt[done..], &Device::Cpu)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, done)?.squeeze(0)?;
        let started = confab_core::clock::instant();
        for _ in 0..cfg.max_tokens {
            if cancelled() {
                tracing::debug!(generated = *generated, "local generation cancelled");
                return Ok(());
            }
            if cfg.repeat_penalty > 1.0 {
                let start = context.len().saturating_sub(cfg.repeat_last_n);
                logits = candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    cfg.repeat_penalty,
                    &context[start..],
                )?;
            }
            let next = sampler.sample(&logits)?;
            if m.stop_tokens.contains(&next) {
                break;
            }
            *generated += 1;
            if *generated == 1 {
                metrics::histogram!("local_model_first_token_seconds")
                    .record(job.queued_at.elapsed().as_secs_f64());
            }
            context.push(next);
            if let Some(piece) = text.push(next)? {
                if job.tx.blocking_send(Ok(piece)).is_err() {
                    return Ok(());
                }
            }
            let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
            logits = model.forward(&input, context.len() - 1)?.squeeze(0)?;
        }
        if let Some(rest) = text.finish()? {
            let _ = job.tx.blocking_send(Ok(rest));
        }
        metrics::histogram!("local_model_tokens_per_second")
            .record(*generated as f64 / started.elapsed().as_secs_f64().max(1e-9));
        Ok(())
    }
}

#[async_trait]
impl Provider for Local {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            kind: "local",
            model: self.name.clone(),
            offline: false,
            notice: None,
        }
    }

    async fn stream(&self, messages: Vec<ChatMessage>) -> Result<TokenStream, ProviderError> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            messages,
            tx,
            cancel: cancel.clone(),
            queued_at: confab_core::clock::instant(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => metrics::gauge!("local_model_queued").increment(1.0),
            Err(mpsc::TrySendError::Full(_)) => {
                metrics::counter!("local_model_busy_total").increment(1);
                return Err(ProviderError::Busy);
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(ProviderError::Model(
                    "the local model's workers have stopped".into(),
                ))
            }
        }
        Ok(Box::pin(Tokens {
            rx,
            _cancel: CancelOnDrop(cancel),
        }))
    }
}

/// The reply's token stream; dropping it stops the generation.
struct Tokens {
    rx: tokio::sync::mpsc::Receiver<Result<String, ProviderError>>,
    _cancel: CancelOnDrop,
}

impl futures::Stream for Tokens {
    type Item = Result<String, ProviderError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
