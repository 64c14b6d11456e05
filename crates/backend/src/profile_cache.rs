//! The Redis cache of profiles (`Keys::profile_cache`), versioned so that a
//! stale value can never win: an entry holds the profile and auth's profile
//! version it is at, and a write only lands if its version is newer than the
//! entry's. Whoever writes — a request filling the cache from the database,
//! or the event consumer after applying `user.updated` — and in whatever
//! order they finish, the entry ends at the newest version. Postgres stays
//! the record: the cache can be lost (or flushed) at any time.

use crate::{store::profiles::Profile, AppState};
use confab_core::ids::UserId;
use std::time::Duration;

/// How long an entry lives without being refreshed.
const TTL: Duration = Duration::from_secs(3600);
/// Bound on each cache round trip: a slow Redis makes the cache a miss, it
/// never holds up a request for long.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Set `v` and `body` unless the entry already holds this version or a
/// newer one. Returns 1 when written.
const PUT_IF_NEWER: &str = r"
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'body', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Store `profile` if it is newer than the cached one.
pub async fn put(state: &AppState, profile: &Profile) -> Result<bool, crate::Error> {
    let body = serde_json::to_string(profile).map_err(std::io::Error::from)?;
    let mut conn = state.redis.clone();
    let script = redis::Script::new(PUT_IF_NEWER);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(state.keys.profile_cache(profile.user_id))
        .arg(profile.version)
        .arg(body)
        .arg(TTL.as_secs());
    let written: i64 = confab_core::error::within(
        TIMEOUT,
        "writing the profile cache",
        invocation.invoke_async(&mut conn),
    )
    .await?;
    Ok(written == 1)
}

/// The cached profile, if any (a miss on any Redis trouble: the caller
/// reads the database).
pub async fn get(state: &AppState, user: UserId) -> Option<Profile> {
    let mut conn = state.redis.clone();
    let mut cmd = redis::cmd("HGET");
    cmd.arg(state.keys.profile_cache(user)).arg("body");
    let body: Option<String> = confab_core::error::within(
        TIMEOUT,
        "reading the profile cache",
        cmd.query_async(&mut conn),
    )
    .await
    .map_err(|e| tracing::warn!(error = %e, "profile cache unavailable"))
    .ok()?;
    serde_json::from_str(&body?).ok()
}

/// Drop the entry (the account is gone).
pub async fn forget(state: &AppState, user: UserId) -> Result<(), crate::Error> {
    let mut conn = state.redis.clone();
    let mut cmd = redis::cmd("DEL");
    cmd.arg(state.keys.profile_cache(user));
    confab_core::error::within(
        TIMEOUT,
        "dropping a profile cache entry",
        cmd.query_async::<i64>(&mut conn),
    )
    .await?;
    Ok(())
}

/// The profile, from the cache or else the database (then cached).
pub async fn load(state: &AppState, user: UserId) -> Result<Option<Profile>, crate::Error> {
    if let Some(p) = get(state, user).await {
        metrics::counter!("profile_cache_total", "outcome" => "hit").increment(1);
        return Ok(Some(p));
    }
    metrics::counter!("profile_cache_total", "outcome" => "miss").increment(1);
    let Some(profile) = crate::store::profiles::get(&state.db, user).await? else {
        return Ok(None);
    };
    // A read that raced with an update may carry the older version; the
    // script then refuses it, so the cache never goes back in time.
    if let Err(e) = put(state, &profile).await {
        tracing::warn!(error = %e, "could not fill the profile cache");
    }
    Ok(Some(profile))
}
