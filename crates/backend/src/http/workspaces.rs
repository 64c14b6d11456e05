//! The user's default workspace: named after its owner until renamed here;
//! after that a new display name leaves the name alone.

use super::AuthUser;
use crate::{error::Error, store, AppState};
use axum::{extract::State, response::IntoResponse};
use confab_core::http::api::Json;
use serde::Deserialize;
use serde_json::json;

const MAX_CHARS: usize = 80;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    name: String,
}

/// `PATCH /v1/workspaces/default`.
pub async fn rename_default(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<Rename>,
) -> Result<impl IntoResponse, Error> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_CHARS || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_workspace_name",
            Some("name"),
            format!("A workspace name is 1 to {MAX_CHARS} characters, without control characters."),
        ));
    }
    let workspace = store::profiles::rename_default_workspace(&state.db, user.id, name)
        .await?
        .ok_or(Error::NotFound("Workspace not found."))?;
    Ok(Json(json!({ "workspace": workspace })))
}
