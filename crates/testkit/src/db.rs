//! Databases per test, cloned from templates migrated once per migration set.
//!
//! A template is named after a hash of its migrations, so changing a
//! migration builds a new one. It is built under a PostgreSQL advisory lock
//! into a temporary name and renamed when complete, so parallel test
//! processes never see a half-migrated template.

use confab_core::db::{quote_ident, with_database};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool};

/// The server the tests use (`CONFAB_TEST_DATABASE_URL`, default the local one).
pub fn admin_url() -> String {
    std::env::var("CONFAB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("CONFAB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct TestDatabases {
    pub auth_url: String,
    pub backend_url: String,
    /// Pools for assertions (read what the services wrote).
    pub auth: PgPool,
    pub backend: PgPool,
    names: Vec<String>,
}

fn migrations_hash(m: &sqlx::migrate::Migrator) -> String {
    let mut h = Sha256::new();
    for mig in m.iter() {
        h.update(mig.version.to_le_bytes());
        h.update(&*mig.checksum);
    }
    format!("{:x}", h.finalize())[..12].to_string()
}

async fn admin() -> PgConnection {
    let url = admin_url();
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is not reachable: {e}"))
}

async fn ensure_template(service: &str, migrator: &sqlx::migrate::Migrator) -> String {
    let name = format!("confab_tpl_{service}_{}", migrations_hash(migrator));
    let mut conn = admin().await;
    let lock_key = i64::from_le_bytes(
        Sha256::digest(name.as_bytes())[..8]
            .try_into()
            .expect("8 bytes"),
    );
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key)
        .execute(&mut conn)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .expect("query pg_database");
    if !exists {
        let building = format!("{name}_building");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&building)
        ))
        .execute(&mut conn)
        .await
        .expect("drop stale template");
        sqlx::query(&format!("CREATE DATABASE {}", quote_ident(&building)))
            .execute(&mut conn)
            .await
            .expect("create template");
        // One plain connection, closed explicitly: a pooled one can linger
        // after `close()` and would keep the database from being renamed.
        let mut mconn = PgConnection::connect(&with_database(&admin_url(), &building))
            .await
            .expect("template connection");
        migrator.run(&mut mconn).await.expect("migrate template");
        mconn.close().await.expect("close template connection");
        // Closing the pool ends our connections, but their server processes
        // exit a moment later, and a database with sessions cannot be
        // renamed: wait until the server reports none.
        let deadline = confab_core::clock::instant() + std::time::Duration::from_secs(10);
        loop {
            let sessions: i64 =
                // Autovacuum workers are not counted: the rename stops them itself.
                sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = $1 AND backend_type = 'client backend'",
                )
                    .bind(&building)
                    .fetch_one(&mut conn)
                    .await
                    .expect("query pg_stat_activity");
            if sessions == 0 {
                break;
            }
            if confab_core::clock::instant() >= deadline {
                let who: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT application_name, state, query FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&building)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                panic!("sessions on {building} did not end: {who:?}");
            }
            confab_core::clock::sleep(std::time::Duration::from_millis(10)).await;
        }
        sqlx::query(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(&name)
        ))
        .execute(&mut conn)
        .await
        .expect("rename template");
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key)
        .execute(&mut conn)
        .await
        .expect("unlock");
    let _ = conn.close().await;
    name
}

impl TestDatabases {
    pub async fn create(test: &str) -> Self {
        let tag: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(20)
            .collect::<String>()
            .to_lowercase();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut names = Vec::new();
        let mut urls = Vec::new();
        for (service, migrator) in [
            ("auth", &confab_auth::MIGRATOR),
            ("backend", &confab_backend::MIGRATOR),
        ] {
            let template = ensure_template(service, migrator).await;
            let name = format!("confab_t_{tag}_{}_{service}", &id[..8]);
            let mut conn = admin().await;
            sqlx::query(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(&template)
            ))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("clone {template}: {e}"));
            let _ = conn.close().await;
            urls.push(with_database(&admin_url(), &name));
            names.push(name);
        }
        let auth = PgPool::connect(&urls[0]).await.expect("auth pool");
        let backend = PgPool::connect(&urls[1]).await.expect("backend pool");
        Self {
            auth_url: urls[0].clone(),
            backend_url: urls[1].clone(),
            auth,
            backend,
            names,
        }
    }

    /// Drop this test's databases (called from `Drop`, so it runs its own
    /// small runtime on a helper thread).
    pub fn drop_now(&mut self) {
        let names = std::mem::take(&mut self.names);
        if names.is_empty() {
            return;
        }
        // The pools belong to the test's runtime, which is blocked while we
        // wait here, so they are not closed gracefully: FORCE ends their
        // connections server-side.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut conn = admin().await;
                for n in names {
                    let _ = sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&n)
                    ))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

impl Drop for TestDatabases {
    fn drop(&mut self) {
        self.drop_now();
    }
}
