//! The Confab auth service: accounts, password sign-in, sessions with
//! rotating refresh tokens, the keys that sign access tokens (published as a
//! JWKS), and the outbox that tells the other services about users and
//! revoked sessions.
//!
//! A library with a thin entry point: the `confab auth` subcommand (which
//! `confab up` and the end-to-end harness start as a process) calls
//! [`Config::from_env`], [`build`] and [`App::run`]; the API tests use
//! [`App::run_until`] to stop it when they are done.

pub mod domain;
pub mod error;
pub mod http;
pub mod keys;
pub mod mail;
pub mod oidc;
pub mod store;
pub mod throttle;

pub use error::Error;

use confab_core::outbox::{OutboxSignal, Relay, RelayFault, RelaySettings};
use confab_core::{
    clock::Clock,
    config::{database_url, Common, ConfigError, Env},
    keys::Keys,
};
use domain::{Argon2Settings, PasswordHasher};
use keys::AccessTokens;
use sqlx::PgPool;
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The auth database's schema; the harness migrates template databases
/// with it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long shutdown waits for the outbox relay to finish its batch.
const RELAY_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Every API request takes a connection for a few queries (the session
/// check, the change and its outbox row); 10 ran out at 500 profile
/// updates/s (`bench-events`). Connections are opened on demand.
const DB_POOL_SIZE: u32 = 20;

/// Settings of the auth service, read once at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host, port (`CONFAB_AUTH_PORT`, default 8001), Redis URL and prefix.
    pub common: Common,
    /// `CONFAB_AUTH_DATABASE_URL`, or `CONFAB_DATABASE_URL` + `_auth`.
    pub database_url: String,
    /// `CONFAB_ISSUER`: the `iss` of every access token; verifiers pin it.
    pub issuer: String,
    /// `CONFAB_ACCESS_TOKEN_TTL_SECS` (default 900).
    pub access_token_ttl: Duration,
    /// `CONFAB_REFRESH_TOKEN_TTL_SECS` (default 30 days); sliding: each
    /// rotation gets a fresh lifetime.
    pub refresh_token_ttl: Duration,
    /// `CONFAB_REFRESH_GRACE_SECS` (default 5): how long after a rotation
    /// the immediately previous refresh token still earns the *same*
    /// successor (two tabs refreshing at once, a retry after a lost
    /// response) instead of being treated as stolen.
    pub refresh_grace: Duration,
    /// `CONFAB_COOKIE_SECURE` (default false, so plain-http localhost works).
    pub cookie_secure: bool,
    /// `CONFAB_ARGON2_M_KIB`, `CONFAB_ARGON2_T`, `CONFAB_ARGON2_P`.
    pub argon2: Argon2Settings,
    /// `CONFAB_REAUTH_WINDOW_SECS` (default 300): deleting the account
    /// without the password is allowed this long after signing in.
    pub reauth_window: Duration,
    /// The wall clock every decision is made on (token lifetimes, refresh
    /// rotation and grace, the re-authentication window, retention). Not from
    /// the environment: the system's, or a test's `ManualClock`.
    pub clock: Clock,
    /// `CONFAB_FAULT_RELAY`: a fault the outbox relay injects (tests only).
    pub relay_fault: RelayFault,
    /// `CONFAB_AVATAR_MAX_BYTES` (default 512 KiB): largest avatar upload.
    pub avatar_max_bytes: usize,
    /// `CONFAB_PUBLIC_URL` and the `CONFAB_OIDC_*` providers.
    pub oidc: oidc::OidcConfig,
    /// `CONFAB_AUTH_THROTTLE_*`: log-in, sign-up and refresh attempts.
    pub throttle: throttle::ThrottleConfig,
    /// `CONFAB_ADMIN_EMAILS`: accounts with these emails are admins (as is
    /// the first account created).
    pub admin_emails: domain::AdminEmails,
    /// `CONFAB_SMTP_*`: where emails go (logged when no host is set).
    pub mail: mail::MailConfig,
    /// `CONFAB_EMAIL_CHANGE_TTL_SECS` (default 3600): how long the link that
    /// confirms a new email address works.
    pub email_change_ttl: Duration,
}

impl Config {
    /// `CONFAB_PUBLIC_URL`: the web origin as browsers see it, no trailing
    /// slash (links in emails start with it).
    pub fn public_url(&self) -> &str {
        &self.oidc.public_url
    }

    /// The refresh-token rules these settings describe.
    pub fn refresh_policy(&self) -> domain::RefreshPolicy {
        domain::RefreshPolicy {
            ttl: self.refresh_token_ttl,
            grace: self.refresh_grace,
        }
    }

    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let common = Common::load(env, "CONFAB_AUTH_PORT", 8001)?;
        let database_url = database_url(env, "CONFAB_AUTH_DATABASE_URL", "auth")?;
        let issuer = env.string("CONFAB_ISSUER", "confab").trim().to_string();
        let secs = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            let v: u64 = env.parse(var, default)?;
            if v == 0 {
                return Err(env.invalid(var, "must be at least 1 second"));
            }
            Ok(Duration::from_secs(v))
        };
        let access_token_ttl = secs("CONFAB_ACCESS_TOKEN_TTL_SECS", 900)?;
        let refresh_token_ttl = secs("CONFAB_REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?;
        let refresh_grace = Duration::from_secs(env.parse("CONFAB_REFRESH_GRACE_SECS", 5u64)?);
        let cookie_secure = env.bool("CONFAB_COOKIE_SECURE", false)?;
        let reauth_window = Duration::from_secs(env.parse("CONFAB_REAUTH_WINDOW_SECS", 300u64)?);
        let defaults = Argon2Settings::default();
        let argon2 = Argon2Settings {
            m_kib: env.parse("CONFAB_ARGON2_M_KIB", defaults.m_kib)?,
            t: env.parse("CONFAB_ARGON2_T", defaults.t)?,
            p: env.parse("CONFAB_ARGON2_P", defaults.p)?,
        };
        if let Err(e) = argon2.params() {
            let var = match e {
                argon2::Error::TimeTooSmall => "CONFAB_ARGON2_T",
                argon2::Error::ThreadsTooFew | argon2::Error::ThreadsTooMany => "CONFAB_ARGON2_P",
                _ => "CONFAB_ARGON2_M_KIB",
            };
            return Err(env.invalid(var, format!("invalid Argon2 parameter: {e}")));
        }
        let oidc = oidc::OidcConfig::from_env(env)?;
        let admin_emails = domain::AdminEmails::parse(&env.string("CONFAB_ADMIN_EMAILS", ""))
            .map_err(|e| env.invalid("CONFAB_ADMIN_EMAILS", e))?;
        let mail = mail::MailConfig::from_env(env)?;
        let email_change_ttl = secs("CONFAB_EMAIL_CHANGE_TTL_SECS", 3600)?;
        Ok(Config {
            throttle: throttle::ThrottleConfig::from_env(env)?,
            admin_emails,
            mail,
            email_change_ttl,
            oidc,
            common,
            database_url,
            issuer,
            access_token_ttl,
            refresh_token_ttl,
            refresh_grace,
            cookie_secure,
            argon2,
            reauth_window,
            clock: Clock::system(),
            relay_fault: RelayFault::from_env(env)?,
            avatar_max_bytes: env.parse("CONFAB_AVATAR_MAX_BYTES", 512 * 1024)?,
        })
    }
}

/// Create the database if needed and apply the migrations.
pub async fn migrate(config: &Config) -> Result<(), Error> {
    confab_core::db::migrate(&config.database_url, &MIGRATOR).await?;
    Ok(())
}

/// A migrated, bound, not yet serving auth service.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    pool: PgPool,
    relay: Relay,
    stop_relay: CancellationToken,
}

/// Prepare everything that can fail at start (database, migrations, Redis,
/// signing key, listening socket) so that a bad configuration is reported
/// before the service claims to be listening.
pub async fn build(config: Config) -> Result<App, Error> {
    confab_core::db::ensure_database(&config.database_url).await?;
    let pool = confab_core::db::connect(&config.database_url, DB_POOL_SIZE).await?;
    MIGRATOR.run(&pool).await?;
    let redis = confab_core::redis_conn::connect(&config.common.redis_url).await?;
    let tokens = AccessTokens::load(&pool, &config.issuer, config.access_token_ttl).await?;
    let settings = config.argon2;
    // Computing the dummy hash is the one Argon2 run at start.
    let passwords = tokio::task::spawn_blocking(move || PasswordHasher::new(settings))
        .await
        .map_err(|e| Error::Internal(format!("password hasher set-up failed: {e}")))??;

    let oidc = oidc::Oidc::new(config.oidc.clone())?;
    let mailer = mail::Mailer::new(&config.mail)?;
    let keys = Keys::new(config.common.redis_prefix.clone());
    let signal = OutboxSignal::default();
    let stop_relay = CancellationToken::new();
    let relay = Relay::spawn(
        RelaySettings {
            service: "auth",
            pool: pool.clone(),
            redis: redis.clone(),
            stream: keys.events_stream(),
            signal: signal.clone(),
            clock: config.clock.clone(),
            // It names a user who asked to be forgotten; relayed, it has
            // done its job.
            erase_when_published: &["user.deleted"],
            fault: config.relay_fault,
        },
        stop_relay.clone(),
    );
    // Exports `dependency_up`; stops with the relay.
    let (probe_pool, probe_redis, probe_stop) = (pool.clone(), redis.clone(), stop_relay.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = confab_core::http::probe::watch(probe_pool, probe_redis) => {}
            _ = probe_stop.cancelled() => {}
        }
    });
    let (listener, addr) =
        confab_core::http::bind("auth", &config.common.host, config.common.port).await?;
    let throttle = throttle::AuthThrottle::new(
        redis.clone(),
        keys.clone(),
        config.throttle,
        config.clock.clone(),
    );
    let ctx = http::ApiContext {
        throttle,
        config: Arc::new(config),
        db: pool.clone(),
        redis,
        keys,
        tokens: Arc::new(tokens),
        passwords: Arc::new(passwords),
        outbox: signal,
        oidc: Arc::new(oidc),
        mailer: Arc::new(mailer),
    };
    http::admin::apply_admin_emails(&ctx).await?;
    let router = http::router(ctx);
    Ok(App {
        listener,
        addr,
        router,
        pool,
        relay,
        stop_relay,
    })
}

impl App {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until Ctrl-C or SIGTERM, then shut down gracefully.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(confab_core::http::shutdown_signal()).await
    }

    /// Serve until `shutdown` resolves, let in-flight requests finish, then
    /// stop the outbox relay and close the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let served = axum::serve(
            confab_core::http::nodelay(self.listener),
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        self.stop_relay.cancel();
        self.relay.join(RELAY_STOP_TIMEOUT).await;
        self.pool.close().await;
        tracing::info!("auth service stopped");
        Ok(served?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let env = Env::new();
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.common.port, 8001);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.refresh_grace, Duration::from_secs(5));
        assert_eq!(
            c.argon2,
            Argon2Settings {
                m_kib: 19456,
                t: 2,
                p: 1
            }
        );
    }

    #[test]
    fn small_ttls_are_accepted_and_zero_is_not() {
        let mut env = Env::new();
        env.set("CONFAB_ACCESS_TOKEN_TTL_SECS", "2");
        env.set("CONFAB_ISSUER", "test-issuer");
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.access_token_ttl, Duration::from_secs(2));
        assert_eq!(c.issuer, "test-issuer");
        env.set("CONFAB_ACCESS_TOKEN_TTL_SECS", "0");
        let err = Config::from_env(&env).unwrap_err();
        assert_eq!(err.var, "CONFAB_ACCESS_TOKEN_TTL_SECS");
    }

    #[test]
    fn bad_argon2_parameters_name_their_variable() {
        let mut env = Env::new();
        env.set("CONFAB_ARGON2_T", "0");
        assert_eq!(Config::from_env(&env).unwrap_err().var, "CONFAB_ARGON2_T");
        let mut env = Env::new();
        env.set("CONFAB_ARGON2_M_KIB", "1");
        assert_eq!(
            Config::from_env(&env).unwrap_err().var,
            "CONFAB_ARGON2_M_KIB"
        );
        let mut env = Env::new();
        env.set("CONFAB_COOKIE_SECURE", "maybe");
        assert_eq!(
            Config::from_env(&env).unwrap_err().var,
            "CONFAB_COOKIE_SECURE"
        );
    }
}
