use crate::error::Error;
use email_address::{EmailAddress, Options};
use std::fmt;

/// RFC 5321 limits a forward path to 256 octets including the angle brackets.
const MAX_LEN: usize = 254;

/// A syntactically valid email address in its canonical form: trimmed and
/// lowercased. Lowercasing the local part is stricter than RFC 5321, but no
/// mainstream provider treats `Alice@` and `alice@` as different mailboxes,
/// and one account per spelling would be a support nightmare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let normalised = raw.trim().to_lowercase();
        if normalised.is_empty() {
            return Err(Error::validation("email", "Enter your email address."));
        }
        if normalised.len() > MAX_LEN {
            return Err(Error::validation(
                "email",
                format!("An email address can be at most {MAX_LEN} characters long."),
            ));
        }
        // A display name ("Alice <a@x.org>") or an IP literal is valid RFC 5322
        // but never what someone means when typing into a sign-up form; a
        // domain without a dot is almost always a typo ("alice@gmail").
        let options = Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        EmailAddress::parse_with_options(&normalised, options).map_err(|_| {
            Error::validation(
                "email",
                "This does not look like an email address (expected something like name@example.com).",
            )
        })?;
        Ok(Self(normalised))
    }

    /// The part before the `@`, the default display name.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(local, _)| local)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: Error) -> &'static str {
        match e {
            Error::Validation { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn trims_and_lowercases() {
        let e = Email::parse("  Alice.Smith@Example.COM \n").unwrap();
        assert_eq!(e.as_str(), "alice.smith@example.com");
        assert_eq!(e.local_part(), "alice.smith");
    }

    #[test]
    fn accepts_plus_addressing_and_subdomains() {
        assert!(Email::parse("bob+confab@mail.example.co.uk").is_ok());
    }

    #[test]
    fn rejects_what_is_not_an_email() {
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.com",
            "alice@@example.com",
            "alice smith@example.com",
            "alice@example",
            "Alice <alice@example.com>",
            "alice@[127.0.0.1]",
            "alice@exa mple.com",
        ] {
            let err = Email::parse(bad).expect_err(bad);
            assert_eq!(field_of(err), "email", "{bad:?}");
        }
    }

    #[test]
    fn rejects_overlong_addresses() {
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        assert!(Email::parse(&long).is_err());
    }
}
