//! Profile, threads and message history.

use super::AuthUser;
use crate::{domain::ThreadTitle, error::Error, store, view::MessageView, AppState};
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::IntoResponse,
};
use confab_core::{http::api::Json, ids::ThreadId};
use serde::Deserialize;
use serde_json::json;

pub(super) fn parse_thread(id: &str) -> Result<ThreadId, Error> {
    id.parse()
        .map_err(|_| Error::Malformed(format!("{id:?} is not a thread id")))
}

pub async fn me(State(state): State<AppState>, user: AuthUser) -> Result<impl IntoResponse, Error> {
    let profile = crate::profile_cache::load(&state, user.id)
        .await?
        .ok_or(Error::NotFound("Profile not found."))?;
    let workspace = store::profiles::default_workspace(&state.db, user.id).await?;
    Ok(Json(json!({ "profile": profile, "workspace": workspace })))
}

pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<impl IntoResponse, Error> {
    let threads = store::threads::list(&state.db, user.id, 200).await?;
    Ok(Json(json!({ "threads": threads })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    #[serde(default)]
    title: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewThread>,
) -> Result<impl IntoResponse, Error> {
    let title = ThreadTitle::parse(body.title.as_deref())?;
    let ws = store::profiles::default_workspace(&state.db, user.id)
        .await?
        .ok_or(Error::NotFound("Your workspace is missing."))?;
    let thread = store::threads::create(&state.db, user.id, ws.id, &title).await?;
    Ok((StatusCode::CREATED, Json(json!({ "thread": thread }))))
}

pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let thread = store::threads::get(&state.db, user.id, parse_thread(&id)?)
        .await?
        .ok_or(Error::NotFound(
            "That conversation does not exist or was deleted.",
        ))?;
    Ok(Json(json!({ "thread": thread })))
}

/// `?before_seq=&limit=` pages history backwards from the newest message
/// (the default); `?after_seq=` reads forwards from a known point instead.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    after_seq: Option<i64>,
    #[serde(default)]
    before_seq: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn messages(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, Error> {
    let Query(page) = page.map_err(|e| Error::Malformed(e.body_text()))?;
    let thread = store::threads::get(&state.db, user.id, parse_thread(&id)?)
        .await?
        .ok_or(Error::NotFound(
            "That conversation does not exist or was deleted.",
        ))?;
    let limit = page.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid(
            "invalid_limit",
            Some("limit"),
            "limit must be between 1 and 1000.",
        ));
    }
    let (rows, has_earlier, has_later) = match (page.after_seq, page.before_seq) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "invalid_page",
                Some("before_seq"),
                "Give after_seq or before_seq, not both.",
            ))
        }
        (Some(after), None) => {
            let mut rows =
                store::messages::list_after(&state.db, thread.id, after, limit + 1).await?;
            let later = rows.len() as i64 > limit;
            rows.truncate(limit as usize);
            (rows, after > 0, later)
        }
        (None, before) => {
            let before = before.unwrap_or(i64::MAX);
            let mut rows =
                store::messages::list_before(&state.db, thread.id, before, limit + 1).await?;
            let earlier = rows.len() as i64 > limit;
            if earlier {
                rows.remove(0);
            }
            (
                rows,
                earlier,
                before != i64::MAX && before <= thread.last_seq,
            )
        }
    };
    let messages: Vec<MessageView> = rows.into_iter().map(MessageView::from).collect();
    Ok(Json(json!({
        "thread": thread,
        "messages": messages,
        "has_earlier": has_earlier,
        "has_later": has_later,
    })))
}
