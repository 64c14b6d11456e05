//! Uploaded avatars. Each upload is a new row with a new id, so its URL
//! never shows another picture and can be cached for ever.

use crate::{domain::Avatar, error::Error};
use confab_core::ids::UserId;
use sqlx::PgExecutor;
use uuid::Uuid;

pub async fn insert(db: impl PgExecutor<'_>, user: UserId, avatar: &Avatar) -> Result<Uuid, Error> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO avatars (id, user_id, content_type, bytes) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(user)
        .bind(avatar.content_type)
        .bind(&avatar.bytes)
        .execute(db)
        .await?;
    Ok(id)
}

/// Pictures of the user other than `keep` (replaced ones) are deleted.
pub async fn delete_others(
    db: impl PgExecutor<'_>,
    user: UserId,
    keep: Option<Uuid>,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM avatars WHERE user_id = $1 AND id IS DISTINCT FROM $2")
        .bind(user)
        .bind(keep)
        .execute(db)
        .await?;
    Ok(())
}

/// `(content type, bytes)` of a picture.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<(String, Vec<u8>)>, Error> {
    Ok(
        sqlx::query_as("SELECT content_type, bytes FROM avatars WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}
