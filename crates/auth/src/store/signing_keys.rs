use crate::{domain::NewSigningKey, error::Error};
use sqlx::PgPool;

/// Serialises key creation between auth instances starting at once
/// (the bytes of "confab-k").
const KEY_CREATION_LOCK: i64 = 0x636f_6e66_6162_2d6b;

#[derive(Debug, sqlx::FromRow)]
pub struct StoredKey {
    pub kid: String,
    pub private_pkcs8: Vec<u8>,
    pub public_key: Vec<u8>,
    pub active: bool,
}

/// Creates an active key unless one exists. The advisory lock makes
/// concurrent starts queue, so the second one sees the first one's key;
/// the partial unique index `signing_keys_one_active` backs this up.
pub async fn ensure_active(
    pool: &PgPool,
    generate: impl FnOnce() -> Result<NewSigningKey, Error>,
) -> Result<bool, Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(KEY_CREATION_LOCK)
        .execute(&mut *tx)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE active)")
            .fetch_one(&mut *tx)
            .await?;
    if exists {
        tx.commit().await?;
        return Ok(false);
    }
    let key = generate()?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_pkcs8, public_key, active) VALUES ($1, $2, $3, true)",
    )
    .bind(&key.kid)
    .bind(&key.private_pkcs8)
    .bind(&key.public_key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(kid = %key.kid, "created a new signing key");
    Ok(true)
}

/// Every key that is not retired: the active one first.
pub async fn published(pool: &PgPool) -> Result<Vec<StoredKey>, Error> {
    Ok(sqlx::query_as::<_, StoredKey>(
        "SELECT kid, private_pkcs8, public_key, active FROM signing_keys
         WHERE retired_at IS NULL
         ORDER BY active DESC, created_at DESC",
    )
    .fetch_all(pool)
    .await?)
}
