//! Why an OpenID Connect sign-in was refused.
//!
//! Every refusal ends the same way for the browser: a redirect to the web
//! app's friendly page (`/login/failed?reason=…`) with a way back, and no
//! user or session created. The `reason` on the page is coarse (people do
//! not need to know which claim was wrong); the log line names the precise
//! cause ([`OidcError::why`]).

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no OpenID Connect provider is configured with this id")]
    UnknownProvider,
    #[error("the provider answered error={error} ({description})")]
    Provider { error: String, description: String },
    #[error("the callback has no code or no state")]
    MissingParameters,
    #[error("the state is not one this service issued")]
    StateUnknown,
    #[error("the state was already used")]
    StateReused,
    #[error("the state expired before the callback")]
    StateExpired,
    #[error("the state belongs to another browser (binding cookie missing or different)")]
    StateOtherBrowser,
    #[error("the state was issued for another provider")]
    StateOtherProvider,
    #[error("discovery or key fetch failed: {0}")]
    ProviderUnavailable(String),
    #[error("the provider refused the authorization code: {0}")]
    CodeRejected(String),
    #[error("the token response has no ID token")]
    IdTokenMissing,
    #[error("ID token refused ({why}): {detail}")]
    IdToken { why: &'static str, detail: String },
    #[error("userinfo request failed: {0}")]
    UserInfo(String),
    #[error("the provider gave no email address")]
    NoEmail,
    #[error(
        "the email matches an existing account but the provider does not assert it is verified"
    )]
    UnverifiedEmailInUse,
    #[error("this provider identity is already linked to another account")]
    IdentityInUse,
    #[error("linking needs a signed-in browser")]
    NotSignedIn,
    #[error("there is no pending link for this browser, or it expired")]
    LinkExpired,
    #[error("too many wrong passwords for this link")]
    LinkAttempts,
    #[error("the account is disabled by an administrator")]
    AccountDisabled,
    #[error("internal error: {0}")]
    Internal(crate::Error),
}

impl From<crate::Error> for OidcError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::AccountDisabled => OidcError::AccountDisabled,
            other => OidcError::Internal(other),
        }
    }
}

impl OidcError {
    /// The precise cause, for the log line.
    pub fn why(&self) -> &'static str {
        match self {
            OidcError::UnknownProvider => "unknown_provider",
            OidcError::Provider { error, .. } if error == "access_denied" => "access_denied",
            OidcError::Provider { .. } => "provider_error",
            OidcError::MissingParameters => "missing_parameters",
            OidcError::StateUnknown => "state_unknown",
            OidcError::StateReused => "state_reused",
            OidcError::StateExpired => "state_expired",
            OidcError::StateOtherBrowser => "state_other_browser",
            OidcError::StateOtherProvider => "state_other_provider",
            OidcError::ProviderUnavailable(_) => "provider_unavailable",
            OidcError::CodeRejected(_) => "code_rejected",
            OidcError::IdTokenMissing => "id_token_missing",
            OidcError::IdToken { why, .. } => why,
            OidcError::UserInfo(_) => "userinfo_failed",
            OidcError::NoEmail => "no_email",
            OidcError::UnverifiedEmailInUse => "unverified_email_in_use",
            OidcError::IdentityInUse => "identity_in_use",
            OidcError::NotSignedIn => "not_signed_in",
            OidcError::LinkExpired => "link_expired",
            OidcError::LinkAttempts => "link_attempts",
            OidcError::AccountDisabled => "account_disabled",
            OidcError::Internal(_) => "internal",
        }
    }

    /// What the friendly page explains (`/login/failed?reason=`).
    pub fn page_reason(&self) -> &'static str {
        match self {
            OidcError::Provider { error, .. } if error == "access_denied" => "cancelled",
            OidcError::Provider { .. } => "provider_error",
            OidcError::StateExpired | OidcError::LinkExpired => "expired",
            OidcError::MissingParameters
            | OidcError::StateUnknown
            | OidcError::StateReused
            | OidcError::StateOtherBrowser
            | OidcError::StateOtherProvider => "invalid_state",
            OidcError::UnknownProvider => "unknown_provider",
            OidcError::ProviderUnavailable(_) | OidcError::UserInfo(_) => "provider_unavailable",
            OidcError::CodeRejected(_) | OidcError::IdTokenMissing | OidcError::IdToken { .. } => {
                "rejected"
            }
            OidcError::NoEmail => "no_email",
            OidcError::UnverifiedEmailInUse => "email_unverified",
            OidcError::IdentityInUse => "identity_in_use",
            OidcError::LinkAttempts => "link_attempts",
            OidcError::NotSignedIn => "signed_out",
            OidcError::AccountDisabled => "account_disabled",
            OidcError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for OidcError {
    fn from(e: sqlx::Error) -> Self {
        OidcError::Internal(e.into())
    }
}
