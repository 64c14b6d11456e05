//! Resuming: a reconnecting client says the last sequence number it saw in a
//! thread and gets everything after it — the stored messages from Postgres,
//! then, for a reply still being written, the pieces it has so far from the
//! live stream. Pieces that arrive later reach it live through the hub.

use super::{Chat, ChatEvent, Piece};
use crate::{domain::Status, error::Error, store};
use confab_core::ids::{ThreadId, UserId};

/// At most this many messages per resume; a client far behind asks again.
const RESUME_LIMIT: i64 = 1000;

impl Chat {
    pub async fn resume(
        &self,
        user: UserId,
        thread: ThreadId,
        after_seq: i64,
    ) -> Result<Vec<ChatEvent>, Error> {
        store::threads::get(&self.inner.db, user, thread)
            .await?
            .ok_or(Error::NotFound(
                "That conversation does not exist or was deleted.",
            ))?;
        let rows =
            store::messages::list_after(&self.inner.db, thread, after_seq, RESUME_LIMIT).await?;
        let mut events = Vec::with_capacity(rows.len());
        for m in rows {
            let streaming = m.status == Status::Streaming;
            let (id, seq) = (m.id, m.seq);
            events.push(ChatEvent::Stored { message: m });
            if streaming {
                for (index, text) in self.live_pieces(id).await? {
                    events.push(ChatEvent::Delta(Piece {
                        thread_id: thread,
                        message_id: id,
                        seq,
                        index,
                        text,
                        html: None,
                    }));
                }
            }
        }
        Ok(events)
    }
}
