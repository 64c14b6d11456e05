//! Static files (CSS, the two JS modules, the icon), embedded in the binary.
//!
//! Pages link them as `/static/<file>?v=<version>`, where the version is a
//! hash of all assets: a request that carries the current version may be
//! cached forever (a deploy changes the URL), anything else revalidates with
//! an `ETag`. That gives instant repeat loads without a build step.

use crate::AppState;
use axum::{
    extract::{Path, RawQuery},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use std::sync::LazyLock;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../static/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../static/app.js"),
    },
    Asset {
        name: "auth.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../static/auth.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../static/favicon.svg"),
    },
];

/// FNV-1a: stable across processes and builds of the same sources, so every
/// web instance behind a load balancer hands out the same versions and ETags
/// (std's hasher makes no such promise).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The version of the whole asset set, used in page links.
pub(crate) static VERSION: LazyLock<String> = LazyLock::new(|| {
    let bodies: Vec<&str> = ASSETS.iter().map(|a| a.body).collect();
    format!("{:012x}", fnv1a(&bodies) & 0xffff_ffff_ffff)
});

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/static/{file}", get(serve))
}

async fn serve(
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        // Falls through to a plain 404 (not the HTML page): a missing asset
        // is requested by a page, not by a person.
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{:016x}\"", fnv1a(&[asset.body]));
    let versioned = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("v=")))
        == Some(VERSION.as_str());
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let base = [
        (header::CACHE_CONTROL, cache.to_string()),
        (header::ETAG, etag),
    ];
    if not_modified {
        return (StatusCode::NOT_MODIFIED, base).into_response();
    }
    (
        base,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.body,
    )
        .into_response()
}
