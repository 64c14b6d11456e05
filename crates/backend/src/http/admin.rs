//! The admin console's API in the backend: what the backend knows of each
//! account (plan, last message), for the console's user list, whose
//! accounts come from auth.

use super::AdminUser;
use crate::{error::Error, store, AppState};
use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
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
    /// Every plan an admin can put an account on, in order.
    plans: Vec<String>,
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
        plans: state.plans.all().iter().map(|p| p.id.clone()).collect(),
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

#[derive(Deserialize)]
pub struct PlanRequest {
    plan: String,
}

#[derive(Serialize)]
pub struct PlanBody {
    id: UserId,
    plan: String,
    previous: String,
    changed: bool,
}

/// `POST /v1/admin/users/{id}/plan` `{"plan": "pro"}`: put the account on a
/// plan through the plans domain (`plans::change_plan_in`, reason `admin`:
/// the row and `plan.changed` together), with the audit entry
/// (`user.plan`, from and to) in the same transaction. Limits change at
/// once on every instance.
#[tracing::instrument(name = "admin_change_plan", skip_all, fields(admin = %admin.0.id))]
pub async fn change_plan(
    admin: AdminUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    confab_core::http::api::Json(req): confab_core::http::api::Json<PlanRequest>,
) -> Result<Json<PlanBody>, Error> {
    let unknown = || Error::NotFound("No account has this id.");
    let user: UserId = id.parse().map_err(|_| unknown())?;
    let plan = req.plan.trim().to_ascii_lowercase();
    let mut tx = state.db.begin().await?;
    let email = store::admin::email_of(&mut *tx, user)
        .await?
        .ok_or_else(unknown)?;
    let previous = store::admin::profile_summaries(&mut *tx, &[user])
        .await?
        .into_iter()
        .next()
        .map(|p| p.plan)
        .ok_or_else(unknown)?;
    let change = crate::plans::change_plan_in(&state, &mut tx, user, &plan, "admin").await?;
    let ip = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_string());
    let request_id = headers
        .get(confab_core::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect::<String>());
    store::admin::insert_entry(
        &mut tx,
        &store::admin::NewEntry {
            actor: (admin.0.id, &admin.0.claims.email),
            action: "user.plan",
            target: (user, Some(&email)),
            ip: ip.as_deref(),
            request_id: request_id.as_deref(),
            detail: serde_json::json!({"from": previous, "to": plan, "changed": change.is_some()}),
        },
    )
    .await?;
    tx.commit().await?;
    if change.is_some() {
        state.outbox.notify();
    }
    tracing::info!(user_id = %user, plan, previous, "plan changed by an admin");
    Ok(Json(PlanBody {
        id: user,
        changed: change.is_some(),
        plan,
        previous,
    }))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Serialize)]
pub struct AuditBody {
    entries: Vec<serde_json::Value>,
}

/// `GET /v1/admin/audit`: the backend's admin actions, newest first (the
/// console merges them with auth's).
pub async fn audit(
    _admin: AdminUser,
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditBody>, Error> {
    let Query(query) = query.map_err(|e| Error::Malformed(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid(
            "invalid_limit",
            Some("limit"),
            "limit must be between 1 and 500.",
        ));
    }
    let entries = store::admin::list_entries(&state.db, limit)
        .await?
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id, "at": e.at, "actor_id": e.actor_id, "actor_email": e.actor_email,
                "action": e.action, "target_id": e.target_id, "target_email": e.target_email,
                "ip": e.ip, "request_id": e.request_id, "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(AuditBody { entries }))
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
