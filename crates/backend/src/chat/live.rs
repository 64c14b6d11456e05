//! The live stream of a reply being written (`<prefix>live:<message_id>`, a
//! Redis stream of its pieces), so a client that reconnects mid-reply gets
//! the pieces it missed. It lives an hour at most, and two minutes after the
//! reply ends (for late resumers); Postgres keeps the finished text.

use super::{fanout::Op, Chat};
use crate::error::Error;
use confab_core::ids::MessageId;
use redis::AsyncCommands;

/// How long a finished reply's live stream is kept for late resumers.
const TTL_AFTER_END_SECS: i64 = 120;
/// The longest a live stream lives (a reply never streams this long).
const MAX_TTL_SECS: i64 = 3600;

impl Chat {
    /// Append piece `index` of reply `id`. Queued, never awaited: while
    /// Redis is away the reply still completes and is stored; only live
    /// pieces degrade (see `fanout`).
    pub(super) fn append_live(&self, id: MessageId, index: u64, text: &str) {
        self.inner.fanout.queue(Op::Append {
            key: self.inner.keys.live_stream(id),
            index,
            text: text.to_string(),
            ttl: (index == 0).then_some(MAX_TTL_SECS),
        });
    }

    /// The reply ended: keep its live stream only briefly.
    pub(super) fn end_live(&self, id: MessageId) {
        self.inner.fanout.queue(Op::Expire {
            key: self.inner.keys.live_stream(id),
            secs: TTL_AFTER_END_SECS,
        });
    }

    /// The reply's conversation was deleted while it was written: its
    /// pieces go at once.
    pub(super) fn drop_live(&self, id: MessageId) {
        self.inner.fanout.queue(Op::Del {
            key: self.inner.keys.live_stream(id),
        });
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
