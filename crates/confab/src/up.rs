//! `confab up`: the whole product on one machine with one command.
//!
//! With nothing configured it starts private PostgreSQL and Redis instances
//! from the machine's server binaries in a data folder (reused next time),
//! migrates, then runs auth, backend and web as child processes of this same
//! binary — each its own process, as in production — and stops everything on
//! Ctrl-C.

use anyhow::{bail, Context};
use confab_core::{clock, config::Env};
use confab_infra::{PrivatePostgres, PrivateRedis};
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

struct Service {
    name: &'static str,
    child: Child,
}

pub async fn run(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let env = Env::new();
    let data_dir = data_dir
        .or_else(|| env.opt_string("CONFAB_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".confab"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data folder {}", data_dir.display()))?;

    // The backend finds the default local model in the data folder's models/.
    let mut extra_env: Vec<(String, String)> =
        vec![("CONFAB_DATA_DIR".into(), data_dir.display().to_string())];
    let postgres = match env.opt_string("CONFAB_DATABASE_URL") {
        Some(_) => None,
        None => {
            eprintln!(
                "starting a private PostgreSQL in {}",
                data_dir.join("postgres").display()
            );
            let pg = tokio::task::spawn_blocking({
                let dir = data_dir.join("postgres");
                move || PrivatePostgres::start(&dir)
            })
            .await??;
            extra_env.push(("CONFAB_DATABASE_URL".into(), pg.url.clone()));
            Some(pg)
        }
    };
    let mut redis = None;
    let result = match env.opt_string("CONFAB_REDIS_URL") {
        Some(_) => Ok(()),
        None => PrivateRedis::start(&data_dir.join("redis"))
            .map(|r| {
                extra_env.push(("CONFAB_REDIS_URL".into(), r.url.clone()));
                redis = Some(r);
            })
            .map_err(anyhow::Error::from),
    };
    // Whatever fails from here on, the private servers are stopped below.
    let result = match result {
        Ok(()) => run_services(&extra_env).await,
        Err(e) => Err(e),
    };

    if let Some(r) = redis.as_mut() {
        r.stop();
    }
    if let Some(pg) = postgres {
        if let Err(e) = pg.stop() {
            eprintln!("stopping PostgreSQL: {e}");
        }
    }
    result
}

async fn run_services(extra_env: &[(String, String)]) -> anyhow::Result<()> {
    let mut env = Env::new();
    for (k, v) in extra_env {
        env.set(k, v.clone());
    }
    super::migrate(&env).await?;

    let exe = std::env::current_exe().context("locating the confab binary")?;
    let mut services: Vec<Service> = Vec::new();
    let start = |name: &'static str,
                 peers: &[(&str, &str)],
                 services: &mut Vec<Service>|
     -> anyhow::Result<String> {
        let mut child = Command::new(&exe)
            .arg(name)
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .envs(peers.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child
            .stdout
            .take()
            .with_context(|| format!("{name}'s stdout was not captured"))?;
        services.push(Service { name, child });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) if v["event"] == "listening" => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(v["url"].as_str().unwrap_or_default().to_string());
                        }
                    }
                    _ => println!("{line}"),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .with_context(|| format!("{name} did not start; see its log above"))
    };

    let outcome = async {
        // Each service is told where the ones it talks to actually listen
        // (ports may be configured, or 0).
        let auth = start("auth", &[], &mut services)?;
        let backend = start("backend", &[("CONFAB_AUTH_URL", &auth)], &mut services)?;
        let web = start(
            "web",
            &[("CONFAB_AUTH_URL", &auth), ("CONFAB_BACKEND_URL", &backend)],
            &mut services,
        )?;
        let web_local = web.replace("127.0.0.1", "localhost");
        eprintln!("\n  Confab is running at {web_local}\n  (auth {auth}, backend {backend}; Ctrl-C stops everything)\n");
        println!("{}", serde_json::json!({"event": "ready", "url": web_local}));
        // Wait for Ctrl-C, or for a service to exit on its own.
        loop {
            tokio::select! {
                _ = confab_core::http::shutdown_signal() => return Ok(()),
                _ = clock::sleep(Duration::from_millis(500)) => {}
            }
            for s in services.iter_mut() {
                if let Some(status) = s.child.try_wait()? {
                    bail!("{} exited unexpectedly ({status}); stopping Confab", s.name);
                }
            }
        }
    }
    .await;

    stop_all(&mut services);
    outcome
}

/// Ask each service to stop (SIGTERM: graceful shutdown), then wait for it;
/// kill whatever is still running after a grace period.
fn stop_all(services: &mut [Service]) {
    for s in services.iter().rev() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(s.child.id().to_string())
            .status();
    }
    let deadline = clock::instant() + Duration::from_secs(10);
    for s in services.iter_mut().rev() {
        loop {
            match s.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if clock::instant() > deadline => {
                    eprintln!("{} did not stop in time; killing it", s.name);
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                    break;
                }
                Ok(None) => clock::blocking_sleep(Duration::from_millis(50)),
            }
        }
    }
}
