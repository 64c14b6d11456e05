//! The backend's values, parsed once at the edge ("parse, don't validate"):
//! once the socket or an endpoint holds a `ClientMsgId`, a `MessageText` or a
//! `ThreadTitle`, nothing downstream checks it again; a message's `Role` and
//! `Status` are enums in Rust and text in the database.

mod message;
mod thread;

pub use message::{ClientMsgId, MessageText, Role, Status};
pub use thread::ThreadTitle;
