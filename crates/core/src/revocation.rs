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
    let key = keys.revoked(sid);
    let value = inflight::shared(&key, || async {
        let mut conn = redis.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        within(
            CHECK_TIMEOUT,
            "the revocation check",
            cmd.query_async::<Option<String>>(&mut conn),
        )
        .await
    })
    .await?;
    Ok(value.map(|v| v.parse().unwrap_or(RevokeReason::SignedOut)))
}

/// Checks of one session that overlap share one Redis `GET`: a page that
/// fires a burst of requests (or 100 messages at once) asks Redis once, not
/// once per request, so the burst does not queue behind itself and run into
/// [`CHECK_TIMEOUT`]. A check that starts after the shared one was answered
/// asks again: nothing is remembered past the moment of the answer.
mod inflight {
    use crate::error::InfraError;
    use std::{
        collections::HashMap,
        future::Future,
        sync::{Arc, LazyLock, Mutex},
    };
    use tokio::sync::OnceCell;

    /// A shared check's outcome: the value, or "it failed" (the one that
    /// ran it returns its error; the others ask on their own).
    type Answer = Result<Option<String>, ()>;
    type Cell = Arc<OnceCell<Answer>>;

    static INFLIGHT: LazyLock<Mutex<HashMap<String, Cell>>> = LazyLock::new(Default::default);

    fn table() -> std::sync::MutexGuard<'static, HashMap<String, Cell>> {
        INFLIGHT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn shared<F, Fut>(key: &str, get: F) -> Result<Option<String>, InfraError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<String>, InfraError>>,
    {
        let cell = Arc::clone(table().entry(key.to_owned()).or_default());
        let _leaving = Leaving { key, cell: &cell };
        let mut own_error = None;
        // If the caller running `get` is dropped, another waiter runs it.
        let answer = cell
            .get_or_init(|| async {
                get().await.map_err(|e| {
                    own_error = Some(e);
                })
            })
            .await
            .clone();
        match (answer, own_error) {
            (Ok(value), _) => Ok(value),
            (Err(()), Some(e)) => Err(e),
            (Err(()), None) => get().await,
        }
    }

    /// Takes the entry out of the table when its check was answered (later
    /// checks ask again), or when the last one waiting on it gives up (a
    /// dropped request leaves nothing behind).
    struct Leaving<'a> {
        key: &'a str,
        cell: &'a Cell,
    }

    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            let mut table = table();
            let ours = table
                .get(self.key)
                .is_some_and(|c| Arc::ptr_eq(c, self.cell));
            // The table's reference and ours: nobody else waits on it.
            if ours && (self.cell.initialized() || Arc::strong_count(self.cell) == 2) {
                table.remove(self.key);
            }
        }
    }

    #[cfg(test)]
    pub fn pending(key: &str) -> bool {
        table().contains_key(key)
    }
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
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    #[tokio::test]
    async fn overlapping_checks_share_one_get_and_later_ones_ask_again() {
        let gets = Arc::new(AtomicUsize::new(0));
        let (release, wait) = tokio::sync::watch::channel(false);
        let get = {
            let (gets, wait) = (Arc::clone(&gets), wait.clone());
            move || {
                let (gets, mut wait) = (Arc::clone(&gets), wait.clone());
                async move {
                    gets.fetch_add(1, Ordering::SeqCst);
                    let _ = wait.wait_for(|go| *go).await;
                    Ok(Some("signed_out".to_string()))
                }
            }
        };
        let key = "test:revoked:shared";
        let checks: Vec<_> = (0..50)
            .map(|_| {
                tokio::spawn({
                    let get = get.clone();
                    async move { inflight::shared(key, get).await.unwrap() }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        for c in checks {
            assert_eq!(c.await.unwrap().as_deref(), Some("signed_out"));
        }
        assert_eq!(
            gets.load(Ordering::SeqCst),
            1,
            "one GET for 50 overlapping checks"
        );
        assert!(
            !inflight::pending(key),
            "nothing remembered after the answer"
        );
        // A later check asks again.
        inflight::shared(key, get).await.unwrap();
        assert_eq!(gets.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_shared_check_fails_only_its_own_caller_and_is_not_remembered() {
        let calls = Arc::new(AtomicUsize::new(0));
        let get = || {
            let calls = Arc::clone(&calls);
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(InfraError::Timeout("the revocation check"))
                } else {
                    Ok(None)
                }
            }
        };
        let key = "test:revoked:failing";
        assert!(matches!(
            inflight::shared(key, get).await,
            Err(InfraError::Timeout(_))
        ));
        assert_eq!(inflight::shared(key, get).await.unwrap(), None);
        // A dropped check leaves nothing behind that answers for it.
        let never = || std::future::pending::<Result<Option<String>, InfraError>>();
        let dropped = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            inflight::shared("test:revoked:dropped", never),
        )
        .await;
        assert!(dropped.is_err());
        assert!(!inflight::pending("test:revoked:dropped"));
        assert_eq!(
            inflight::shared("test:revoked:dropped", || async { Ok(None) })
                .await
                .unwrap(),
            None
        );
    }

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
