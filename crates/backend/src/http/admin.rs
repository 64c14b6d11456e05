//! The admin console's API in the backend: what the backend knows of each
//! account (plan, last message), for the console's user list, whose
//! accounts come from auth.

use super::AdminUser;
use crate::{error::Error, store, AppState};
use axum::{
    extract::{Query, State},
    Json,
};
use chrono::{DateTime, Utc};
use confab_core::ids::UserId;
use serde::{Deserialize, Serialize};

/// At most this many ids per request (the console asks for one page).
pub const MAX_IDS: usize = 200;

#[derive(Deserialize)]
pub struct ProfilesQuery {
    #[serde(default)]
    ids: Option<String>,
}

#[derive(Serialize)]
pub struct ProfilesBody {
    profiles: Vec<ProfileView>,
}

#[derive(Serialize)]
struct ProfileView {
    id: UserId,
    plan: String,
    last_message_at: Option<DateTime<Utc>>,
}

fn parse_ids(raw: &str) -> Result<Vec<UserId>, Error> {
    let bad = |message: String| Error::invalid("invalid_ids", Some("ids"), message);
    let ids: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.len() > MAX_IDS {
        return Err(bad(format!("Ask for at most {MAX_IDS} ids at once.")));
    }
    ids.into_iter()
        .map(|s| {
            s.parse()
                .map_err(|_| bad("ids must be comma-separated user ids.".into()))
        })
        .collect()
}

/// `GET /v1/admin/profiles?ids=<id>,<id>`: plan and last message of each
/// account that has a profile here (an id without one is left out).
#[tracing::instrument(name = "admin_profiles", skip_all, fields(admin = %admin.0.id))]
pub async fn profiles(
    admin: AdminUser,
    State(state): State<AppState>,
    query: Result<Query<ProfilesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ProfilesBody>, Error> {
    let Query(query) = query.map_err(|e| Error::Malformed(e.body_text()))?;
    let ids = parse_ids(query.ids.as_deref().unwrap_or(""))?;
    let rows = if ids.is_empty() {
        Vec::new()
    } else {
        store::admin::profile_summaries(&state.db, &ids).await?
    };
    Ok(Json(ProfilesBody {
        profiles: rows
            .into_iter()
            .map(|p| ProfileView {
                id: p.user_id,
                plan: p.plan,
                last_message_at: p.last_message_at,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(parse_ids("").unwrap().is_empty());
        let a = UserId::new();
        let b = UserId::new();
        assert_eq!(parse_ids(&format!("{a}, {b},")).unwrap(), vec![a, b]);
        assert!(parse_ids("x").is_err());
        assert!(parse_ids("1' OR '1'='1").is_err());
        let many = vec![a.to_string(); MAX_IDS + 1].join(",");
        assert!(parse_ids(&many).is_err());
    }
}
