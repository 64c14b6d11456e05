//! Session revocation in Redis, the one way every service reads and writes
//! it: the entry `<prefix>revoked:<sid>` (kept for an access token's life)
//! that every request checks, and the pub/sub message on which every backend
//! closes that session's sockets.

use crate::{
    error::{within, InfraError},
    ids::SessionId,
    keys::Keys,
};
use redis::aio::ConnectionManager;
use std::time::Duration;

/// How long the check may take. It fails closed: an error or a timeout is an
/// error for the caller, never "not revoked".
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long writing a revocation may take.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);
/// The entry outlives the session's last access token by this much, to
/// cover clock skew and verifier leeway.
pub const MARGIN: Duration = Duration::from_secs(60);

/// Is this session revoked?
pub async fn is_revoked(
    redis: &ConnectionManager,
    keys: &Keys,
    sid: SessionId,
) -> Result<bool, InfraError> {
    let mut conn = redis.clone();
    let mut cmd = redis::cmd("EXISTS");
    cmd.arg(keys.revoked(sid));
    let exists = cmd.query_async::<bool>(&mut conn);
    within(CHECK_TIMEOUT, "the revocation check", exists).await
}

/// Write the revocation entry (living `access_token_ttl` + [`MARGIN`]) and
/// announce it, in one round trip. Idempotent, so safe to repeat.
pub async fn announce(
    redis: &ConnectionManager,
    keys: &Keys,
    sid: SessionId,
    access_token_ttl: Duration,
) -> Result<(), InfraError> {
    let ttl = access_token_ttl + MARGIN;
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(keys.revoked(sid))
        .arg("1")
        .arg("EX")
        .arg(ttl.as_secs())
        .ignore()
        .cmd("PUBLISH")
        .arg(keys.revocations_channel())
        .arg(sid.to_string())
        .ignore();
    let mut conn = redis.clone();
    within(
        ANNOUNCE_TIMEOUT,
        "announcing a revocation",
        pipe.query_async::<()>(&mut conn),
    )
    .await
}
