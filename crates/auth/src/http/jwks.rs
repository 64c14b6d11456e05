//! The public signing keys, for every service that verifies access tokens.

use super::ApiContext;
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Json, Router};

pub(super) fn router() -> Router<ApiContext> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

/// Verifiers re-fetch on an unknown `kid` anyway, so a short cache only
/// saves requests and never delays a key rotation by much.
async fn jwks(State(ctx): State<ApiContext>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(ctx.tokens.jwks().clone()),
    )
}
