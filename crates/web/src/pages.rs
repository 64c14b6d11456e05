//! Server-rendered pages: one shared layout, a template per page, and the
//! security headers every page carries.
//!
//! Pages are shells: they never contain user data. Who is signed in is only
//! known to the browser (the access token lives in JS memory, the refresh
//! token in an httpOnly cookie scoped to the auth service), so the page's
//! script fills in names, threads and messages after it boots. That keeps the
//! web server stateless and makes every page cacheable by path.

use crate::{assets, sign_in, AppState};
use axum::{
    extract::{Path, Request, State},
    http::{header, HeaderName, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};
use minijinja::{context, Environment, Value};

/// No inline script or style anywhere, so an injected `<script>` (say, from
/// a model reply that slipped past sanitising) cannot run; `connect-src
/// 'self'` covers the WebSocket too, since it goes through this origin.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; \
form-action 'self'";

/// The templates, compiled once at start. A template error is a build bug,
/// so `run` fails instead of serving a broken page later.
pub(crate) fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // The default auto-escape callback escapes `.html` templates; keep that
    // explicit so renaming a template can never silently turn it off.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("logo.html", include_str!("../templates/logo.html")),
        (
            "marketing.html",
            include_str!("../templates/marketing.html"),
        ),
        ("landing.html", include_str!("../templates/landing.html")),
        ("signup.html", include_str!("../templates/signup.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("module.html", include_str!("../templates/module.html")),
        (
            "providers.html",
            include_str!("../templates/providers.html"),
        ),
        (
            "login_failed.html",
            include_str!("../templates/login_failed.html"),
        ),
        (
            "login_link.html",
            include_str!("../templates/login_link.html"),
        ),
        ("app.html", include_str!("../templates/app.html")),
        ("settings.html", include_str!("../templates/settings.html")),
        ("admin.html", include_str!("../templates/admin.html")),
        (
            "email_confirm.html",
            include_str!("../templates/email_confirm.html"),
        ),
        (
            "not_found.html",
            include_str!("../templates/not_found.html"),
        ),
    ] {
        env.add_template(name, source)?;
    }
    env.add_function("asset", asset_url);
    env.add_function("preloads", preload_urls);
    Ok(env)
}

/// `asset("app.css")` in a template: the asset's versioned URL. Naming a
/// file that is not embedded is a template bug and fails the render.
///
/// Marked safe so auto-escaping leaves its slashes alone (it would write them
/// as `&#x2f;`): it is built from our own asset paths, which hold no quote or
/// angle bracket.
fn asset_url(path: &str) -> Result<Value, minijinja::Error> {
    assets::url(path)
        .map(Value::from_safe_string)
        .ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("no embedded asset {path:?}"),
            )
        })
}

/// `preloads("js/pages/app.js")`: the versioned URLs of every module the
/// entry imports, for `<link rel="modulepreload">`.
fn preload_urls(entry: &str) -> Result<Vec<Value>, minijinja::Error> {
    let invalid =
        |detail: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, detail);
    let modules = assets::preloads(entry)
        .map_err(|e| invalid(e.to_string()))?
        .ok_or_else(|| invalid(format!("no embedded module {entry:?}")))?;
    modules.iter().map(|m| asset_url(m)).collect()
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(landing))
        .route("/signup", get(signup))
        .route("/login", get(login))
        .route("/app", get(app))
        .route("/app/t/{thread_id}", get(thread))
        .route("/settings", get(settings))
        .route("/admin", get(admin_status))
        .route("/admin/users", get(admin_users))
        .route("/admin/audit", get(admin_audit))
        .route("/email/confirm", get(email_confirm))
        .merge(sign_in::router())
        .merge(assets::router())
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
}

async fn landing(State(s): State<AppState>) -> Response {
    render(&s, "landing.html", context! { page => "landing" })
}

async fn signup(State(s): State<AppState>) -> Response {
    let providers = sign_in::providers(&s).await;
    render(
        &s,
        "signup.html",
        context! { page => "signup", providers, verb => "Sign up" },
    )
}

async fn login(State(s): State<AppState>) -> Response {
    let providers = sign_in::providers(&s).await;
    render(
        &s,
        "login.html",
        context! { page => "login", providers, verb => "Log in" },
    )
}

async fn app(State(s): State<AppState>) -> Response {
    render(&s, "app.html", context! { page => "app" })
}

/// The same page as `/app`; the script reads the thread id from the path.
/// An id that could not be one (ids are uuids or similar tokens) is a 404
/// rather than a page whose first request is bound to fail.
async fn thread(State(s): State<AppState>, Path(thread_id): Path<String>) -> Response {
    let plausible = !thread_id.is_empty()
        && thread_id.len() <= 64
        && thread_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return not_found(State(s)).await;
    }
    render(&s, "app.html", context! { page => "app" })
}

async fn settings(State(s): State<AppState>) -> Response {
    render(&s, "settings.html", context! { page => "settings" })
}

/// The admin console's pages. Shells like every page: they hold no data, so
/// they are the same for everyone; the script asks the API who is signed in,
/// and every API behind them answers 403 to anyone but an admin (the page
/// then shows its 403 notice and nothing else).
async fn admin_status(State(s): State<AppState>) -> Response {
    admin_page(&s, "status", "Status")
}

async fn admin_users(State(s): State<AppState>) -> Response {
    admin_page(&s, "users", "Users")
}

async fn admin_audit(State(s): State<AppState>) -> Response {
    admin_page(&s, "audit", "Audit log")
}

fn admin_page(s: &AppState, section: &str, title: &str) -> Response {
    let mut res = render(
        s,
        "admin.html",
        context! { page => "admin", section, title },
    );
    // Not for shared caches, and not for search engines.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(
        HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex"),
    );
    res
}

/// Where an email-change link lands; the secret is in the fragment, which
/// only the page's script reads.
async fn email_confirm(State(s): State<AppState>) -> Response {
    render(
        &s,
        "email_confirm.html",
        context! { page => "email-confirm" },
    )
}

async fn not_found(State(s): State<AppState>) -> Response {
    let mut res = render(&s, "not_found.html", context! { page => "not-found" });
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

pub(crate) fn render(s: &AppState, name: &str, ctx: minijinja::Value) -> Response {
    let rendered = s.templates.get_template(name).and_then(|t| t.render(ctx));
    match rendered {
        Ok(html) => (
            // Shells carry no user data, but revalidate so a deploy shows up
            // at once (assets are versioned; pages are not).
            [(header::CACHE_CONTROL, "no-cache")],
            Html(html),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.").into_response()
        }
    }
}

/// Adds the page security headers to our own responses (pages, assets,
/// 404s). Proxied responses are left exactly as the upstream sent them.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}
