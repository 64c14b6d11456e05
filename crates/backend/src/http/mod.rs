//! The backend's HTTP API. One router; handlers are short and call `store`
//! or `chat`.

mod extractor;
mod threads;

pub use extractor::{authenticate, AuthUser};

use crate::{error::Error, AppState};
use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request, State},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};

/// Every route the backend serves (path, method), kept next to the router
/// so the OpenAPI document can be checked against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("/v1/me", "get"),
    ("/v1/threads", "get"),
    ("/v1/threads", "post"),
    ("/v1/threads/{id}", "get"),
    ("/v1/threads/{id}/messages", "get"),
    ("/v1/ws", "get"),
    ("/readyz", "get"),
    ("/openapi.json", "get"),
    ("/healthz", "get"),
    ("/metrics", "get"),
];

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/me", get(threads::me))
        .route("/v1/threads", get(threads::list).post(threads::create))
        .route("/v1/threads/{id}", get(threads::get))
        .route("/v1/threads/{id}/messages", get(threads::messages))
        .route("/v1/ws", get(crate::ws::upgrade))
        .route("/readyz", get(readyz))
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    include_str!("../../openapi.json"),
                )
            }),
        )
        .fallback(|| async { Error::NotFound("No such endpoint.") })
        .method_not_allowed_fallback(|| async {
            Error::invalid(
                "method_not_allowed",
                None,
                "This endpoint does not support that method.",
            )
            .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
        })
        .with_state(state);
    confab_core::http::with_common_layers(api, "backend")
}

async fn readyz(State(state): State<AppState>) -> Response {
    let migrations =
        match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.db)
            .await
        {
            Ok(n) if n as usize >= crate::MIGRATOR.iter().count() => Ok(()),
            Ok(n) => Err(format!("{n} migrations applied")),
            Err(e) => Err(e.to_string()),
        };
    let pubsub = if state.hub.is_subscribed() {
        Ok(())
    } else {
        Err("not subscribed yet".to_string())
    };
    confab_core::http::readiness(vec![
        ("database", confab_core::http::check_db(&state.db).await),
        ("redis", confab_core::http::check_redis(&state.redis).await),
        ("migrations", migrations),
        ("pubsub", pubsub),
    ])
    .await
}

/// `Json` whose rejection is our error shape (400 `malformed_request`), not
/// axum's plain-text body.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(Error::Malformed(rejection.body_text())),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    /// The served OpenAPI document describes every route, and nothing else.
    #[test]
    fn openapi_document_matches_the_routes() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().expect("paths");
        for (path, method) in super::ROUTES {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} is not documented"
            );
        }
        let documented: usize = paths
            .values()
            .map(|p| {
                p.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                    .count()
            })
            .sum();
        assert_eq!(
            documented,
            super::ROUTES.len(),
            "documented routes that do not exist"
        );
    }
}
