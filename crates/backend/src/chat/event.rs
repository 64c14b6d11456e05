//! What the chat domain tells a user's clients, on every instance: a message
//! was stored, a reply grew, finished or failed. Events travel between
//! instances as JSON on the user's Redis channel (see `fanout`); the socket
//! gateway turns each into the frame its clients read.

use crate::store::{messages::Message, profiles::Profile};
use confab_core::ids::{MessageId, ThreadId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A message as stored: a question just sent, or (on resume) any
    /// message, a reply still streaming included.
    Stored { message: Message },
    /// The next piece of a reply being written.
    Delta(Piece),
    /// The reply is complete and stored with this content.
    Completed {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        content: String,
    },
    /// The user stopped the reply; it is stored with what it had.
    Stopped {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        content: String,
    },
    /// Threads were deleted (on any device): clients drop them at once.
    ThreadsDeleted { thread_ids: Vec<ThreadId> },
    /// A reply failed (or could not start), with a specific code and a
    /// sentence for the user.
    Failed {
        thread_id: ThreadId,
        /// The failed reply, or the question whose reply could not start;
        /// absent when there is nothing to retry.
        message_id: Option<MessageId>,
        code: String,
        message: String,
        retryable: bool,
        /// What the reply had written before it failed (kept, shown as
        /// incomplete).
        #[serde(default)]
        partial: String,
        /// The generation's id, as in the server's log line.
        #[serde(default)]
        request_id: Option<uuid::Uuid>,
    },
    /// Events for this user were lost on their way through Redis (it was
    /// slow or away): every instance closes the user's sockets with 4009 so
    /// the clients reconnect and resume from Postgres.
    Resync,
    /// The user's profile changed (in auth; the backend applied the event):
    /// open pages show the new name and picture in place.
    ProfileUpdated { profile: Profile },
    /// The user's plan changed (the backend applied `plan.changed`): open
    /// pages show the new limits and lift a refusal in place.
    PlanChanged { plan: crate::plans::PlanView },
}

/// One piece of a reply being written (the socket's `delta` frame has
/// exactly these fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub thread_id: ThreadId,
    pub message_id: MessageId,
    pub seq: i64,
    /// Position of this piece in the reply (0, 1, …): a client that hears a
    /// piece twice (live and on resume) applies it once.
    pub index: u64,
    pub text: String,
    /// Now and then (a few times a second), the whole reply so far rendered
    /// and sanitised like a finished one, so clients show Markdown while it
    /// streams without rendering untrusted text themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}
