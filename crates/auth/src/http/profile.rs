//! The public profile: display name, avatar and time zone, edited by the
//! user in settings. Every change bumps the profile version and writes
//! `user.updated` (the whole profile, with that version) in the same
//! transaction; the backend applies it, refreshes its cache and tells the
//! user's open pages.

use super::{ApiContext, AuthUser, Json};
use crate::{
    domain::{Avatar, DisplayName, TimeZone},
    error::Error,
    store::{self, users::ProfileUpdate, users::User},
};
use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use chrono::{DateTime, Utc};
use confab_core::{
    events::{Event, EventKind},
    ids::UserId,
};
use serde::{Deserialize, Deserializer, Serialize};

pub(super) fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/auth/me", get(me).patch(update))
        .route(
            "/v1/auth/me/avatar",
            axum::routing::put(upload_avatar).delete(remove_avatar),
        )
        .route("/v1/auth/avatars/{id}", get(avatar))
}

/// What `GET /v1/auth/me` and every profile change answer.
#[derive(Serialize)]
pub(super) struct MeBody {
    id: UserId,
    email: String,
    display_name: String,
    /// The uploaded picture's path on this origin, `null` for the initials.
    avatar_url: Option<String>,
    time_zone: Option<String>,
    /// Grows with every change; `profile.updated` frames carry it too.
    profile_version: i64,
    created_at: DateTime<Utc>,
}

pub(super) fn avatar_url(user: &User) -> Option<String> {
    user.avatar_id.map(|id| format!("/v1/auth/avatars/{id}"))
}

impl From<User> for MeBody {
    fn from(user: User) -> Self {
        MeBody {
            avatar_url: avatar_url(&user),
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            time_zone: user.time_zone,
            profile_version: user.profile_version,
            created_at: user.created_at,
        }
    }
}

async fn me(auth: AuthUser, State(ctx): State<ApiContext>) -> Result<Json<MeBody>, Error> {
    // Deleting a user deletes their sessions, so the extractor already
    // refused a deleted user's token; this is only the race with deletion.
    let user = store::users::find(&ctx.db, auth.user_id)
        .await?
        .ok_or(Error::SessionRevoked(None))?;
    Ok(Json(user.into()))
}

/// `null` and absent differ for `time_zone`: `null` clears it.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProfile {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    time_zone: Option<Option<String>>,
}

#[tracing::instrument(name = "update_profile", skip_all, fields(user_id = %auth.user_id))]
async fn update(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
    Json(req): Json<UpdateProfile>,
) -> Result<Json<MeBody>, Error> {
    let display_name = req
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()?;
    let time_zone = match &req.time_zone {
        Some(Some(tz)) => Some(Some(TimeZone::parse(tz)?)),
        Some(None) => Some(None),
        None => None,
    };
    if display_name.is_none() && time_zone.is_none() {
        return Err(Error::validation(
            "display_name",
            "Nothing to change: send \"display_name\" and/or \"time_zone\".",
        ));
    }
    let change = ProfileUpdate {
        display_name: display_name.as_ref(),
        time_zone: time_zone
            .as_ref()
            .map(|tz| tz.as_ref().map(TimeZone::as_str)),
        ..ProfileUpdate::default()
    };
    Ok(Json(apply(&ctx, auth.user_id, &change, None).await?.into()))
}

/// Change the profile and announce it, in one transaction. With
/// `new_avatar`, the picture is stored first (same transaction) and becomes
/// the profile's.
pub(super) async fn apply(
    ctx: &ApiContext,
    user_id: UserId,
    change: &ProfileUpdate<'_>,
    new_avatar: Option<&Avatar>,
) -> Result<User, Error> {
    let now = ctx.config.clock.now();
    let mut tx = ctx.db.begin().await?;
    let user = apply_in(&mut tx, user_id, change, new_avatar, now).await?;
    tx.commit().await?;
    ctx.outbox.notify();
    Ok(user)
}

/// [`apply`] inside the caller's transaction (which also does its own part
/// of the change); the caller commits and then wakes the relay.
pub(super) async fn apply_in(
    tx: &mut sqlx::PgConnection,
    user_id: UserId,
    change: &ProfileUpdate<'_>,
    new_avatar: Option<&Avatar>,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    let mut change = ProfileUpdate { ..*change };
    if let Some(avatar) = new_avatar {
        let id = store::avatars::insert(&mut *tx, user_id, avatar).await?;
        change.avatar_id = Some(Some(id));
    }
    let user = store::users::update_profile(&mut *tx, user_id, &change, now)
        .await?
        .ok_or(Error::SessionRevoked(None))?;
    if change.avatar_id.is_some() {
        store::avatars::delete_others(&mut *tx, user_id, user.avatar_id).await?;
    }
    let event = Event::new(
        EventKind::UserUpdated {
            user_id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            avatar_url: avatar_url(&user),
            time_zone: user.time_zone.clone(),
            version: user.profile_version,
        },
        now,
    );
    store::outbox::insert(&mut *tx, &event).await?;
    metrics::counter!("auth_profile_updates_total").increment(1);
    tracing::info!(version = user.profile_version, event = %event.id, "profile updated");
    Ok(user)
}

/// `PUT /v1/auth/me/avatar`: the picture as the raw body, its type in
/// `Content-Type`.
async fn upload_avatar(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<MeBody>, Error> {
    let max = ctx.config.avatar_max_bytes;
    // One byte over the limit is enough to know it is too large.
    let bytes = axum::body::to_bytes(body, max + 1)
        .await
        .map_err(|_| Error::AvatarTooLarge(max))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let avatar = Avatar::parse(content_type, bytes.to_vec(), max)?;
    let user = apply(&ctx, auth.user_id, &ProfileUpdate::default(), Some(&avatar)).await?;
    Ok(Json(user.into()))
}

/// `DELETE /v1/auth/me/avatar`: back to the initials.
async fn remove_avatar(
    auth: AuthUser,
    State(ctx): State<ApiContext>,
) -> Result<Json<MeBody>, Error> {
    let change = ProfileUpdate {
        avatar_id: Some(None),
        ..ProfileUpdate::default()
    };
    Ok(Json(apply(&ctx, auth.user_id, &change, None).await?.into()))
}

/// `GET /v1/auth/avatars/{id}`: public (an `<img>` sends no token), the id is
/// unguessable and a replaced picture is deleted.
async fn avatar(State(ctx): State<ApiContext>, Path(id): Path<String>) -> Result<Response, Error> {
    let id: uuid::Uuid = id.parse().map_err(|_| Error::NotFound)?;
    let (content_type, bytes) = store::avatars::get(&ctx.db, id)
        .await?
        .ok_or(Error::NotFound)?;
    let content_type = HeaderValue::from_str(&content_type)
        .map_err(|e| Error::Internal(format!("stored avatar type: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response())
}
