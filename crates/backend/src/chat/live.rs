//! The live stream of a reply being written (`<prefix>live:<message_id>`, a
//! Redis stream of its pieces), so a client that reconnects mid-reply gets
//! the pieces it missed. It lives an hour at most, and two minutes after the
//! reply ends (for late resumers); Postgres keeps the finished text.

use super::Chat;
use crate::error::Error;
use confab_core::ids::MessageId;
use redis::AsyncCommands;

/// How long a finished reply's live stream is kept for late resumers.
const TTL_AFTER_END_SECS: i64 = 120;
/// The longest a live stream lives (a reply never streams this long).
const MAX_TTL_SECS: i64 = 3600;

impl Chat {
    /// Append piece `index` of reply `id`. Best effort: while Redis is away
    /// the reply still completes and is stored; only live pieces degrade.
    pub(super) async fn append_live(&self, id: MessageId, index: u64, text: &str) {
        let mut redis = self.inner.redis.clone();
        let key = self.inner.keys.live_stream(id);
        let added: Result<String, _> = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("i")
            .arg(index)
            .arg("t")
            .arg(text)
            .query_async(&mut redis)
            .await;
        if let Err(e) = added {
            tracing::warn!(error = %e, "could not append to the live stream");
        } else if index == 0 {
            let _: Result<(), _> = redis.expire(&key, MAX_TTL_SECS).await;
        }
    }

    /// The reply ended: keep its live stream only briefly.
    pub(super) async fn end_live(&self, id: MessageId) {
        let mut redis = self.inner.redis.clone();
        let _: Result<(), _> = redis
            .expire(self.inner.keys.live_stream(id), TTL_AFTER_END_SECS)
            .await;
    }

    /// The reply's conversation was deleted while it was written: its
    /// pieces go at once.
    pub(super) async fn drop_live(&self, id: MessageId) {
        let mut redis = self.inner.redis.clone();
        let _: Result<(), _> = redis.del(self.inner.keys.live_stream(id)).await;
    }

    /// The pieces of reply `id` so far, as `(index, text)`.
    pub(super) async fn live_pieces(&self, id: MessageId) -> Result<Vec<(u64, String)>, Error> {
        let mut redis = self.inner.redis.clone();
        let entries: redis::streams::StreamRangeReply =
            redis.xrange_all(self.inner.keys.live_stream(id)).await?;
        Ok(entries
            .ids
            .into_iter()
            .filter_map(|e| Some((e.get("i")?, e.get("t")?)))
            .collect())
    }
}
