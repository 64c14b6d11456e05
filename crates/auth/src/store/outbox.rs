//! Auth's side of the shared transactional outbox (`confab_core::outbox`):
//! the table lives in auth's database, the code is shared with the backend.

use crate::error::Error;
use confab_core::events::Event;
use sqlx::PgExecutor;

/// Records `event` to be relayed; call it inside the transaction that makes
/// the change the event describes.
pub async fn insert(db: impl PgExecutor<'_>, event: &Event) -> Result<(), Error> {
    Ok(confab_core::outbox::insert(db, event).await?)
}
