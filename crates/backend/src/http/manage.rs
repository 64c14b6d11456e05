//! Renaming and deleting threads. Another user's thread id is answered as
//! if it did not exist (404) and changes nothing.

use super::{threads::parse_thread, AuthUser};
use crate::{deletion, domain::ThreadTitle, error::Error, store, store::deletion::Which, AppState};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use confab_core::http::api::Json;
use serde::Deserialize;
use serde_json::json;

const NOT_FOUND: &str = "That conversation does not exist or was deleted.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    title: String,
}

/// `PATCH /v1/threads/{id}`.
pub async fn rename(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<Rename>,
) -> Result<impl IntoResponse, Error> {
    let id = parse_thread(&id)?;
    let title = ThreadTitle::parse_rename(&body.title)?;
    let thread = store::threads::rename(&state.db, user.id, id, &title)
        .await?
        .ok_or(Error::NotFound(NOT_FOUND))?;
    Ok(Json(json!({ "thread": thread })))
}

/// `DELETE /v1/threads/{id}`.
pub async fn delete_one(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let id = parse_thread(&id)?;
    deletion::delete_threads(&state, user.id, Which::Some(&[id]))
        .await?
        .ok_or(Error::NotFound(NOT_FOUND))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMany {
    #[serde(default)]
    thread_ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

/// `POST /v1/threads/delete`: `{"thread_ids": [...]}` (all of them or none)
/// or `{"all": true}`.
pub async fn delete_many(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<DeleteMany>,
) -> Result<impl IntoResponse, Error> {
    let deleted =
        match (body.thread_ids, body.all) {
            (None, true) => deletion::delete_threads(&state, user.id, Which::All).await?,
            (Some(ids), false) if !ids.is_empty() && ids.len() <= 1000 => {
                let ids = ids
                    .iter()
                    .map(|s| parse_thread(s))
                    .collect::<Result<Vec<_>, _>>()?;
                deletion::delete_threads(&state, user.id, Which::Some(&ids)).await?
            }
            (Some(ids), false) if !ids.is_empty() => return Err(Error::invalid(
                "invalid_thread_ids",
                Some("thread_ids"),
                "At most 1000 conversations can be deleted at once; use {\"all\": true} for all.",
            )),
            _ => {
                return Err(Error::invalid(
                    "invalid_thread_ids",
                    Some("thread_ids"),
                    "Name the conversations in \"thread_ids\", or send {\"all\": true}.",
                ))
            }
        }
        .ok_or(Error::NotFound(
            "One of those conversations does not exist or was deleted; nothing was deleted.",
        ))?;
    Ok(Json(
        json!({ "deleted": deleted.len(), "thread_ids": deleted }),
    ))
}
