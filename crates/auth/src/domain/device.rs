//! How a session is shown to its owner: a device label from the User-Agent
//! ("Chrome on Linux") and a coarse client address. Both are
//! client-controlled hints for recognising a device, never used to decide
//! anything.

use std::net::IpAddr;

/// "Browser on OS" from a User-Agent, for the session list. Order matters:
/// Edge and Opera say "Chrome" too, Chrome says "Safari", so the most
/// specific token is looked for first. Unknown agents get a generic label,
/// not their raw (possibly huge or odd) text.
pub fn device_label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|ua| !ua.is_empty()) else {
        return "Unknown device".to_string();
    };
    let has = |needle: &str| ua.contains(needle);
    let browser = if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") || has("HeadlessChrome/") || has("Chromium/") {
        Some("Chrome")
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else if ua.starts_with("curl/") {
        Some("curl")
    } else if ua.starts_with("confab-") || ua.starts_with("Confab") {
        Some("Confab client")
    } else {
        None
    };
    let os = if has("iPhone") || has("iPad") || has("iPod") {
        Some("iOS")
    } else if has("Android") {
        Some("Android")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Windows") {
        Some("Windows")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("Linux") || has("X11") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("Browser on {o}"),
        (None, None) => "Unknown device".to_string(),
    }
}

/// The client's network, not its address: IPv4 to its /24 ("203.0.113.0/24"),
/// IPv6 to its /48. Enough to tell "home" from "somewhere else"; too coarse
/// to locate a person, so the session list stores no personal address.
pub fn coarse_ip(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_agents_get_readable_labels() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Android 14; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0",
                "Firefox on Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36 OPR/79.0",
                "Opera on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("something odd", "Unknown device"),
            ("", "Unknown device"),
        ];
        for (ua, label) in cases {
            assert_eq!(device_label(Some(ua)), label, "{ua}");
        }
        assert_eq!(device_label(None), "Unknown device");
    }

    #[test]
    fn addresses_are_coarsened() {
        assert_eq!(coarse_ip("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            coarse_ip("2001:db8:abcd:12:1::9".parse().unwrap()),
            "2001:db8:abcd::/48"
        );
        // An IPv4 client seen through an IPv6 socket is still IPv4.
        assert_eq!(
            coarse_ip("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0/24"
        );
    }
}
