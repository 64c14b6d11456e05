//! All SQL of the auth service. Functions take any executor (`&PgPool` or
//! `&mut *tx`), so handlers decide what shares a transaction and the SQL
//! stays here. Queries are checked at run time: there is no database at
//! build time, so `query!` macros are not used.

pub mod admin;
pub mod avatars;
pub mod email_changes;
pub mod outbox;
pub mod refresh_tokens;
pub mod sessions;
pub mod signing_keys;
pub mod users;
