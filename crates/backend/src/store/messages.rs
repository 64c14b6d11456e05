//! Messages. A user message is inserted with its sequence number in one
//! statement; an assistant reply is inserted as `streaming` when generation
//! starts and completed (or failed, or stopped) in one statement when it
//! ends. A question can have several replies (attempts: failed, stopped,
//! regenerated); `current` marks the one the conversation shows.

use crate::domain::{ClientMsgId, Role, Status};
use chrono::{DateTime, Utc};
use confab_core::ids::{MessageId, ThreadId, UserId};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Message {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub role: Role,
    pub content: String,
    pub status: Status,
    pub seq: i64,
    pub client_msg_id: Option<ClientMsgId>,
    pub reply_to: Option<MessageId>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// For a reply: the attempt its question currently shows (always true
    /// for user messages).
    pub current: bool,
    /// For a reply: the id of the generation that wrote it (in its log lines).
    pub request_id: Option<uuid::Uuid>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, thread_id, role, content, status, seq, client_msg_id, reply_to, error_code, error_message, current, request_id, created_at";

/// Where a message already stored stands (the first copy of a resend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstCopy {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub seq: i64,
}

/// What a send needs to know before it is admitted, in one round trip: the
/// first copy of a message with this client id, if any, and the user's
/// stored plan (`None`: no profile row, or no plan stored).
pub async fn first_copy_and_plan<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    client_msg_id: &ClientMsgId,
) -> Result<(Option<FirstCopy>, Option<String>), sqlx::Error> {
    type Row = (
        Option<String>,
        Option<MessageId>,
        Option<ThreadId>,
        Option<i64>,
    );
    let (plan, id, thread_id, seq): Row = sqlx::query_as(
        "SELECT (SELECT plan FROM profiles WHERE user_id = $1), m.id, m.thread_id, m.seq
         FROM (SELECT 1) AS one
         LEFT JOIN messages m ON m.user_id = $1 AND m.client_msg_id = $2",
    )
    .bind(user)
    .bind(client_msg_id)
    .fetch_one(db)
    .await?;
    let first = match (id, thread_id, seq) {
        (Some(id), Some(thread_id), Some(seq)) => Some(FirstCopy { id, thread_id, seq }),
        _ => None,
    };
    Ok((first, plan))
}

pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    id: MessageId,
) -> Result<Option<Message>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user)
    .fetch_optional(db)
    .await
}

/// A user's message to store in one of their threads.
pub struct NewQuestion<'a> {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub user_id: UserId,
    pub content: &'a str,
    pub client_msg_id: &'a ClientMsgId,
}

/// Store a user message with its thread's next sequence number, in one
/// statement (atomic without a transaction: a unique violation on its
/// client id undoes the number too). `None` when the thread is not the
/// user's (or was deleted). The thread's row lock is held until the
/// statement's transaction ends, which serialises writers of one thread and
/// keeps numbers gap-free.
pub async fn insert_question<'e>(
    db: impl PgExecutor<'e>,
    m: NewQuestion<'_>,
) -> Result<Option<Message>, sqlx::Error> {
    sqlx::query_as(&format!(
        "WITH t AS (
             UPDATE threads SET last_seq = last_seq + 1, updated_at = now()
             WHERE id = $2 AND user_id = $3 RETURNING last_seq
         )
         INSERT INTO messages (id, thread_id, user_id, role, content, status, seq, client_msg_id)
         SELECT $1, $2, $3, 'user', $4, 'complete', t.last_seq, $5 FROM t
         RETURNING {COLUMNS}"
    ))
    .bind(m.id)
    .bind(m.thread_id)
    .bind(m.user_id)
    .bind(m.content)
    .bind(m.client_msg_id)
    .fetch_optional(db)
    .await
}

/// A reply about to be written.
pub struct NewReply<'a> {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub user_id: UserId,
    pub question: MessageId,
    /// The model and provider writing it.
    pub model: &'a str,
    pub provider: &'a str,
    pub request_id: uuid::Uuid,
}

/// Insert the `streaming` row of a reply with the thread's next sequence
/// number and a lease of `lease`, as its question's current attempt (the
/// earlier ones no longer are): one round trip, one statement
/// (`start_reply`, migration 0017). `None` when the thread is gone. A
/// question already being answered is refused by the unique index
/// `messages_one_attempt_streaming`.
pub async fn start_reply<'e>(
    db: impl PgExecutor<'e>,
    r: NewReply<'_>,
    lease: std::time::Duration,
) -> Result<Option<Message>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM start_reply($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(r.id)
    .bind(r.thread_id)
    .bind(r.user_id)
    .bind(r.question)
    .bind(r.model)
    .bind(r.provider)
    .bind(r.request_id)
    .bind(lease.as_secs_f64())
    .fetch_optional(db)
    .await
}

/// A new question, its reply's row and the reply's context, as
/// [`send_question`] stored and read them.
#[derive(Debug)]
pub struct QuestionAndReply {
    pub question: Message,
    /// The `streaming` reply row, holding its lease.
    pub reply: Message,
    /// As [`context`] reads it: newest first, the question first.
    pub context: Vec<Message>,
}

/// Store a user message with its thread's next sequence number, insert its
/// reply's `streaming` row with the number after it and a lease of `lease`,
/// and read the reply's context (at most `context_limit` messages): one
/// round trip, one statement (`send_question`, migration 0018), so the
/// question and its reply are committed together or not at all. `None` when
/// the thread is not the user's (or was deleted). A resend is refused by
/// the unique index `messages_client_msg_id`, as by [`insert_question`].
pub async fn send_question<'e>(
    db: impl PgExecutor<'e>,
    q: NewQuestion<'_>,
    r: NewReply<'_>,
    lease: std::time::Duration,
    context_limit: i64,
) -> Result<Option<QuestionAndReply>, sqlx::Error> {
    let mut rows: Vec<Message> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}
         FROM send_question($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) WITH ORDINALITY AS r
         ORDER BY r.ordinality"
    ))
    .bind(q.id)
    .bind(q.thread_id)
    .bind(q.user_id)
    .bind(q.content)
    .bind(q.client_msg_id)
    .bind(r.id)
    .bind(r.model)
    .bind(r.provider)
    .bind(r.request_id)
    .bind(lease.as_secs_f64())
    .bind(context_limit)
    .fetch_all(db)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let context = rows.split_off(2.min(rows.len()));
    let mut rows = rows.into_iter();
    match (rows.next(), rows.next()) {
        (Some(question), Some(reply)) if question.id == q.id && reply.id == r.id => {
            Ok(Some(QuestionAndReply {
                question,
                reply,
                context,
            }))
        }
        _ => Err(sqlx::Error::Protocol(
            "send_question returned rows out of order".into(),
        )),
    }
}

/// Messages of a thread after `after_seq`, oldest first.
pub async fn list_after(
    pool: &PgPool,
    thread: ThreadId,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages WHERE thread_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(thread)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The newest `limit` messages of a thread before `before_seq`, oldest
/// first (a page of history read backwards).
pub async fn list_before(
    pool: &PgPool,
    thread: ThreadId,
    before_seq: i64,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let mut rows: Vec<Message> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages WHERE thread_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
    ))
    .bind(thread)
    .bind(before_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    Ok(rows)
}

/// The completed messages of a thread up to `question`, newest first, each
/// question with its current reply only: the model's context, trimmed by
/// the caller. What came after the question is not in it (a regenerated
/// answer to an earlier question does not see the later conversation), so
/// it can be read while the reply's row is inserted.
pub async fn context(
    pool: &PgPool,
    thread: ThreadId,
    question: MessageId,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE thread_id = $1 AND status = 'complete' AND current
           AND seq <= (SELECT seq FROM messages WHERE id = $2)
         ORDER BY seq DESC LIMIT $3"
    ))
    .bind(thread)
    .bind(question)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Complete a reply that is still `streaming`. Returns false when it is not
/// (its thread was deleted while it was written, or another instance found
/// its lease expired and failed it): then nothing changes.
pub async fn complete(pool: &PgPool, id: MessageId, content: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE messages SET content = $2, status = 'complete', error_code = NULL,
                error_message = NULL, lease_until = NULL, updated_at = now()
         WHERE id = $1 AND status = 'streaming'",
    )
    .bind(id)
    .bind(content)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Fail a reply that is still `streaming`; false when it is not (see
/// [`complete`]).
pub async fn fail(
    pool: &PgPool,
    id: MessageId,
    partial: &str,
    code: &str,
    message: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE messages SET content = $2, status = 'failed', error_code = $3, error_message = $4,
                lease_until = NULL, updated_at = now()
         WHERE id = $1 AND status = 'streaming'",
    )
    .bind(id)
    .bind(partial)
    .bind(code)
    .bind(message)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The reply was stopped by its user: what it had written is kept.
pub async fn stop(pool: &PgPool, id: MessageId, partial: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET content = $2, status = 'stopped', lease_until = NULL, updated_at = now()
         WHERE id = $1 AND status = 'streaming'",
    )
    .bind(id)
    .bind(partial)
    .execute(pool)
    .await?;
    Ok(())
}

/// Is a reply to this question being written right now?
pub async fn has_streaming_reply(pool: &PgPool, question: MessageId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE reply_to = $1 AND status = 'streaming')",
    )
    .bind(question)
    .fetch_one(pool)
    .await
}

/// Extend the lease of a reply being written by `lease`, measured on the
/// database's clock (one clock for every instance). False when the row is no
/// longer streaming: someone else ended it, and the writer must stop.
pub async fn renew_lease<'e>(
    db: impl PgExecutor<'e>,
    id: MessageId,
    lease: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE messages SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $1 AND status = 'streaming'",
    )
    .bind(id)
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A reply whose writer stopped renewing its lease.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Interrupted {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub user_id: UserId,
}

/// What an interrupted reply says to its user.
pub const INTERRUPTED_CODE: &str = "interrupted";
pub const INTERRUPTED_MESSAGE: &str =
    "The server writing this reply stopped before it finished. Retry to generate it again.";

/// The `streaming` replies whose lease ran out (their instance died or lost
/// the database), and those from before leases existed that have not moved
/// for `legacy_after`: candidates for [`fail_interrupted`].
pub async fn expired_leases(
    pool: &PgPool,
    legacy_after: std::time::Duration,
) -> Result<Vec<Interrupted>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, thread_id, user_id FROM messages
         WHERE status = 'streaming'
           AND COALESCE(lease_until, updated_at + make_interval(secs => $1)) < now()",
    )
    .bind(legacy_after.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Mark reply `id` failed as interrupted, keeping `partial` (what its live
/// stream had of it; empty keeps the row's content) in the same statement,
/// so nobody reads it failed without its text. Only if it is still
/// streaming with its lease run out: the row lock makes one caller take it,
/// and a writer that renewed meanwhile keeps it. True when this call took it.
pub async fn fail_interrupted(
    pool: &PgPool,
    id: MessageId,
    partial: &str,
    legacy_after: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE messages SET status = 'failed', error_code = $2, error_message = $3,
                content = COALESCE(NULLIF($4, ''), content),
                lease_until = NULL, updated_at = now()
         WHERE id = $1 AND status = 'streaming'
           AND COALESCE(lease_until, updated_at + make_interval(secs => $5)) < now()",
    )
    .bind(id)
    .bind(INTERRUPTED_CODE)
    .bind(INTERRUPTED_MESSAGE)
    .bind(partial)
    .bind(legacy_after.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}
