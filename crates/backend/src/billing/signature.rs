//! The payment provider's webhook signature, in Stripe's format:
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=…]`, the MAC
//! over `"<t>." + body` keyed with the endpoint's signing secret. A request
//! is trusted only if one `v1` matches (compared in constant time) and `t`
//! is within the replay window of now.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signature was refused (logged as `why=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Malformed,
    BadSignature,
    Stale,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Missing => "missing_signature",
            Refused::Malformed => "malformed_signature",
            Refused::BadSignature => "bad_signature",
            Refused::Stale => "stale_timestamp",
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Check `header` over `body` at `now` (unix seconds); returns `t`.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, Refused> {
    let header = header.ok_or(Refused::Missing)?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(unhex(v).ok_or(Refused::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(Refused::Malformed)?;
    if signatures.is_empty() {
        return Err(Refused::Malformed);
    }
    let matches = signatures.iter().any(|sig| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    });
    if !matches {
        return Err(Refused::BadSignature);
    }
    if (now - t).abs() > tolerance_secs {
        return Err(Refused::Stale);
    }
    Ok(t)
}

/// The header a provider would send (tests and the testkit's stand-in).
pub fn sign(body: &[u8], secret: &str, t: i64) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn a_good_signature_within_the_window_passes() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign(body, SECRET, 1_000);
        assert_eq!(verify(Some(&h), body, SECRET, 1_100, 300), Ok(1_000));
        // Several v1 entries (secret rotation): any one may match.
        let two = format!("t=1000,v1=00ff,{}", h.split_once(',').unwrap().1);
        assert_eq!(verify(Some(&two), body, SECRET, 1_000, 300), Ok(1_000));
    }

    #[test]
    fn tampering_staleness_and_garbage_are_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign(body, SECRET, 1_000);
        assert_eq!(
            verify(Some(&h), br#"{"id":"evt_2"}"#, SECRET, 1_000, 300),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(Some(&h), body, "whsec_other", 1_000, 300),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(Some(&h), body, SECRET, 1_301, 300),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(Some(&h), body, SECRET, 699, 300),
            Err(Refused::Stale)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = h.replace("t=1000", "t=1200");
        assert_eq!(
            verify(Some(&moved), body, SECRET, 1_200, 300),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(None, body, SECRET, 1_000, 300),
            Err(Refused::Missing)
        );
        assert_eq!(
            verify(Some("v1=abc"), body, SECRET, 1_000, 300),
            Err(Refused::Malformed)
        );
        assert_eq!(
            verify(Some("t=1000"), body, SECRET, 1_000, 300),
            Err(Refused::Malformed)
        );
    }
}
