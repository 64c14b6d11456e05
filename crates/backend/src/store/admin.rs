//! The admin console's SQL in the backend: what it knows of each account
//! (plan, last message).

use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use sqlx::PgExecutor;

#[derive(Debug, sqlx::FromRow)]
pub struct ProfileSummary {
    pub user_id: UserId,
    pub plan: String,
    /// The newest message the user sent.
    pub last_message_at: Option<DateTime<Utc>>,
}

/// The profiles among `ids` (ids without a profile are left out).
pub async fn profile_summaries(
    db: impl PgExecutor<'_>,
    ids: &[UserId],
) -> Result<Vec<ProfileSummary>, sqlx::Error> {
    sqlx::query_as::<_, ProfileSummary>(
        "SELECT p.user_id, p.plan,
                (SELECT max(m.created_at) FROM messages m
                 WHERE m.user_id = p.user_id AND m.role = 'user') AS last_message_at
         FROM profiles p
         WHERE p.user_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}
