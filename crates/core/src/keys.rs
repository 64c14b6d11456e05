//! The Redis key layout. Every key and channel starts with the configured
//! prefix, so several deployments (or parallel test runs) share one Redis
//! without seeing each other.

use crate::ids::{SessionId, UserId};
use std::fmt::Display;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The durable stream of cross-service events.
    pub fn events_stream(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Events no consumer could apply, moved aside with the reason.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}events:dead", self.prefix)
    }

    /// The backend's cached profile of one user (a hash: `v`, `body`).
    pub fn profile_cache(&self, user: UserId) -> String {
        format!("{}profile:{user}", self.prefix)
    }

    /// Present while a session is revoked (kept for an access token's life).
    pub fn revoked(&self, sid: SessionId) -> String {
        format!("{}revoked:{sid}", self.prefix)
    }

    /// Pub/sub channel announcing revoked sessions to every instance.
    pub fn revocations_channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    /// Pub/sub channel carrying live chat events for one user's sockets.
    pub fn user_channel(&self, user: UserId) -> String {
        format!("{}user:{user}", self.prefix)
    }

    /// Pub/sub channel asking whichever instance writes a reply to stop it
    /// (the payload is the reply's message id).
    pub fn stops_channel(&self) -> String {
        format!("{}stops", self.prefix)
    }

    /// Pub/sub channel on which each backend instance hears its own
    /// heartbeat: proof that its subscription and its publishing both work.
    pub fn heartbeat_channel(&self) -> String {
        format!("{}heartbeat", self.prefix)
    }

    pub fn user_channel_pattern(&self) -> String {
        format!("{}user:*", self.prefix)
    }

    /// The live stream of one reply being generated (its deltas, keyed by
    /// the reply's message id), read by a resuming client.
    pub fn live_stream(&self, thread: impl Display) -> String {
        format!("{}live:{thread}", self.prefix)
    }

    /// A user's plan counters (`rate`: the GCRA arrival time; `quota`: the
    /// sliding window of admitted messages; `running`: the generations in
    /// flight). The user id is a hash tag, so a cluster keeps one user's
    /// keys in one slot (the admission script touches all three).
    pub fn plan_limit(&self, user: UserId, what: &str) -> String {
        format!("{}limit:{{{user}}}:{what}", self.prefix)
    }

    /// An auth throttle's GCRA key: `kind` (`login:ip`, `login:account`, …)
    /// and the subject (a network or a hash, never a raw email).
    pub fn throttle(&self, kind: &str, subject: &str) -> String {
        format!("{}throttle:{kind}:{subject}", self.prefix)
    }

    /// A `SCAN … MATCH` pattern for every key under the prefix whose name
    /// contains `id`: per-user keys of any kind (caches, counters), so
    /// account deletion finds them all, including ones added later.
    pub fn naming_pattern(&self, id: impl Display) -> String {
        let mut pattern = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        format!("{pattern}*{id}*")
    }
}

#[cfg(test)]
mod naming_tests {
    #[test]
    fn the_prefix_is_matched_literally() {
        let keys = super::Keys::new("t[1]*:");
        assert_eq!(keys.naming_pattern("abc"), "t\\[1\\]\\*:*abc*");
    }
}
