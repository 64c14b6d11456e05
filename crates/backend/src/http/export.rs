//! Export and import of the user's history.

use super::{threads::parse_thread, AuthUser};
use crate::{
    error::Error,
    export::{self, import, schema, Export, Format},
    store, AppState,
};
use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use confab_core::http::api::Json;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
}

fn format_of(
    q: Result<Query<FormatQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Format, Error> {
    let Query(q) = q.map_err(|e| Error::Malformed(e.body_text()))?;
    Format::parse(q.format.as_deref().unwrap_or("json"))
}

/// `GET /v1/export`: every thread of the caller.
pub async fn all(
    State(state): State<AppState>,
    user: AuthUser,
    q: Result<Query<FormatQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    let format = format_of(q)?;
    respond(&state, &user, None, format).await
}

/// `GET /v1/threads/{id}/export`: one thread (404 unless it is the caller's).
pub async fn one(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    q: Result<Query<FormatQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    let format = format_of(q)?;
    let thread = store::threads::get(&state.db, user.id, parse_thread(&id)?)
        .await?
        .ok_or(Error::NotFound(
            "That conversation does not exist or was deleted.",
        ))?;
    respond(&state, &user, Some((thread.id, thread.title)), format).await
}

async fn respond(
    state: &AppState,
    user: &AuthUser,
    thread: Option<(confab_core::ids::ThreadId, String)>,
    format: Format,
) -> Result<Response, Error> {
    let profile = store::profiles::get(&state.db, user.id)
        .await?
        .ok_or(Error::NotFound("Profile not found."))?;
    // The connection is taken before answering, so a busy pool is a clean
    // error instead of a download that breaks off.
    let conn = state.db.acquire().await?;
    let export = Export {
        user: user.id,
        thread,
        format,
        owner: schema::Owner {
            id: user.id.0,
            email: profile.email,
            display_name: profile.display_name,
        },
        exported_at: confab_core::clock::Clock::system().now(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&export.content_disposition()).map_err(std::io::Error::other)?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    // Lets the page's script read the file name when it fetches the export.
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("content-disposition"),
    );
    Ok((StatusCode::OK, headers, export::body(export, conn)).into_response())
}

/// `POST /v1/import`: a JSON export becomes new threads of the caller.
pub async fn import(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, Error> {
    let max = state.config.import_max_bytes;
    let too_large = || {
        Error::TooLarge {
        code: "import_too_large",
        message: format!(
            "The file is larger than the {} MiB an import may be; split it or export fewer conversations.",
            max / (1024 * 1024)
        ),
    }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large())?;
    let threads = import::plan(&bytes)?;
    let ws = store::profiles::default_workspace(&state.db, user.id)
        .await?
        .ok_or(Error::NotFound("Your workspace is missing."))?;
    let mut tx = state.db.begin().await?;
    let mut messages = 0;
    for t in &threads {
        store::import::insert_thread(&mut tx, user.id, ws.id, t).await?;
        messages += t.messages.len();
    }
    tx.commit().await?;
    tracing::info!(user = %user.id, threads = threads.len(), messages, "import stored");
    metrics::counter!("import_messages_total").increment(messages as u64);
    let listed: Vec<_> = threads
        .iter()
        .map(|t| json!({ "id": t.id, "title": t.title.as_str(), "messages": t.messages.len() }))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "imported": { "threads": threads.len(), "messages": messages },
            "threads": listed,
        })),
    ))
}
