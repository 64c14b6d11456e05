//! Requests that spend the refresh cookie must come from Confab's own pages.
//!
//! The cookie is `SameSite=Strict`, but that alone is not a defence to rest
//! on: a sibling subdomain counts as the same site, old browsers ignore the
//! attribute, and a proxy may rewrite it. So a request authenticated by the
//! cookie (refresh, logout, logout-all) must also carry one proof that a
//! page of this origin made it:
//! - the `X-Confab-Refresh-Transport` header, which no cross-site page can
//!   send without a CORS preflight that we never answer; or
//! - `Sec-Fetch-Site: same-origin`, set by the browser itself; or
//! - an `Origin` equal to the origin the request was addressed to (web's
//!   proxy forwards the browser's `Host` as `X-Forwarded-Host`).
//!
//! Requests that carry the refresh token in the body or an access token in
//! `Authorization` need none of this: a hostile page cannot make a browser
//! attach those.

use super::COOKIE_ONLY_HEADER;
use crate::error::Error;
use axum::http::{header, HeaderMap};

pub(super) fn ensure_cookie_use_is_same_site(headers: &HeaderMap) -> Result<(), Error> {
    if is_same_site(headers) {
        Ok(())
    } else {
        tracing::warn!(
            origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
            sec_fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
            "refused a cross-site use of the refresh cookie"
        );
        metrics::counter!("auth_cross_site_refused_total").increment(1);
        Err(Error::CrossSiteRequest)
    }
}

fn is_same_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if text("sec-fetch-site").is_some_and(|v| v != "same-origin") {
        // The browser says it is not a same-origin request: that settles
        // it, whatever else the request claims.
        return false;
    }
    if headers.contains_key(COOKIE_ONLY_HEADER) {
        return true;
    }
    if text("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        return false;
    };
    let Some(host) = text("x-forwarded-host").or_else(|| text(header::HOST.as_str())) else {
        return false;
    };
    let proto = text("x-forwarded-proto").unwrap_or("http");
    origin.eq_ignore_ascii_case(&format!("{proto}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn our_pages_pass() {
        for h in [
            headers(&[(COOKIE_ONLY_HEADER, "cookie")]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[
                ("origin", "http://localhost:3000"),
                ("x-forwarded-host", "localhost:3000"),
            ]),
            headers(&[
                ("origin", "https://chat.example"),
                ("host", "chat.example"),
                ("x-forwarded-proto", "https"),
            ]),
            headers(&[
                (COOKIE_ONLY_HEADER, "cookie"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ] {
            assert!(is_same_site(&h), "{h:?}");
        }
    }

    #[test]
    fn other_sites_and_bare_requests_are_refused() {
        for h in [
            HeaderMap::new(),
            headers(&[("origin", "https://evil.example"), ("host", "chat.example")]),
            headers(&[
                ("origin", "http://chat.example.evil"),
                ("host", "chat.example"),
            ]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            // The browser's own word beats a header a client added.
            headers(&[
                (COOKIE_ONLY_HEADER, "cookie"),
                ("sec-fetch-site", "cross-site"),
            ]),
            headers(&[
                ("origin", "http://chat.example"),
                ("host", "chat.example"),
                ("x-forwarded-proto", "https"),
            ]),
        ] {
            assert!(!is_same_site(&h), "{h:?}");
        }
    }
}
