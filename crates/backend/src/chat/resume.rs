//! Resuming: a reconnecting client says the last sequence number it saw in a
//! thread and gets everything after it — the stored messages from Postgres,
//! then, for a reply still being written, the pieces it has so far from the
//! live stream. Pieces that arrive later reach it live through the hub.
//!
//! A resume answers one page of at most [`RESUME_PAGE`] messages and says
//! where it stopped and whether there is more; a client far behind asks again
//! from there, so a thread of any length resumes, a page at a time, without
//! one answer holding thousands of messages.

use super::{Chat, ChatEvent, Piece};
use crate::{domain::Status, error::Error, store};
use confab_core::ids::{ThreadId, UserId};

/// Messages per resume answer.
pub const RESUME_PAGE: i64 = 500;

/// One page of a resume.
#[derive(Debug)]
pub struct Resumed {
    pub thread_id: ThreadId,
    /// The stored messages after the requested seq (each streaming one
    /// followed by its pieces so far), oldest first.
    pub events: Vec<ChatEvent>,
    /// The seq of the last message in this page (the requested `after_seq`
    /// when the page is empty): where the next page starts.
    pub through_seq: i64,
    /// Whether messages after `through_seq` exist: ask again from there.
    pub more: bool,
}

impl Chat {
    pub async fn resume(
        &self,
        user: UserId,
        thread: ThreadId,
        after_seq: i64,
    ) -> Result<Resumed, Error> {
        self.resume_page(user, thread, after_seq, RESUME_PAGE).await
    }

    pub(crate) async fn resume_page(
        &self,
        user: UserId,
        thread: ThreadId,
        after_seq: i64,
        page: i64,
    ) -> Result<Resumed, Error> {
        store::threads::get(&self.inner.db, user, thread)
            .await?
            .ok_or(Error::NotFound(
                "That conversation does not exist or was deleted.",
            ))?;
        let mut rows =
            store::messages::list_after(&self.inner.db, thread, after_seq, page + 1).await?;
        let more = rows.len() as i64 > page;
        rows.truncate(page as usize);
        let through_seq = rows.last().map_or(after_seq, |m| m.seq);
        let mut events = Vec::with_capacity(rows.len());
        for m in rows {
            let streaming = m.status == Status::Streaming;
            let (id, seq) = (m.id, m.seq);
            events.push(ChatEvent::Stored { message: m });
            if streaming {
                // Redis away: the message says it is streaming, its pieces
                // come live or with `done` (the database has the text then).
                let pieces = self.live_pieces(id).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, message = %id, "live pieces unavailable for a resume");
                    Vec::new()
                });
                for (index, text) in pieces {
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
        Ok(Resumed {
            thread_id: thread,
            events,
            through_seq,
            more,
        })
    }
}
