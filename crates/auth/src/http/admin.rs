//! The admin console's API in auth, which owns accounts and sessions: who
//! the caller is (`GET /v1/auth/admin/whoami`, also how web checks the
//! status page's caller), the user list with search, disabling and enabling
//! an account, and the audit log. Every route takes [`AdminUser`]: a valid,
//! unrevoked access token of an account that the database says is an admin
//! and not disabled — so an account that lost the role is refused here at
//! once, whatever its token says.
//!
//! Every action is written to `admin_audit` in the same transaction as the
//! change it records: who, what, whom, when, from which address, with the
//! request id that ties it to the logs.

use super::{
    sessions::{announce_all, forwarded_ip, revoke_all_in},
    ApiContext, AuthUser, Json,
};
use crate::{
    domain::UserSearch,
    error::Error,
    store::{self, admin::NewEntry},
};
use axum::{
    extract::{FromRequestParts, Path, Query, State},
    http::{request::Parts, HeaderMap},
    routing::{get, post},
    Router,
};
use chrono::{DateTime, Utc};
use confab_core::{ids::UserId, revocation::RevokeReason, tokens::Role, REQUEST_ID_HEADER};
use serde::{Deserialize, Serialize};

pub(super) fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/auth/admin/whoami", get(whoami))
        .route("/v1/auth/admin/users", get(list_users))
        .route("/v1/auth/admin/users/{id}/disable", post(disable))
        .route("/v1/auth/admin/users/{id}/enable", post(enable))
        .route("/v1/auth/admin/audit", get(audit))
}

/// The caller of an admin route: authenticated, and an admin now.
pub struct AdminUser {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
}

impl FromRequestParts<ApiContext> for AdminUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, Error> {
        let auth = AuthUser::from_request_parts(parts, ctx).await?;
        let Some(actor) = store::admin::active_admin(&ctx.db, auth.user_id).await? else {
            tracing::warn!(user_id = %auth.user_id, path = %parts.uri.path(), "admin route refused");
            metrics::counter!("auth_admin_refused_total").increment(1);
            return Err(Error::Forbidden);
        };
        Ok(AdminUser {
            id: actor.id,
            email: actor.email,
            display_name: actor.display_name,
        })
    }
}

#[derive(Serialize)]
struct WhoAmI {
    id: UserId,
    email: String,
    display_name: String,
    role: Role,
}

async fn whoami(admin: AdminUser) -> Json<WhoAmI> {
    Json(WhoAmI {
        id: admin.id,
        email: admin.email,
        display_name: admin.display_name,
        role: Role::Admin,
    })
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

fn parse_limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, Error> {
    match raw {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| Error::validation("limit", format!("Use a limit from 1 to {max}."))),
    }
}

#[derive(Serialize)]
struct UsersBody {
    users: Vec<UserView>,
    /// More accounts match than were returned.
    more: bool,
}

#[derive(Serialize)]
struct UserView {
    id: UserId,
    email: String,
    display_name: String,
    role: Role,
    /// `active` or `disabled`.
    status: &'static str,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    /// Open sessions (signed-in devices that can still refresh).
    sessions: i64,
    /// The newest sign-in or token refresh of any session.
    last_active_at: Option<DateTime<Utc>>,
}

impl From<store::admin::ListedUser> for UserView {
    fn from(u: store::admin::ListedUser) -> Self {
        UserView {
            id: u.id,
            role: Role::from_stored(&u.role),
            status: if u.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            },
            email: u.email,
            display_name: u.display_name,
            disabled_at: u.disabled_at,
            created_at: u.created_at,
            sessions: u.sessions,
            last_active_at: u.last_active_at,
        }
    }
}

#[tracing::instrument(name = "admin_list_users", skip_all, fields(admin = %admin.id))]
async fn list_users(
    admin: AdminUser,
    State(ctx): State<ApiContext>,
    query: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsersBody>, Error> {
    let Query(query) = query.map_err(|e| Error::MalformedRequest(e.body_text()))?;
    let search = UserSearch::parse(query.q.as_deref().unwrap_or(""))?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let now = ctx.config.clock.now();
    let live_since = now
        - chrono::Duration::from_std(ctx.config.refresh_token_ttl)
            .unwrap_or(chrono::Duration::days(30));
    let mut rows = store::admin::list_users(&ctx.db, &search, live_since, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(UsersBody {
        more,
        users: rows.into_iter().map(UserView::from).collect(),
    }))
}

/// A user id in a path: anything that is not one is simply no account.
fn target_id(raw: &str) -> Result<UserId, Error> {
    raw.parse().map_err(|_| Error::UserNotFound)
}

/// Where an admin action came from, for the audit log.
struct Origin {
    ip: Option<String>,
    request_id: Option<String>,
}

fn origin(headers: &HeaderMap) -> Origin {
    Origin {
        ip: forwarded_ip(headers).map(|ip| ip.to_string()),
        request_id: headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect()),
    }
}

#[derive(Serialize)]
struct ActionBody {
    id: UserId,
    email: String,
    status: &'static str,
    /// Sessions this action ended (disabling).
    sessions_ended: usize,
}

/// Disable an account: it is marked disabled, every live session is
/// revoked (reason `account_disabled`) with its `session.revoked` event,
/// and the audit entry is written — one transaction. Then the revocations
/// are announced: every service refuses the sessions' tokens and every
/// backend closes their sockets with 4003 `account_disabled`. Signing in
/// is refused (403 `account_disabled`) until the account is enabled.
#[tracing::instrument(name = "admin_disable_user", skip_all, fields(admin = %admin.id))]
async fn disable(
    admin: AdminUser,
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ActionBody>, Error> {
    let id = target_id(&id)?;
    if id == admin.id {
        return Err(Error::CannotDisableSelf);
    }
    let now = ctx.config.clock.now();
    let from = origin(&headers);
    let mut tx = ctx.db.begin().await?;
    let target = store::admin::lock_target(&mut tx, id)
        .await?
        .ok_or(Error::UserNotFound)?;
    let was_disabled = target.disabled_at.is_some();
    if !was_disabled {
        store::admin::set_disabled(&mut tx, id, Some(now)).await?;
    }
    let reason = RevokeReason::AccountDisabled;
    let ended = revoke_all_in(&mut tx, id, reason, now).await?;
    store::admin::insert_entry(
        &mut tx,
        &NewEntry {
            actor: Some((admin.id, &admin.email)),
            action: "user.disable",
            target: Some((id, &target.email)),
            ip: from.ip.as_deref(),
            request_id: from.request_id.as_deref(),
            detail: serde_json::json!({
                "sessions_ended": ended.len(),
                "already_disabled": was_disabled,
            }),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    ctx.outbox.notify();
    announce_all(&ctx, &ended, reason).await?;
    tracing::info!(user_id = %id, sessions_ended = ended.len(), "account disabled by an admin");
    metrics::counter!("auth_admin_actions_total", "action" => "user.disable").increment(1);
    Ok(Json(ActionBody {
        id,
        email: target.email,
        status: "disabled",
        sessions_ended: ended.len(),
    }))
}

/// Enable a disabled account: it may sign in again (its old sessions stay
/// ended).
#[tracing::instrument(name = "admin_enable_user", skip_all, fields(admin = %admin.id))]
async fn enable(
    admin: AdminUser,
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ActionBody>, Error> {
    let id = target_id(&id)?;
    let now = ctx.config.clock.now();
    let from = origin(&headers);
    let mut tx = ctx.db.begin().await?;
    let target = store::admin::lock_target(&mut tx, id)
        .await?
        .ok_or(Error::UserNotFound)?;
    let was_disabled = target.disabled_at.is_some();
    if was_disabled {
        store::admin::set_disabled(&mut tx, id, None).await?;
    }
    store::admin::insert_entry(
        &mut tx,
        &NewEntry {
            actor: Some((admin.id, &admin.email)),
            action: "user.enable",
            target: Some((id, &target.email)),
            ip: from.ip.as_deref(),
            request_id: from.request_id.as_deref(),
            detail: serde_json::json!({ "was_disabled": was_disabled }),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %id, "account enabled by an admin");
    metrics::counter!("auth_admin_actions_total", "action" => "user.enable").increment(1);
    Ok(Json(ActionBody {
        id,
        email: target.email,
        status: "active",
        sessions_ended: 0,
    }))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<String>,
}

#[derive(Serialize)]
struct AuditBody {
    entries: Vec<AuditView>,
}

#[derive(Serialize)]
struct AuditView {
    id: uuid::Uuid,
    at: DateTime<Utc>,
    /// `None` for the service itself (`CONFAB_ADMIN_EMAILS` at start) or a
    /// deleted account.
    actor_id: Option<UserId>,
    actor_email: Option<String>,
    action: String,
    target_id: Option<UserId>,
    target_email: Option<String>,
    ip: Option<String>,
    request_id: Option<String>,
    detail: serde_json::Value,
}

#[tracing::instrument(name = "admin_audit", skip_all, fields(admin = %admin.id))]
async fn audit(
    admin: AdminUser,
    State(ctx): State<ApiContext>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditBody>, Error> {
    let Query(query) = query.map_err(|e| Error::MalformedRequest(e.body_text()))?;
    let limit = parse_limit(query.limit.as_deref(), 100, 500)?;
    let entries = store::admin::list_entries(&ctx.db, limit)
        .await?
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: e.at,
            actor_id: e.actor_id,
            actor_email: e.actor_email,
            action: e.action,
            target_id: e.target_id,
            target_email: e.target_email,
            ip: e.ip,
            request_id: e.request_id,
            detail: e.detail,
        })
        .collect();
    Ok(Json(AuditBody { entries }))
}

/// At start: apply `CONFAB_ADMIN_EMAILS` to existing accounts. A listed
/// account becomes an admin; an admin the list made whose email left it
/// loses the role, and every session of theirs ends (`role_changed`), so
/// no token with the old role stays in use anywhere (a new admin's tokens
/// get the role at their next refresh). Both are audited, by
/// the service itself.
pub(crate) async fn apply_admin_emails(ctx: &ApiContext) -> Result<(), Error> {
    let emails = ctx.config.admin_emails.as_strings();
    let now = ctx.config.clock.now();
    let reason = RevokeReason::RoleChanged;
    let mut tx = ctx.db.begin().await?;
    // Instances starting together apply the list one after the other.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('confab.auth.admin_emails'))")
        .execute(&mut *tx)
        .await?;
    let (granted, revoked) = store::admin::apply_admin_emails(&mut tx, &emails).await?;
    let mut ended = Vec::new();
    for (change, action) in granted
        .iter()
        .map(|c| (c, "role.grant"))
        .chain(revoked.iter().map(|c| (c, "role.revoke")))
    {
        // A new admin's tokens carry `user` until they refresh (which reads
        // the role again); a former admin's would carry `admin`: those end.
        let sessions = if action == "role.revoke" {
            revoke_all_in(&mut tx, change.id, reason, now).await?
        } else {
            Vec::new()
        };
        store::admin::insert_entry(
            &mut tx,
            &NewEntry {
                actor: None,
                action,
                target: Some((change.id, &change.email)),
                ip: None,
                request_id: None,
                detail: serde_json::json!({
                    "source": "CONFAB_ADMIN_EMAILS",
                    "sessions_ended": sessions.len(),
                }),
                at: now,
            },
        )
        .await?;
        ended.extend(sessions);
    }
    tx.commit().await?;
    if !ended.is_empty() {
        ctx.outbox.notify();
        announce_all(ctx, &ended, reason).await?;
    }
    if !granted.is_empty() || !revoked.is_empty() {
        tracing::info!(
            granted = granted.len(),
            revoked = revoked.len(),
            "roles from CONFAB_ADMIN_EMAILS applied"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 50, 200).unwrap(), 50);
        assert_eq!(parse_limit(Some("7"), 50, 200).unwrap(), 7);
        for bad in ["0", "201", "-1", "x", "1.5", ""] {
            assert!(parse_limit(Some(bad), 50, 200).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_that_are_not_ids_are_no_account() {
        assert!(matches!(target_id("nope"), Err(Error::UserNotFound)));
        assert!(matches!(
            target_id("'; DROP TABLE users; --"),
            Err(Error::UserNotFound)
        ));
    }
}
