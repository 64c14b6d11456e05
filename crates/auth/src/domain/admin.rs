//! Who is an admin, and the values the admin console's requests carry.

use super::Email;
use confab_core::tokens::Role;

/// `CONFAB_ADMIN_EMAILS`: accounts with these (normalised) emails are
/// admins. Read once at start; applied then to existing accounts, and to
/// every account created later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminEmails(Vec<Email>);

impl AdminEmails {
    /// A comma-separated list; an entry that is not an email is refused
    /// (the error names the entry).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut emails = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let email =
                Email::parse(entry).map_err(|_| format!("{entry:?} is not an email address"))?;
            if !emails.contains(&email) {
                emails.push(email);
            }
        }
        Ok(Self(emails))
    }

    pub fn contains(&self, email: &Email) -> bool {
        self.0.contains(email)
    }

    /// The normalised addresses, for SQL (`= ANY($1)`).
    pub fn as_strings(&self) -> Vec<String> {
        self.0.iter().map(|e| e.as_str().to_string()).collect()
    }
}

/// Why a new account gets its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleGrant {
    /// An ordinary account.
    None,
    /// The installation had no account yet.
    FirstAccount,
    /// Its email is in `CONFAB_ADMIN_EMAILS`.
    Config,
}

impl RoleGrant {
    pub fn role(self) -> Role {
        match self {
            RoleGrant::None => Role::User,
            RoleGrant::FirstAccount | RoleGrant::Config => Role::Admin,
        }
    }

    /// `users.role_granted_by`.
    pub fn as_stored(self) -> Option<&'static str> {
        match self {
            RoleGrant::None => None,
            RoleGrant::FirstAccount => Some("first_account"),
            RoleGrant::Config => Some("config"),
        }
    }

    /// The grant a new account with `email` gets; `first` when no account
    /// exists yet (decided under the first-account lock).
    pub fn for_new_account(admins: &AdminEmails, email: &Email, first: bool) -> Self {
        if admins.contains(email) {
            RoleGrant::Config
        } else if first {
            RoleGrant::FirstAccount
        } else {
            RoleGrant::None
        }
    }
}

/// The longest search the user list accepts.
pub const MAX_SEARCH_CHARS: usize = 200;

/// What the user list is searched for: a case-insensitive substring of the
/// email or the display name, taken literally (`%`, `_` and `\` match
/// themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSearch(String);

impl UserSearch {
    pub fn parse(raw: &str) -> Result<Self, crate::Error> {
        let q = raw.trim();
        if q.chars().count() > MAX_SEARCH_CHARS {
            return Err(crate::Error::validation(
                "q",
                format!("Search for at most {MAX_SEARCH_CHARS} characters."),
            ));
        }
        if q.chars().any(char::is_control) {
            return Err(crate::Error::validation(
                "q",
                "The search contains control characters.",
            ));
        }
        Ok(Self(q.to_string()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `ILIKE … ESCAPE '\'` pattern: the text with its wildcards escaped,
    /// between `%`s.
    pub fn like_pattern(&self) -> String {
        let mut p = String::with_capacity(self.0.len() + 2);
        p.push('%');
        for c in self.0.chars() {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_emails_are_normalised_and_checked() {
        let a = AdminEmails::parse(" Ada@Example.com, ,bob@example.org,ada@example.com").unwrap();
        assert_eq!(a.as_strings(), ["ada@example.com", "bob@example.org"]);
        assert!(a.contains(&Email::parse("ADA@example.com").unwrap()));
        assert!(AdminEmails::parse("ada@example.com,nope").is_err());
        assert_eq!(AdminEmails::parse("").unwrap(), AdminEmails::default());
    }

    #[test]
    fn grants() {
        let a = AdminEmails::parse("ada@example.com").unwrap();
        let ada = Email::parse("ada@example.com").unwrap();
        let bob = Email::parse("bob@example.com").unwrap();
        assert_eq!(
            RoleGrant::for_new_account(&a, &ada, false),
            RoleGrant::Config
        );
        assert_eq!(
            RoleGrant::for_new_account(&a, &bob, true),
            RoleGrant::FirstAccount
        );
        assert_eq!(RoleGrant::for_new_account(&a, &bob, false), RoleGrant::None);
        assert_eq!(RoleGrant::None.role(), Role::User);
        assert_eq!(RoleGrant::Config.role(), Role::Admin);
    }

    #[test]
    fn search_is_literal() {
        let s = UserSearch::parse(" 50%_off\\ ").unwrap();
        assert_eq!(s.like_pattern(), "%50\\%\\_off\\\\%");
        assert!(UserSearch::parse("").unwrap().is_empty());
        assert!(UserSearch::parse(&"x".repeat(201)).is_err());
        assert!(UserSearch::parse("a\u{0}b").is_err());
        assert_eq!(
            UserSearch::parse("' OR 1=1 --").unwrap().like_pattern(),
            "%' OR 1=1 --%"
        );
    }
}
