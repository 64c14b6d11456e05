//! Static files (the stylesheet, the icon, the browser client's ES modules),
//! embedded in the binary.
//!
//! Pages link them as `/static/<version>/<path>`, where the version is a hash
//! of all assets: a request that carries the current version may be cached
//! forever (a deploy changes the URL), anything else revalidates with an
//! `ETag`. The version is a path segment rather than a query so that it
//! travels with relative imports: `js/pages/app.js` importing `../api.js`
//! loads `/static/<version>/js/api.js`, cache-busted like the entry, with
//! no build step and no import map (which the CSP would have to allow as an
//! inline script).
//!
//! The modules' static imports are read here too ([`preloads`]), so each page
//! can ask for its entry's whole graph at once (`<link rel="modulepreload">`)
//! instead of discovering it one level of imports per round trip, and so an
//! import naming a file that is not embedded stops the server at start
//! ([`check_modules`]) instead of breaking a page in the browser.

use crate::AppState;
use axum::{
    extract::Path,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use std::{collections::HashMap, sync::LazyLock};

struct Asset {
    /// The path below `/static/<version>/`, and below `static/` in the crate.
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Module scripts must be served with a JavaScript type, or the browser
/// refuses to run them.
const JS: &str = "text/javascript; charset=utf-8";

macro_rules! js {
    ($path:literal) => {
        Asset {
            path: $path,
            content_type: JS,
            body: include_str!(concat!("../static/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../static/app.css"),
    },
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../static/favicon.svg"),
    },
    // Shared by every page.
    js!("js/util.js"),
    js!("js/api.js"),
    js!("js/banners.js"),
    js!("js/account.js"),
    js!("js/data.js"),
    js!("js/settings-data.js"),
    js!("js/identities.js"),
    js!("js/plan.js"),
    js!("js/plan-settings.js"),
    js!("js/email-change.js"),
    // The chat.
    js!("js/socket.js"),
    js!("js/outbox.js"),
    js!("js/render.js"),
    js!("js/threads.js"),
    js!("js/sessions.js"),
    js!("js/chat.js"),
    js!("js/thread-actions.js"),
    // One entry per page.
    js!("js/pages/app.js"),
    js!("js/pages/auth.js"),
    js!("js/pages/settings.js"),
    // The admin console.
    js!("js/chart.js"),
    js!("js/admin-status.js"),
    js!("js/admin-users.js"),
    js!("js/admin-audit.js"),
    js!("js/pages/admin.js"),
    js!("js/pages/email-confirm.js"),
];

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

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

const VERSION_LEN: usize = 12;

/// The version of the whole asset set, used in page links.
pub(crate) static VERSION: LazyLock<String> = LazyLock::new(|| {
    let bodies: Vec<&str> = ASSETS.iter().map(|a| a.body).collect();
    format!("{:012x}", fnv1a(&bodies) & 0xffff_ffff_ffff)
});

/// The URL of an embedded asset at the current version, or `None` when no
/// asset has that path.
pub(crate) fn url(path: &str) -> Option<String> {
    find(path).map(|a| format!("/static/{}/{}", VERSION.as_str(), a.path))
}

/// A module imports something that is not an embedded module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{module} imports {specifier:?}, which is not an embedded module (imports must be relative paths to files under static/js)")]
pub struct BadImport {
    pub module: &'static str,
    pub specifier: String,
}

/// The specifiers of a module's static imports and re-exports, in order.
///
/// Reads lines, not JavaScript: an import is a line that starts with
/// `import`, `export` or `}` (the end of a multi-line import list) and names
/// its module as `from "…"`, or is `import "…"`. Our modules are written so
/// (one statement per line, double quotes); dynamic `import()` is not used.
pub(crate) fn imports(body: &str) -> Vec<&str> {
    fn quoted(s: &str) -> Option<&str> {
        let rest = s.trim_start().strip_prefix('"')?;
        rest.split_once('"').map(|(spec, _)| spec)
    }
    body.lines()
        .map(str::trim_start)
        .filter_map(|line| {
            if let Some(rest) = line.strip_prefix("import") {
                if rest.starts_with([' ', '"']) && quoted(rest).is_some() {
                    return quoted(rest);
                }
            }
            let statement = ["import ", "export ", "}"]
                .iter()
                .any(|p| line.starts_with(p));
            if !statement {
                return None;
            }
            let (_, after) = line.rsplit_once(" from ")?;
            quoted(after)
        })
        .collect()
}

/// Resolve a relative specifier against the importing module's path, the
/// way the browser resolves it against the module's URL.
fn resolve(from: &str, specifier: &str) -> Option<String> {
    if !(specifier.starts_with("./") || specifier.starts_with("../")) {
        return None;
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop(); // the importing file itself
    for segment in specifier.split('/') {
        match segment {
            "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

type Graph = HashMap<&'static str, Vec<&'static str>>;

/// Every module's transitive imports (each once, in first-import order), or
/// the first import that does not resolve to one of `assets`' modules.
fn module_graph(assets: &'static [Asset]) -> Result<Graph, BadImport> {
    let modules = || assets.iter().filter(|a| a.content_type == JS);
    let mut direct: Graph = HashMap::new();
    for m in modules() {
        let mut deps = Vec::new();
        for specifier in imports(m.body) {
            let target = resolve(m.path, specifier)
                .and_then(|p| modules().find(|a| a.path == p))
                .ok_or_else(|| BadImport {
                    module: m.path,
                    specifier: specifier.to_owned(),
                })?;
            deps.push(target.path);
        }
        direct.insert(m.path, deps);
    }
    let mut all = HashMap::new();
    for m in modules() {
        let mut seen: Vec<&'static str> = Vec::new();
        let mut stack: Vec<&'static str> = direct[m.path].iter().rev().copied().collect();
        while let Some(next) = stack.pop() {
            if next == m.path || seen.contains(&next) {
                continue;
            }
            seen.push(next);
            stack.extend(direct[next].iter().rev());
        }
        all.insert(m.path, seen);
    }
    Ok(all)
}

static GRAPH: LazyLock<Result<Graph, BadImport>> = LazyLock::new(|| module_graph(ASSETS));

/// Fails when a module imports something that is not embedded: the page
/// would break in the browser, so the server refuses to start instead.
pub(crate) fn check_modules() -> Result<(), BadImport> {
    GRAPH.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The modules `entry` imports, directly or not, for `modulepreload` links;
/// `None` when `entry` is not an embedded module.
pub(crate) fn preloads(entry: &str) -> Result<Option<&'static [&'static str]>, BadImport> {
    let graph = GRAPH.as_ref().map_err(Clone::clone)?;
    Ok(graph.get(entry).map(Vec::as_slice))
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/static/{*path}", get(serve))
}

/// `/static/<version>/<path>`, or the bare `/static/<path>` (never cached
/// without revalidating). A version other than the current one (a page from
/// before a deploy) gets today's file, revalidated like a bare path.
async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let versioned = path.split_once('/').and_then(|(version, rest)| {
        let looks_like_version =
            version.len() == VERSION_LEN && version.bytes().all(|b| b.is_ascii_hexdigit());
        looks_like_version
            .then(|| find(rest))
            .flatten()
            .map(|asset| (asset, version == VERSION.as_str()))
    });
    let Some((asset, current)) = versioned.or_else(|| find(&path).map(|a| (a, false))) else {
        // Falls through to a plain 404 (not the HTML page): a missing asset
        // is requested by a page, not by a person.
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{:016x}\"", fnv1a(&[asset.body]));
    let cache = if current {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_are_read_in_order() {
        let body = r#"// import "./not-this.js" in a comment
import { a } from "./a.js";
import * as b from "../b.js";
import "./side-effect.js";
import {
  c,
  d,
} from "./c.js";
export { e } from "./e.js";
const s = "x from \"./nope.js\"";
importantThing();
"#;
        assert_eq!(
            imports(body),
            ["./a.js", "../b.js", "./side-effect.js", "./c.js", "./e.js"]
        );
    }

    #[test]
    fn specifiers_resolve_like_urls_and_only_when_relative() {
        assert_eq!(
            resolve("js/pages/app.js", "../api.js").as_deref(),
            Some("js/api.js")
        );
        assert_eq!(
            resolve("js/chat.js", "./render.js").as_deref(),
            Some("js/render.js")
        );
        assert_eq!(
            resolve("js/chat.js", "./pages/../util.js").as_deref(),
            Some("js/util.js")
        );
        // Above static/ is not ours; bare and absolute specifiers need an
        // import map or a server path we do not promise.
        assert_eq!(resolve("js/chat.js", "../../../x.js"), None);
        assert_eq!(resolve("js/chat.js", "lit"), None);
        assert_eq!(resolve("js/chat.js", "/static/js/util.js"), None);
    }

    const fn module(path: &'static str, body: &'static str) -> Asset {
        Asset {
            path,
            content_type: JS,
            body,
        }
    }

    #[test]
    fn the_graph_is_transitive_ordered_and_survives_cycles() {
        static SET: &[Asset] = &[
            module(
                "js/pages/a.js",
                "import { x } from \"../x.js\";\nimport { y } from \"../y.js\";\n",
            ),
            module(
                "js/x.js",
                "import { y } from \"./y.js\";\nimport { z } from \"./z.js\";\n",
            ),
            // y and z import each other.
            module("js/y.js", "import { z } from \"./z.js\";\n"),
            module("js/z.js", "export { y } from \"./y.js\";\n"),
        ];
        let graph = module_graph(SET).unwrap();
        assert_eq!(graph["js/pages/a.js"], ["js/x.js", "js/y.js", "js/z.js"]);
        assert_eq!(graph["js/y.js"], ["js/z.js"]);
        assert_eq!(graph["js/z.js"], ["js/y.js"]);
    }

    #[test]
    fn an_import_of_anything_but_an_embedded_module_is_named() {
        static MISSING: &[Asset] = &[module("js/a.js", "import { b } from \"./b.js\";\n")];
        static BARE: &[Asset] = &[module("js/a.js", "import { html } from \"lit\";\n")];
        static NOT_JS: &[Asset] = &[
            module("js/a.js", "import \"../app.css\";\n"),
            Asset {
                path: "app.css",
                content_type: "text/css; charset=utf-8",
                body: "",
            },
        ];
        for (set, specifier) in [(MISSING, "./b.js"), (BARE, "lit"), (NOT_JS, "../app.css")] {
            let err = module_graph(set).unwrap_err();
            assert_eq!(
                err,
                BadImport {
                    module: "js/a.js",
                    specifier: specifier.into()
                }
            );
        }
        assert_eq!(
            module_graph(MISSING).unwrap_err().to_string(),
            "js/a.js imports \"./b.js\", which is not an embedded module \
             (imports must be relative paths to files under static/js)"
        );
    }

    #[test]
    fn the_embedded_modules_import_only_each_other_and_never_in_a_loop() {
        check_modules().unwrap();
        let graph = GRAPH.as_ref().unwrap();
        for (module, deps) in graph {
            for dep in deps {
                assert!(
                    !graph[dep].contains(module),
                    "{module} imports {dep}, which imports {module} back"
                );
            }
        }
    }
}
