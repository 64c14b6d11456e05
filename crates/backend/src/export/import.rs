//! Import of a JSON export (from this or another Confab instance) into the
//! caller's account.
//!
//! Everything is checked before anything is written, and written in one
//! transaction: a bad file changes nothing. Every thread and message gets a
//! new id, so a file naming another user's ids (or the caller's own, imported
//! twice) can only ever create new rows owned by the caller.

use super::schema::{self, Document};
use crate::{
    domain::{Role, Status, ThreadTitle},
    error::Error,
    store::import::{NewMessage, NewThread},
};
use confab_core::ids::{MessageId, ThreadId};
use std::collections::HashMap;

/// Limits on one import, besides its size in bytes (`CONFAB_IMPORT_MAX_BYTES`).
pub const MAX_THREADS: usize = 10_000;
pub const MAX_MESSAGES: usize = 200_000;
/// Replies can be long; this only stops absurd values.
pub const MAX_CONTENT_CHARS: usize = 1_000_000;

fn bad(message: String) -> Error {
    Error::invalid("invalid_import", Some("file"), message)
}

/// Parse the body and turn it into rows to insert, or say precisely what is
/// wrong with it.
pub fn plan(body: &[u8]) -> Result<Vec<NewThread>, Error> {
    // The header first, so a file that is not an export at all (or a newer
    // version) gets that answer rather than a complaint about some field.
    #[derive(serde::Deserialize)]
    struct Probe {
        format: Option<String>,
        version: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "The file is not a Confab JSON export (it is not valid JSON: {e})."
        ))
    })?;
    if probe.format.as_deref() != Some(schema::FORMAT) {
        return Err(bad(format!(
            "The file is not a Confab JSON export (its \"format\" is not \"{}\").",
            schema::FORMAT
        )));
    }
    match probe.version {
        Some(schema::VERSION) => {}
        Some(v) => {
            return Err(Error::invalid(
                "unsupported_version",
                Some("file"),
                format!(
                    "This export is version {v}; this Confab reads version {}.",
                    schema::VERSION
                ),
            ))
        }
        None => return Err(bad("The export has no \"version\".".into())),
    }
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| bad(format!("The export does not match the format: {e}.")))?;
    if doc.threads.len() > MAX_THREADS {
        return Err(too_many(format!(
            "The export has {} conversations; at most {MAX_THREADS} can be imported at once.",
            doc.threads.len()
        )));
    }
    let total: usize = doc.threads.iter().map(|t| t.messages.len()).sum();
    if total > MAX_MESSAGES {
        return Err(too_many(format!(
            "The export has {total} messages; at most {MAX_MESSAGES} can be imported at once."
        )));
    }
    doc.threads
        .into_iter()
        .enumerate()
        .map(|(i, t)| plan_thread(i, t))
        .collect()
}

fn too_many(message: String) -> Error {
    Error::invalid("import_too_large", Some("file"), message)
}

fn plan_thread(i: usize, mut t: schema::Thread) -> Result<NewThread, Error> {
    let title = ThreadTitle::imported(&t.title).ok_or_else(|| {
        bad(format!(
            "Conversation {} has a title longer than {} characters.",
            i + 1,
            ThreadTitle::MAX_CHARS
        ))
    })?;
    t.messages.sort_by_key(|m| m.seq);
    let mut ids: HashMap<uuid::Uuid, (MessageId, Role)> = HashMap::new();
    let mut messages = Vec::with_capacity(t.messages.len());
    for (j, m) in t.messages.into_iter().enumerate() {
        let at = || format!("Conversation {}, message {}", i + 1, j + 1);
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(bad(format!(
                    "{}: role {other:?} is not \"user\" or \"assistant\".",
                    at()
                )))
            }
        };
        let (mut status, mut error) = match m.status.as_str() {
            "complete" => (Status::Complete, None),
            "failed" => (Status::Failed, m.error.clone()),
            "stopped" => (Status::Stopped, None),
            // A reply that was still being written cannot finish here.
            "streaming" => (
                Status::Failed,
                Some(schema::ErrorInfo {
                    code: "interrupted".into(),
                    message: "The reply was still being written when it was exported.".into(),
                }),
            ),
            other => {
                return Err(bad(format!(
                    "{}: status {other:?} is not complete, failed, stopped or streaming.",
                    at()
                )))
            }
        };
        if role == Role::User && status != Status::Complete {
            return Err(bad(format!("{}: a user message must be complete.", at())));
        }
        if m.content.chars().count() > MAX_CONTENT_CHARS {
            return Err(bad(format!(
                "{}: longer than {MAX_CONTENT_CHARS} characters.",
                at()
            )));
        }
        let id = MessageId::new();
        if ids.insert(m.id, (id, role)).is_some() {
            return Err(bad(format!("{}: the id {} appears twice.", at(), m.id)));
        }
        // A reply keeps its link only to a question earlier in the same
        // conversation (every attempt at it; the newest becomes current).
        let reply_to = match (role, m.reply_to.and_then(|r| ids.get(&r).copied())) {
            (Role::Assistant, Some((q, Role::User))) => Some(q),
            _ => None,
        };
        if status == Status::Failed && error.is_none() {
            error = Some(schema::ErrorInfo {
                code: "failed".into(),
                message: "This reply failed.".into(),
            });
        }
        if status == Status::Complete {
            error = None;
        }
        if role == Role::User {
            status = Status::Complete;
        }
        messages.push(NewMessage {
            id,
            seq: j as i64 + 1,
            role,
            status,
            content: m.content,
            created_at: m.created_at,
            reply_to,
            model: m.model.filter(|_| role == Role::Assistant),
            provider: m.provider.filter(|_| role == Role::Assistant),
            error_code: error.as_ref().map(|e| e.code.clone()),
            error_message: error.map(|e| e.message),
        });
    }
    Ok(NewThread {
        id: ThreadId::new(),
        title,
        created_at: t.created_at,
        updated_at: t.updated_at,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(threads: serde_json::Value) -> Vec<u8> {
        json!({"format": "confab.export", "version": 1, "threads": threads})
            .to_string()
            .into_bytes()
    }

    fn msg(id: &str, seq: i64, role: &str, reply_to: Option<&str>) -> serde_json::Value {
        json!({"id": id, "seq": seq, "role": role, "status": "complete", "content": format!("{role} {seq}"),
               "created_at": "2026-12-01T10:00:00Z", "reply_to": reply_to, "model": null, "provider": null, "error": null})
    }

    const Q: &str = "00000000-0000-7000-8000-000000000001";
    const A: &str = "00000000-0000-7000-8000-000000000002";
    const A2: &str = "00000000-0000-7000-8000-000000000003";

    #[test]
    fn ids_are_new_and_references_remapped() {
        let body = doc(
            json!([{"id": Q, "title": " Hi ", "created_at": "2026-12-01T10:00:00Z",
            "updated_at": "2026-12-01T10:00:00Z",
            "messages": [msg(A, 2, "assistant", Some(Q)), msg(Q, 1, "user", None), msg(A2, 3, "assistant", Some(Q))]}]),
        );
        let t = plan(&body).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].title.as_str(), "Hi");
        assert_ne!(t[0].id.to_string(), Q);
        let m = &t[0].messages;
        assert_eq!(m.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(m[0].role, Role::User);
        assert_eq!(m[1].reply_to, Some(m[0].id));
        // A regenerated reply is another attempt at the same question.
        assert_eq!(m[2].reply_to, Some(m[0].id));
        assert!(m
            .iter()
            .all(|x| x.id.to_string() != Q && x.id.to_string() != A));
    }

    #[test]
    fn bad_files_get_specific_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not valid JSON"),
            (
                br#"{"format":"other","version":1,"threads":[]}"#.to_vec(),
                "not a Confab JSON export",
            ),
            (
                br#"{"format":"confab.export","version":2,"threads":[]}"#.to_vec(),
                "version 2",
            ),
            (
                doc(
                    json!([{"id": Q, "title": "x", "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
                "messages": [{"id": A, "seq": 1, "role": "system", "status": "complete", "content": "x", "created_at": "2026-12-01T10:00:00Z"}]}]),
                ),
                "role \"system\"",
            ),
            (
                doc(
                    json!([{"id": Q, "title": "x".repeat(201), "created_at": "2026-12-01T10:00:00Z",
                "updated_at": "2026-12-01T10:00:00Z", "messages": []}]),
                ),
                "longer than 200",
            ),
            (
                doc(
                    json!([{"id": Q, "title": "x", "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
                "messages": [msg(A, 1, "user", None), msg(A, 2, "user", None)]}]),
                ),
                "appears twice",
            ),
        ];
        for (body, expected) in cases {
            let e = plan(&body).unwrap_err();
            assert!(
                e.to_string().contains(expected),
                "{e} should mention {expected:?}"
            );
        }
    }
}
