//! Session revocation in Redis, the one way every service reads and writes
//! it: the entry `<prefix>revoked:<sid>` (kept for an access token's life)
//! that every request checks, and the pub/sub message on which every backend
//! closes that session's sockets. Both carry the [`RevokeReason`], so a page
//! whose session ended can tell the person why.

use crate::{
    error::{within, InfraError},
    ids::SessionId,
    keys::Keys,
};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr, time::Duration};

/// Why a session ended. Stored with the session in auth's database, written
/// as the value of the Redis entry, sent with the pub/sub announcement and
/// as the reason of the socket's close frame, so every page of the session
/// can say what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The device signed itself out.
    SignedOut,
    /// Another of the user's devices ended this one (the session list).
    SignedOutElsewhere,
    /// "Sign out everywhere".
    SignedOutEverywhere,
    /// A rotated refresh token came back: possibly stolen.
    RefreshTokenReuse,
    /// The password changed; every other session ends.
    PasswordChange,
    /// The account was deleted.
    AccountDeleted,
    /// An administrator disabled the account.
    AccountDisabled,
    /// The account's role changed (its tokens carry the old one).
    RoleChanged,
}

impl RevokeReason {
    pub const ALL: [RevokeReason; 8] = [
        RevokeReason::SignedOut,
        RevokeReason::SignedOutElsewhere,
        RevokeReason::SignedOutEverywhere,
        RevokeReason::RefreshTokenReuse,
        RevokeReason::PasswordChange,
        RevokeReason::AccountDeleted,
        RevokeReason::AccountDisabled,
        RevokeReason::RoleChanged,
    ];

    /// The stable code on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::SignedOut => "signed_out",
            RevokeReason::SignedOutElsewhere => "signed_out_elsewhere",
            RevokeReason::SignedOutEverywhere => "signed_out_everywhere",
            RevokeReason::RefreshTokenReuse => "refresh_token_reuse",
            RevokeReason::PasswordChange => "password_change",
            RevokeReason::AccountDeleted => "account_deleted",
            RevokeReason::AccountDisabled => "account_disabled",
            RevokeReason::RoleChanged => "role_changed",
        }
    }
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown revocation reason")]
pub struct UnknownReason;

impl FromStr for RevokeReason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownReason)
    }
}

/// What the revocation channel carries: `<sid> <reason>`.
pub fn announcement(sid: SessionId, reason: RevokeReason) -> String {
    format!("{sid} {reason}")
}

/// Read an announcement. A bare sid (an older auth) or an unknown reason
/// still revokes: the reason only words the message, the sid is what counts.
pub fn parse_announcement(payload: &str) -> Option<(SessionId, RevokeReason)> {
    let mut parts = payload.split_whitespace();
    let sid = parts.next()?.parse().ok()?;
    let reason = parts
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(RevokeReason::SignedOut);
    Some((sid, reason))
}

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
    Ok(revoked_reason(redis, keys, sid).await?.is_some())
}

/// Why this session was revoked; `None` while it is not. (An entry whose
/// value is not a known reason still counts as revoked.)
pub async fn revoked_reason(
    redis: &ConnectionManager,
    keys: &Keys,
    sid: SessionId,
) -> Result<Option<RevokeReason>, InfraError> {
    let mut conn = redis.clone();
    let mut cmd = redis::cmd("GET");
    cmd.arg(keys.revoked(sid));
    let value = cmd.query_async::<Option<String>>(&mut conn);
    let value = within(CHECK_TIMEOUT, "the revocation check", value).await?;
    Ok(value.map(|v| v.parse().unwrap_or(RevokeReason::SignedOut)))
}

/// Write the revocation entry (living `access_token_ttl` + [`MARGIN`]) and
/// announce it, in one round trip. Idempotent, so safe to repeat.
pub async fn announce(
    redis: &ConnectionManager,
    keys: &Keys,
    sid: SessionId,
    reason: RevokeReason,
    access_token_ttl: Duration,
) -> Result<(), InfraError> {
    let ttl = access_token_ttl + MARGIN;
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(keys.revoked(sid))
        .arg(reason.as_str())
        .arg("EX")
        .arg(ttl.as_secs())
        .ignore()
        .cmd("PUBLISH")
        .arg(keys.revocations_channel())
        .arg(announcement(sid, reason))
        .ignore();
    let mut conn = redis.clone();
    within(
        ANNOUNCE_TIMEOUT,
        "announcing a revocation",
        pipe.query_async::<()>(&mut conn),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_announcements_parse() {
        for r in RevokeReason::ALL {
            assert_eq!(r.as_str().parse::<RevokeReason>(), Ok(r));
            let sid = SessionId::new();
            assert_eq!(parse_announcement(&announcement(sid, r)), Some((sid, r)));
        }
        let sid = SessionId::new();
        // A bare sid, or a reason from a newer version, still revokes.
        assert_eq!(
            parse_announcement(&sid.to_string()),
            Some((sid, RevokeReason::SignedOut))
        );
        assert_eq!(
            parse_announcement(&format!("{sid} brand_new")),
            Some((sid, RevokeReason::SignedOut))
        );
        assert_eq!(parse_announcement("not-a-sid signed_out"), None);
        assert_eq!(parse_announcement(""), None);
    }
}
