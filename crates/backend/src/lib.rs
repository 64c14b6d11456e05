//! The Confab backend: profiles, workspaces, threads and messages, the chat
//! WebSocket gateway and the agent that writes replies.
//!
//! Like auth, a library with a thin entry point: [`build`] prepares
//! everything that can fail at start and returns an [`App`], whose
//! [`App::run`] serves until Ctrl-C/SIGTERM. The `confab backend`
//! subcommand (which `confab up` and the end-to-end harness start as a
//! process) goes through exactly that.

pub mod agent;
pub mod billing;
pub mod chat;
pub mod deletion;
pub mod domain;
pub mod error;
pub mod events;
pub mod export;
pub mod http;
pub mod identity;
pub mod markdown;
pub mod plans;
pub mod profile_cache;
pub mod store;
pub mod view;
pub mod ws;

use confab_core::{
    clock::Clock,
    config::{database_url, Common, ConfigError, Env},
    keys::Keys,
    tokens::Verifier,
};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct Config {
    pub common: Common,
    pub database_url: String,
    /// Base URL of the auth service (its JWKS is under `/.well-known/`).
    pub auth_url: String,
    pub issuer: String,
    /// `Origin`s allowed to open the socket directly (the web proxy checks
    /// same-origin itself and does not forward `Origin`).
    pub allowed_origins: Vec<String>,
    pub llm: agent::LlmConfig,
    /// Largest accepted WebSocket frame, in bytes.
    pub max_frame_bytes: usize,
    /// Longest accepted chat message, in characters.
    pub max_message_chars: usize,
    /// Longest reply kept, in characters (`CONFAB_MAX_REPLY_CHARS`).
    pub max_reply_chars: usize,
    /// Chat sockets one process holds at most (`CONFAB_WS_MAX_SOCKETS`).
    pub max_sockets: usize,
    /// Chat sockets one user holds at most on one process
    /// (`CONFAB_WS_MAX_SOCKETS_PER_USER`).
    pub max_sockets_per_user: usize,
    /// Access-token lifetime (the same `CONFAB_ACCESS_TOKEN_TTL_SECS` auth
    /// reads): how long a revocation entry this service writes must live.
    pub access_token_ttl_secs: u64,
    /// Largest JSON export accepted by the import, in bytes.
    pub import_max_bytes: usize,
    /// How the event consumer retries and dead-letters failing events.
    pub events: events::ConsumerSettings,
    /// `CONFAB_FAULT_RELAY`: a fault the outbox relay injects (tests only).
    pub relay_fault: confab_core::outbox::RelayFault,
    /// The wall clock decisions are made on (when an open socket's token
    /// expires). Not from the environment: the system's, or a test's
    /// `ManualClock`.
    pub clock: Clock,
    /// How long an instance's claim on a reply it writes lasts without
    /// renewal (`CONFAB_REPLY_LEASE_SECS`): a reply whose instance died is
    /// failed, retryable, between one and one and a half leases later.
    pub reply_lease: Duration,
    /// How long the pub/sub subscription may go without hearing this
    /// instance's own heartbeat before it counts as lost and every socket
    /// here is told to resync (`CONFAB_PUBSUB_SILENCE_SECS`, 3).
    pub pubsub_silence: Duration,
    /// The plans and their limits (`CONFAB_PLANS`, `CONFAB_PLAN_*`).
    pub plans: Arc<plans::Plans>,
    /// The payment provider (`CONFAB_BILLING_*`).
    pub billing: billing::BillingConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allowed_origins = env
            .string(
                "CONFAB_ALLOWED_ORIGINS",
                "http://localhost:3000,http://127.0.0.1:3000",
            )
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let max_frame_bytes: usize = env.parse("CONFAB_WS_MAX_FRAME_BYTES", 64 * 1024)?;
        if max_frame_bytes < 1024 {
            return Err(env.invalid("CONFAB_WS_MAX_FRAME_BYTES", "must be at least 1024"));
        }
        let max_deliveries: u64 = env.parse("CONFAB_EVENT_MAX_DELIVERIES", 5)?;
        if max_deliveries == 0 {
            return Err(env.invalid("CONFAB_EVENT_MAX_DELIVERIES", "must be at least 1"));
        }
        let retry_base_ms: u64 = env.parse("CONFAB_EVENT_RETRY_BASE_MS", 500)?;
        if retry_base_ms < 10 {
            return Err(env.invalid("CONFAB_EVENT_RETRY_BASE_MS", "must be at least 10"));
        }
        Ok(Self {
            common: Common::load(env, "CONFAB_BACKEND_PORT", 8000)?,
            database_url: database_url(env, "CONFAB_BACKEND_DATABASE_URL", "backend")?,
            auth_url: env.url(
                "CONFAB_AUTH_URL",
                "http://127.0.0.1:8001",
                &["http", "https"],
            )?,
            issuer: env.string("CONFAB_ISSUER", "confab"),
            allowed_origins,
            llm: agent::LlmConfig::from_env(env)?,
            max_frame_bytes,
            max_message_chars: env.parse("CONFAB_MAX_MESSAGE_CHARS", 16_000)?,
            max_reply_chars: at_least(env, "CONFAB_MAX_REPLY_CHARS", 100_000, 1)?,
            max_sockets: at_least(env, "CONFAB_WS_MAX_SOCKETS", 20_000, 1)?,
            max_sockets_per_user: at_least(env, "CONFAB_WS_MAX_SOCKETS_PER_USER", 32, 1)?,
            access_token_ttl_secs: env.parse("CONFAB_ACCESS_TOKEN_TTL_SECS", 900)?,
            import_max_bytes: env.parse("CONFAB_IMPORT_MAX_BYTES", 64 * 1024 * 1024)?,
            events: events::ConsumerSettings {
                max_deliveries,
                retry_base: Duration::from_millis(retry_base_ms),
                parallelism: {
                    let n: usize = env.parse("CONFAB_EVENT_PARALLELISM", 8)?;
                    if !(1..=64).contains(&n) {
                        return Err(env.invalid("CONFAB_EVENT_PARALLELISM", "must be 1 to 64"));
                    }
                    n
                },
            },
            relay_fault: confab_core::outbox::RelayFault::from_env(env)?,
            clock: Clock::system(),
            reply_lease: seconds(env, "CONFAB_REPLY_LEASE_SECS", 10, 1..=600)?,
            pubsub_silence: seconds(env, "CONFAB_PUBSUB_SILENCE_SECS", 3, 2..=600)?,
            plans: Arc::new(plans::Plans::from_env(env)?),
            billing: billing::BillingConfig::from_env(env)?,
        })
    }
}

/// A duration setting in whole seconds, within `range`.
fn seconds(
    env: &Env,
    var: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let secs: u64 = env.parse(var, default)?;
    if !range.contains(&secs) {
        let (lo, hi) = range.into_inner();
        return Err(env.invalid(var, format!("must be {lo} to {hi} seconds")));
    }
    Ok(Duration::from_secs(secs))
}

/// A count setting that must be at least `min`.
fn at_least(env: &Env, var: &str, default: usize, min: usize) -> Result<usize, ConfigError> {
    let v: usize = env.parse(var, default)?;
    if v < min {
        return Err(env.invalid(var, format!("must be at least {min}")));
    }
    Ok(v)
}

/// Everything a request handler or socket needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: sqlx::PgPool,
    pub redis: redis::aio::ConnectionManager,
    pub keys: Keys,
    pub verifier: Verifier,
    pub chat: chat::Chat,
    pub hub: ws::hub::Hub,
    pub shutdown: CancellationToken,
    pub known_users: identity::KnownUsers,
    /// One permit per open chat socket (`Config::max_sockets`).
    pub socket_slots: Arc<tokio::sync::Semaphore>,
    /// Wakes the outbox relay after a commit that wrote an event.
    pub outbox: confab_core::outbox::OutboxSignal,
    /// The plans (the same as `config.plans`).
    pub plans: Arc<plans::Plans>,
    /// The payment provider's API.
    pub billing: billing::Provider,
}

const DB_POOL_SIZE: u32 = 20;
/// How long shutdown waits for running replies to be written.
const GENERATION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Create the database if needed and apply migrations.
pub async fn migrate(config: &Config) -> Result<(), Error> {
    confab_core::db::migrate(&config.database_url, &MIGRATOR).await?;
    Ok(())
}

/// A migrated, connected, bound, not yet serving backend.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

/// Prepare everything that can fail at start (database, migrations, Redis,
/// listening socket) so that a bad configuration is reported before the
/// service claims to be listening.
pub async fn build(config: Config) -> Result<App, Error> {
    // First: an unusable model file stops the start before anything else
    // is touched.
    let provider = agent::resilient(agent::build(&config.llm).await?, &config.llm);
    tracing::info!(agent = ?provider.info(), "agent provider ready");
    migrate(&config).await?;
    let db = confab_core::db::connect(&config.database_url, DB_POOL_SIZE).await?;
    let redis = confab_core::redis_conn::connect(&config.common.redis_url).await?;
    let keys = Keys::new(config.common.redis_prefix.clone());
    let verifier = Verifier::new(
        format!("{}/.well-known/jwks.json", config.auth_url),
        config.issuer.clone(),
    )?;
    // Warm the key cache; auth may still be starting, so failure is not fatal
    // (an unknown kid triggers a fetch later).
    if let Err(e) = verifier.refresh().await {
        tracing::warn!(error = %e, "could not fetch JWKS at start; will retry on first token");
    }
    let shutdown = CancellationToken::new();
    let chat = chat::Chat::new(
        db.clone(),
        redis.clone(),
        keys.clone(),
        provider,
        shutdown.clone(),
        chat::ChatSettings {
            context_chars: config.llm.context_chars,
            max_reply_chars: config.max_reply_chars,
            lease: config.reply_lease,
            limiter: plans::limiter::Limiter::new(
                redis.clone(),
                keys.clone(),
                config.plans.clone(),
            ),
            clock: config.clock.clone(),
        },
    );
    let hub = ws::hub::Hub::new(keys.clone(), chat.clone(), config.pubsub_silence);
    let (listener, _) =
        confab_core::http::bind("backend", &config.common.host, config.common.port).await?;
    let plans = config.plans.clone();
    let billing = billing::Provider::new(config.billing.clone())?;
    let socket_slots = Arc::new(tokio::sync::Semaphore::new(config.max_sockets));
    let state = AppState {
        plans,
        billing,
        config: Arc::new(config),
        db,
        redis,
        keys,
        verifier,
        chat,
        hub,
        shutdown,
        known_users: identity::KnownUsers::default(),
        socket_slots,
        outbox: confab_core::outbox::OutboxSignal::default(),
    };
    Ok(App { listener, state })
}

impl App {
    /// Serve until Ctrl-C or SIGTERM.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(confab_core::http::shutdown_signal()).await
    }

    /// Start the fan-out and the event consumer, serve until `shutdown`
    /// resolves, then tell sockets and replies to wind down, wait (bounded)
    /// for running replies to be written, and stop the background tasks.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let App { listener, state } = self;
        let stop = state.shutdown.clone();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(
            state
                .hub
                .clone()
                .run(state.config.common.redis_url.clone(), stop.clone()),
        );
        tasks.spawn(events::consume(state.clone()));
        // Replies whose instance died are failed by whichever instance looks
        // first (this one, at start, included).
        tasks.spawn(state.chat.clone().watch_leases(stop.clone()));
        let relay = confab_core::outbox::Relay::spawn(
            confab_core::outbox::RelaySettings {
                service: "backend",
                pool: state.db.clone(),
                redis: state.redis.clone(),
                stream: state.keys.events_stream(),
                signal: state.outbox.clone(),
                clock: state.config.clock.clone(),
                // Relayed, it has done its job; kept, it would remember a
                // deleted chat.
                erase_when_published: &["thread.deleted"],
                fault: state.config.relay_fault,
            },
            stop.clone(),
        );
        tasks.spawn(confab_core::http::probe::watch(
            state.db.clone(),
            state.redis.clone(),
        ));

        let serve_stop = stop.clone();
        let served = axum::serve(
            confab_core::http::nodelay(listener),
            http::router(state.clone()),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = serve_stop.cancelled() => {}
            }
            // Tell sockets and generations to wind down before the
            // server waits for connections to finish.
            serve_stop.cancel();
        })
        .await;
        stop.cancel();
        state.chat.wait_idle(GENERATION_STOP_TIMEOUT).await;
        relay.join(GENERATION_STOP_TIMEOUT).await;
        tasks.shutdown().await;
        tracing::info!("backend stopped");
        Ok(served?)
    }
}
