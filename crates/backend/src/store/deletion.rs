//! Deleting threads and accounts, and the durable marker that keeps a
//! deleted account from coming back.

use confab_core::ids::{MessageId, ThreadId, UserId};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

/// How long after its last update a reply may still have a live stream in
/// Redis (the stream lives an hour at most).
const LIVE_STREAM_WINDOW: &str = "2 hours";

/// What deleting threads removed: the threads, and the replies whose live
/// streams in Redis may still exist and must go too.
#[derive(Debug, Default)]
pub struct Deleted {
    pub threads: Vec<ThreadId>,
    pub recent_replies: Vec<MessageId>,
}

/// Which threads to delete.
pub enum Which<'a> {
    Some(&'a [ThreadId]),
    All,
}

/// Delete the user's threads (messages go by cascade). With `Some`, either
/// every named thread belongs to the user and all are deleted, or none is
/// and `None` is returned: another user's id never deletes anything.
pub async fn delete_threads(
    conn: &mut PgConnection,
    user: UserId,
    which: Which<'_>,
) -> Result<Option<Deleted>, sqlx::Error> {
    let ids: Option<Vec<ThreadId>> = match which {
        Which::Some(ids) => Some(ids.to_vec()),
        Which::All => None,
    };
    // Lock the threads first, so a message being sent into one of them
    // either commits before the deletion or finds the thread gone.
    let owned: Vec<ThreadId> = sqlx::query_scalar(
        "SELECT id FROM threads WHERE user_id = $1 AND ($2::uuid[] IS NULL OR id = ANY($2))
         ORDER BY id FOR UPDATE",
    )
    .bind(user)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    if let Some(ids) = &ids {
        let wanted: std::collections::HashSet<_> = ids.iter().collect();
        if wanted.len() != owned.len() {
            return Ok(None);
        }
    }
    let recent_replies = recent_replies(&mut *conn, Some(&owned), user).await?;
    sqlx::query("DELETE FROM threads WHERE id = ANY($1)")
        .bind(&owned)
        .execute(&mut *conn)
        .await?;
    Ok(Some(Deleted {
        threads: owned,
        recent_replies,
    }))
}

/// Replies (of the given threads, or of the user) whose live stream in
/// Redis may still exist.
async fn recent_replies(
    conn: &mut PgConnection,
    threads: Option<&[ThreadId]>,
    user: UserId,
) -> Result<Vec<MessageId>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM messages WHERE user_id = $1 AND ($2::uuid[] IS NULL OR thread_id = ANY($2))
           AND role = 'assistant' AND updated_at > now() - interval '{LIVE_STREAM_WINDOW}'"
    ))
    .bind(user)
    .bind(threads)
    .fetch_all(conn)
    .await
}

/// The tombstone key: SHA-256 of the user id's text form.
pub fn user_hash(user: UserId) -> Vec<u8> {
    Sha256::digest(user.to_string().as_bytes()).to_vec()
}

/// Serialise profile creation and account deletion for one user, so a
/// profile can never be re-created by a request racing the deletion.
pub async fn lock_user(conn: &mut PgConnection, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 13))")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn is_deleted(conn: &mut PgConnection, user: UserId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM deleted_users WHERE user_hash = $1)")
        .bind(user_hash(user))
        .fetch_one(conn)
        .await
}

/// Delete the account's data (profile, and by cascade workspaces, threads,
/// messages) and leave the tombstone. Call inside a transaction after
/// `lock_user`. Returns the replies whose live streams may still exist.
pub async fn delete_user(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<Vec<MessageId>, sqlx::Error> {
    sqlx::query("INSERT INTO deleted_users (user_hash) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(user_hash(user))
        .execute(&mut *conn)
        .await?;
    let recent = recent_replies(&mut *conn, None, user).await?;
    sqlx::query("DELETE FROM profiles WHERE user_id = $1")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    super::admin::forget_user(&mut *conn, user).await?;
    Ok(recent)
}
