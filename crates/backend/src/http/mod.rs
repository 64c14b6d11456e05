//! The backend's HTTP API. One router; handlers are short and call `store`
//! or `chat`.

mod admin;
mod billing;
mod export;
mod extractor;
mod manage;
mod plans;
mod threads;
mod workspaces;

pub use extractor::{AdminUser, AuthUser};

use crate::{error::Error, AppState};
use axum::{
    extract::State,
    response::Response,
    routing::{get, post},
    Router,
};
use confab_core::http::{api::ServiceState, readiness, standard_checks};

/// Every route the backend serves (path, method), kept next to the router
/// so the OpenAPI document can be checked against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("/v1/me", "get"),
    ("/v1/threads", "get"),
    ("/v1/threads", "post"),
    ("/v1/threads/{id}", "get"),
    ("/v1/threads/{id}/messages", "get"),
    ("/v1/workspaces/default", "patch"),
    ("/v1/threads/{id}", "patch"),
    ("/v1/threads/{id}", "delete"),
    ("/v1/threads/delete", "post"),
    ("/v1/threads/{id}/export", "get"),
    ("/v1/export", "get"),
    ("/v1/import", "post"),
    ("/v1/messages", "post"),
    ("/v1/usage", "get"),
    ("/v1/billing/checkout", "post"),
    ("/v1/billing/cancel", "post"),
    ("/v1/billing/webhook", "post"),
    ("/v1/admin/profiles", "get"),
    ("/v1/admin/users/{id}/plan", "post"),
    ("/v1/admin/audit", "get"),
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
        .route(
            "/v1/threads/{id}",
            get(threads::get)
                .patch(manage::rename)
                .delete(manage::delete_one),
        )
        .route("/v1/threads/{id}/messages", get(threads::messages))
        .route(
            "/v1/workspaces/default",
            axum::routing::patch(workspaces::rename_default),
        )
        .route("/v1/threads/delete", post(manage::delete_many))
        .route("/v1/threads/{id}/export", get(export::one))
        .route("/v1/export", get(export::all))
        .route("/v1/import", post(export::import))
        .route("/v1/messages", post(plans::send))
        .route("/v1/usage", get(plans::usage))
        .route("/v1/billing/checkout", post(billing::checkout))
        .route("/v1/billing/cancel", post(billing::cancel))
        .route("/v1/billing/webhook", post(billing::webhook))
        .route("/v1/admin/profiles", get(admin::profiles))
        .route("/v1/admin/users/{id}/plan", post(admin::change_plan))
        .route("/v1/admin/audit", get(admin::audit))
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
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .with_state(state);
    confab_core::http::with_common_layers(api, "backend")
}

/// Shared extractors (the JSON body) reject with this service's error.
impl ServiceState for AppState {
    type Error = Error;
}

async fn readyz(State(state): State<AppState>) -> Response {
    let mut checks = standard_checks(&state.db, &state.redis, &crate::MIGRATOR).await;
    let pubsub = if state.hub.is_subscribed() {
        Ok(())
    } else {
        Err("not subscribed yet".to_string())
    };
    checks.push(("pubsub", pubsub));
    readiness(checks).await
}

#[cfg(test)]
mod tests {
    /// The served OpenAPI document describes every route, and nothing else.
    #[test]
    fn openapi_document_matches_the_routes() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(
            confab_core::http::unresolved_refs(&doc),
            Vec::<String>::new(),
            "every $ref resolves"
        );
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
