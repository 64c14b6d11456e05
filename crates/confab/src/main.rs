//! `confab`: one binary, one subcommand per service, plus `up` (everything on
//! one box) and `migrate`.

mod up;

use anyhow::Context;
use clap::{Parser, Subcommand};
use confab_core::config::Env;

/// mimalloc instead of glibc's malloc, for every service. Under glibc a
/// long-running service kept what it once needed: auth held over 1 GB after
/// a burst of log-ins (each Argon2 hash takes 19 MiB, freed into per-thread
/// arenas that are never given back) and the backend hundreds of MB after
/// its sockets closed. mimalloc returns freed pages to the system, once the
/// thread that owns them collects them (`allocator.rs`; docs/benchmarks.md
/// has the figures). The `mimalloc` feature (on by default) chooses it; heap
/// profiles are taken without it.
#[cfg(feature = "mimalloc")]
mod allocator;

#[derive(Parser)]
#[command(name = "confab", version, about = "Confab: self-hosted AI chat")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the auth service (users, sessions, tokens). Default port 8001.
    Auth {
        /// Overrides CONFAB_AUTH_PORT (0 picks a free port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run the backend (threads, messages, the chat socket). Default port 8000.
    Backend {
        /// Overrides CONFAB_BACKEND_PORT (0 picks a free port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run the web server (pages and the same-origin proxy). Default port 3000.
    Web {
        /// Overrides CONFAB_WEB_PORT (0 picks a free port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Apply both services' database migrations and exit.
    Migrate,
    /// Start everything on this machine: private PostgreSQL and Redis (unless
    /// CONFAB_DATABASE_URL / CONFAB_REDIS_URL are set), then auth, backend and web.
    Up {
        /// Where the private PostgreSQL and Redis keep their files
        /// (CONFAB_DATA_DIR, default ./.confab).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    #[cfg(feature = "mimalloc")]
    runtime.on_thread_park(allocator::on_park);
    let runtime = runtime.build().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Auth { port } => {
                confab_core::telemetry::init("auth")?;
                let env = with_port(port, "CONFAB_AUTH_PORT");
                let config = confab_auth::Config::from_env(&env)?;
                let app = confab_auth::build(config).await.context("auth service")?;
                app.run().await.context("auth service")?;
            }
            Command::Backend { port } => {
                confab_core::telemetry::init("backend")?;
                let env = with_port(port, "CONFAB_BACKEND_PORT");
                let config = confab_backend::Config::from_env(&env)?;
                let app = confab_backend::build(config).await.context("backend")?;
                app.run().await.context("backend")?;
            }
            Command::Web { port } => {
                confab_core::telemetry::init("web")?;
                let env = with_port(port, "CONFAB_WEB_PORT");
                let config = confab_web::Config::from_env(&env)?;
                confab_web::run(config).await.context("web server")?;
            }
            Command::Migrate => {
                confab_core::telemetry::init("migrate")?;
                let env = Env::new();
                migrate(&env).await?;
                println!("migrations applied");
            }
            Command::Up { data_dir } => {
                confab_core::telemetry::init("up")?;
                up::run(data_dir).await?;
            }
        }
        Ok(())
    })
}

fn with_port(port: Option<u16>, var: &str) -> Env {
    let mut env = Env::new();
    if let Some(p) = port {
        env.set(var, p.to_string());
    }
    env
}

pub(crate) async fn migrate(env: &Env) -> anyhow::Result<()> {
    let auth = confab_auth::Config::from_env(env)?;
    confab_auth::migrate(&auth)
        .await
        .context("auth migrations")?;
    let backend = confab_backend::Config::from_env(env)?;
    confab_backend::migrate(&backend)
        .await
        .context("backend migrations")?;
    Ok(())
}
