//! What presenting a refresh token earns: the rotation rules (RFC 9700
//! §4.14.2) as a pure decision, so they can be tested without a database.
//! `http/sessions.rs` reads the token's state (locked, so concurrent
//! refreshes of one token are decided one after the other), asks
//! [`RefreshPolicy::decide`], and carries out the answer.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// What the decision depends on, as stored for the presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedState {
    pub expires_at: DateTime<Utc>,
    /// When it was rotated, if it was.
    pub used_at: Option<DateTime<Utc>>,
    /// For a rotated token: whether its successor is still the session's
    /// newest token (not rotated itself). Only then is this token the
    /// *immediately* previous one, the only one the grace applies to.
    pub successor_is_newest: bool,
    pub session_revoked: bool,
}

/// The answer to one refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// An unused token: issue a successor and mark this one used.
    Rotate,
    /// The immediately previous token, rotated moments ago (two tabs
    /// refreshing at once, or a client retrying after a lost response): the
    /// answer is the *same* successor it was rotated to (and a fresh access
    /// token), so the session stays one chain. Nothing is revoked or stored.
    SameSuccessor,
    /// A rotated token came back after the grace window, or a token older
    /// than the immediately previous one came back at all: either it was
    /// stolen or the thief already rotated it. The two holders cannot be
    /// told apart, so the session ends for both.
    ReuseDetected,
    /// The session was signed out: nothing to refresh.
    SessionRevoked,
    /// The token's lifetime is over: sign in again.
    Expired,
}

/// The refresh rules of this deployment (`CONFAB_REFRESH_TOKEN_TTL_SECS`,
/// `CONFAB_REFRESH_GRACE_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Each token's lifetime; it restarts with every rotation (sliding).
    pub ttl: Duration,
    /// How long after its rotation the immediately previous token still
    /// earns its (same) successor.
    pub grace: Duration,
}

impl RefreshPolicy {
    /// Decide what presenting a token in `state` at `now` earns. A revoked
    /// session wins over everything, then expiry, then the rotation state.
    pub fn decide(&self, state: &PresentedState, now: DateTime<Utc>) -> Refresh {
        if state.session_revoked {
            return Refresh::SessionRevoked;
        }
        if state.expires_at <= now {
            return Refresh::Expired;
        }
        match state.used_at {
            None => Refresh::Rotate,
            Some(used_at) if state.successor_is_newest && now - used_at <= self.grace_window() => {
                Refresh::SameSuccessor
            }
            Some(_) => Refresh::ReuseDetected,
        }
    }

    /// When a token issued at `now` expires.
    pub fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        now.checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// A grace too large to represent counts as none (fail safe).
    fn grace_window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RefreshPolicy = RefreshPolicy {
        ttl: Duration::from_secs(3600),
        grace: Duration::from_secs(5),
    };

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    fn token(used_secs_ago: Option<i64>) -> PresentedState {
        PresentedState {
            expires_at: now() + secs(60),
            used_at: used_secs_ago.map(|s| now() - secs(s)),
            successor_is_newest: true,
            session_revoked: false,
        }
    }

    #[test]
    fn an_unused_token_rotates() {
        assert_eq!(POLICY.decide(&token(None), now()), Refresh::Rotate);
    }

    #[test]
    fn the_previous_token_within_the_grace_window_gets_the_same_successor() {
        assert_eq!(
            POLICY.decide(&token(Some(0)), now()),
            Refresh::SameSuccessor
        );
        assert_eq!(
            POLICY.decide(&token(Some(3)), now()),
            Refresh::SameSuccessor
        );
        // The window includes its last second.
        assert_eq!(
            POLICY.decide(&token(Some(5)), now()),
            Refresh::SameSuccessor
        );
    }

    #[test]
    fn an_older_token_is_reuse_even_within_the_grace_window() {
        // Its successor was rotated already: the chain moved on without it,
        // so whoever presents it is not the one who holds the chain's head.
        let mut t = token(Some(1));
        t.successor_is_newest = false;
        assert_eq!(POLICY.decide(&t, now()), Refresh::ReuseDetected);
    }

    #[test]
    fn a_token_rotated_longer_ago_is_reuse() {
        assert_eq!(
            POLICY.decide(&token(Some(6)), now()),
            Refresh::ReuseDetected
        );
        let no_grace = RefreshPolicy {
            grace: Duration::ZERO,
            ..POLICY
        };
        assert_eq!(
            no_grace.decide(&token(Some(1)), now()),
            Refresh::ReuseDetected
        );
    }

    #[test]
    fn an_expired_token_is_refused_whatever_its_rotation_state() {
        for used in [None, Some(1), Some(100)] {
            let mut t = token(used);
            t.expires_at = now();
            assert_eq!(POLICY.decide(&t, now()), Refresh::Expired, "{used:?}");
        }
    }

    #[test]
    fn a_revoked_session_wins_over_everything() {
        for used in [None, Some(1), Some(100)] {
            let mut t = token(used);
            t.session_revoked = true;
            assert_eq!(POLICY.decide(&t, now()), Refresh::SessionRevoked);
            t.expires_at = now() - secs(1);
            assert_eq!(POLICY.decide(&t, now()), Refresh::SessionRevoked);
        }
    }

    #[test]
    fn the_lifetime_slides_from_each_issue_and_never_overflows() {
        assert_eq!(POLICY.expiry(now()), now() + secs(3600));
        let forever = RefreshPolicy {
            ttl: Duration::MAX,
            ..POLICY
        };
        assert_eq!(forever.expiry(now()), DateTime::<Utc>::MAX_UTC);
    }
}
