//! Real inference on the real model file (SmolLM2-135M-Instruct, placed by
//! `./scripts/deps.sh --model`, which `./scripts/test.sh` runs). The model is
//! loaded once for the whole test binary; each test starts its own workers
//! on it with the settings it needs.

use super::*;
use crate::agent::Role;
use futures::StreamExt;
use std::sync::OnceLock;

fn model_path() -> PathBuf {
    match std::env::var("CONFAB_TEST_LOCAL_MODEL") {
        Ok(p) if !p.trim().is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../.confab/models")
            .join(DEFAULT_MODEL_FILE),
    }
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = model_path();
        Model::load(&ModelSource::Chosen(path.clone())).unwrap_or_else(|e| {
            panic!(
                "the test model must be at {} (run ./scripts/deps.sh --model, or set \
                 CONFAB_TEST_LOCAL_MODEL): {e}",
                path.display()
            )
        })
    })
}

fn greedy(max_tokens: usize, workers: usize, queue: usize) -> LocalConfig {
    LocalConfig {
        model: ModelSource::Chosen(model_path()),
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(7),
        max_tokens,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        workers,
        queue,
    }
}

fn chat(question: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: Role::System,
            content: "You are a helpful assistant.".into(),
        },
        ChatMessage {
            role: Role::User,
            content: question.into(),
        },
    ]
}

async fn collect(provider: &Local, messages: Vec<ChatMessage>) -> Vec<String> {
    let mut stream = provider.stream(messages).await.expect("stream starts");
    let mut deltas = Vec::new();
    while let Some(item) = stream.next().await {
        deltas.push(item.expect("no error mid-stream"));
    }
    deltas
}

#[tokio::test]
async fn a_greedy_reply_streams_and_is_the_same_every_time() {
    let local = Local::start(model(), greedy(32, 1, 4)).unwrap();
    let first = collect(&local, chat("What is the capital of France?")).await;
    let text = first.concat();
    assert!(first.len() > 3, "streamed in pieces: {first:?}");
    assert!(text.contains("Paris"), "{text:?}");
    let again = collect(&local, chat("What is the capital of France?")).await;
    assert_eq!(again.concat(), text, "greedy decoding is deterministic");
    assert_eq!(local.info().kind, "local");
    assert_eq!(local.info().model, "SmolLM2-135M-Instruct.Q4_1");
}

#[tokio::test]
async fn sampling_with_a_fixed_seed_is_reproducible() {
    let config = LocalConfig {
        temperature: 0.8,
        top_p: 0.9,
        seed: Some(42),
        ..greedy(24, 1, 4)
    };
    let local = Local::start(model(), config).unwrap();
    let a = collect(&local, chat("Tell me about cats.")).await.concat();
    let b = collect(&local, chat("Tell me about cats.")).await.concat();
    assert!(!a.trim().is_empty());
    assert_eq!(a, b);
}

#[tokio::test]
async fn dropping_the_stream_stops_generation() {
    // One worker: the second reply can only start once the first one has
    // really stopped.
    let local = Local::start(model(), greedy(1000, 1, 4)).unwrap();
    let mut stream = local
        .stream(chat("Write a very long story about a dragon."))
        .await
        .unwrap();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    // Its first piece means the worker is done with the stopped reply, whose
    // tokens are counted by then (this one's only when it ends).
    let mut next = local.stream(chat("Say hi.")).await.unwrap();
    assert!(!next.next().await.unwrap().unwrap().is_empty());
    let stopped_after = local.generated_tokens();
    assert!(
        (3..20).contains(&stopped_after),
        "the stopped reply ran a token or two past the drop, not on to 1000: {stopped_after}"
    );
}

#[tokio::test]
async fn a_full_queue_is_a_busy_error_and_a_dropped_wait_is_skipped() {
    let local = Local::start(model(), greedy(1000, 1, 2)).unwrap();
    let mut running = local
        .stream(chat("Count from one to a thousand."))
        .await
        .unwrap();
    running.next().await.unwrap().unwrap(); // on the worker now
    let waiting = local.stream(chat("Hello")).await.unwrap(); // queued
    let mut next = local.stream(chat("Say hi.")).await.unwrap(); // queued
    let refused = local.stream(chat("Hello again")).await.err().expect("busy");
    assert!(matches!(refused, ProviderError::Busy));
    assert_eq!(refused.code(), "agent_busy");
    assert!(refused.is_transient(), "the chat retries it with backoff");

    drop(waiting); // given up while queued: skipped
    drop(running); // stopped mid-reply
    assert!(!next.next().await.unwrap().unwrap().is_empty());
    let before_next = local.generated_tokens();
    assert!(
        before_next < 20,
        "{before_next} tokens before the last reply started"
    );
}

#[test]
fn a_long_history_is_trimmed_to_the_context_window() {
    let m = &model().inner;
    let mut messages = chat("first question");
    for i in 0..60 {
        messages.push(ChatMessage {
            role: if i % 2 == 0 {
                Role::Assistant
            } else {
                Role::User
            },
            content: format!("turn {i}: {}", "lorem ipsum dolor sit amet ".repeat(20)),
        });
    }
    messages.push(ChatMessage {
        role: Role::User,
        content: "the last question".into(),
    });
    let budget = m.context - 512;
    let ids = m
        .template
        .encode_within(&m.tokenizer, messages, budget)
        .unwrap();
    assert!(ids.len() <= budget, "{} tokens", ids.len());
    let text = m.tokenizer.decode(&ids, false).unwrap();
    assert!(text.starts_with("<|im_start|>system\nYou are a helpful assistant."));
    assert!(
        text.ends_with("<|im_start|>user\nthe last question<|im_end|>\n<|im_start|>assistant\n")
    );
    assert!(
        !text.contains("first question"),
        "the oldest turns went first"
    );

    // One message longer than the window on its own keeps its end.
    let huge = chat(&format!("{} the question at the end", "word ".repeat(8000)));
    let ids = m
        .template
        .encode_within(&m.tokenizer, huge, budget)
        .unwrap();
    assert!(ids.len() <= budget);
    let text = m.tokenizer.decode(&ids, false).unwrap();
    assert!(text.contains("the question at the end<|im_end|>"));
}

#[test]
fn the_tokenizer_matches_smollm() {
    let m = &model().inner;
    let ids = prompt::encode(&m.tokenizer, "<|im_start|>user\nHello world 2024").unwrap();
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| m.tokenizer.id_to_token(id).unwrap())
        .collect();
    // Special tokens whole, no space added in front of the text, digits
    // one by one.
    assert_eq!(
        pieces,
        [
            "<|im_start|>",
            "user",
            "Ċ",
            "Hello",
            "Ġworld",
            "Ġ",
            "2",
            "0",
            "2",
            "4"
        ]
    );
    assert_eq!(
        m.tokenizer.decode(&ids, false).unwrap(),
        "<|im_start|>user\nHello world 2024"
    );
}

#[test]
fn text_is_released_only_on_whole_characters() {
    let m = &model().inner;
    let ids = prompt::encode(&m.tokenizer, "naïve 🐉 café").unwrap();
    let mut stream = TextStream::new(&m.tokenizer);
    let mut out = String::new();
    for id in ids {
        if let Some(piece) = stream.push(id).unwrap() {
            assert!(!piece.contains('\u{fffd}'), "{piece:?}");
            out.push_str(&piece);
        }
    }
    if let Some(rest) = stream.finish().unwrap() {
        out.push_str(&rest);
    }
    assert_eq!(out, "naïve 🐉 café");
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let path = PathBuf::from("/nonexistent/dir/model.gguf");
    let err = Model::load(&ModelSource::Chosen(path))
        .err()
        .expect("missing");
    assert!(matches!(err, ModelError::Missing { .. }));
    assert_eq!(
        err.to_string(),
        "CONFAB_LOCAL_MODEL: no model file at /nonexistent/dir/model.gguf; point \
         CONFAB_LOCAL_MODEL at a GGUF file, or fetch the default model with ./scripts/deps.sh --model"
    );
}

#[test]
fn a_corrupt_model_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("confab-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all").unwrap();
    let err = Model::load(&ModelSource::Chosen(garbage.clone()))
        .err()
        .expect("corrupt");
    let text = err.to_string();
    assert!(matches!(err, ModelError::Corrupt { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "CONFAB_LOCAL_MODEL: {} is not a usable GGUF model (unreadable GGUF header",
            garbage.display()
        )),
        "{text}"
    );

    // A download cut short: the header reads, the weights do not.
    let real = std::fs::read(model_path()).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &real[..real.len() / 3]).unwrap();
    let err = Model::load(&ModelSource::Default(truncated))
        .err()
        .expect("truncated");
    let text = err.to_string();
    assert!(text.starts_with("CONFAB_DATA_DIR: "), "{text}");
    assert!(text.contains("its weights do not load"), "{text}");
    assert!(text.contains("./scripts/deps.sh --model"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_default_model_falls_back_to_the_offline_assistant() {
    let mut env = Env::new();
    env.set("CONFAB_DATA_DIR", "/nonexistent/confab-data");
    let config = crate::agent::LlmConfig::from_env(&env).unwrap();
    let provider = crate::agent::build(&config).await.unwrap();
    let info = provider.info();
    assert_eq!(info.kind, "offline");
    let notice = info.notice.expect("the page says how to get a model");
    assert!(notice.contains("./scripts/deps.sh --model"), "{notice}");
    assert!(
        notice.contains("/nonexistent/confab-data/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{notice}"
    );

    // Chosen explicitly, the same missing file stops the start.
    env.set("CONFAB_LOCAL_MODEL", "/nonexistent/confab-data/x.gguf");
    let config = crate::agent::LlmConfig::from_env(&env).unwrap();
    let err = crate::agent::build(&config).await.err().expect("refused");
    assert!(err
        .to_string()
        .starts_with("CONFAB_LOCAL_MODEL: no model file"));
}

#[test]
fn bad_sampling_settings_name_their_variable() {
    for (var, value) in [
        ("CONFAB_LOCAL_TEMPERATURE", "-1"),
        ("CONFAB_LOCAL_TOP_P", "0"),
        ("CONFAB_LOCAL_MAX_TOKENS", "0"),
        ("CONFAB_LOCAL_WORKERS", "0"),
        ("CONFAB_LOCAL_SEED", "abc"),
    ] {
        let mut env = Env::new();
        env.set(var, value);
        let err = LocalConfig::from_env(&env).expect_err(var);
        assert_eq!(err.var, var);
    }
    let mut env = Env::new();
    env.set("CONFAB_LOCAL_MODEL", "/m.gguf");
    env.set("CONFAB_LLM_BASE_URL", "http://localhost:11434/v1");
    let err = crate::agent::LlmConfig::from_env(&env).expect_err("both");
    assert_eq!(err.var, "CONFAB_LOCAL_MODEL");
}
