//! Values that are valid by construction ("parse, don't validate"): once a
//! handler holds an `Email`, a `Password` or a `DisplayName`, nothing
//! downstream checks it again.

mod admin;
mod avatar;
mod device;
mod display_name;
mod email;
mod email_link;
mod password;
mod refresh_policy;
mod refresh_token;
mod signing_key;
mod time_zone;

pub use admin::{AdminEmails, RoleGrant, UserSearch};
pub use avatar::Avatar;
pub use device::{coarse_ip, device_label};
pub use display_name::DisplayName;
pub use email::Email;
pub use email_link::EmailLinkSecret;
pub use password::{Argon2Settings, Password, PasswordHasher};
pub use refresh_policy::{PresentedState, Refresh, RefreshPolicy};
pub use refresh_token::{RefreshSecret, SuccessorKey};
pub use signing_key::NewSigningKey;
pub use time_zone::TimeZone;
