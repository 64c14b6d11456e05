//! Confab's end-to-end suite: each flow of shared/seed/e2e-test-plan.md runs
//! against the real `confab` binaries, a real PostgreSQL, Redis, real
//! WebSockets, real JWTs and a real headless Chromium. One test binary (one
//! link step); one module per flow, named after it.

// Test code: a panic with a message is how a test fails, so `unwrap` and
// `expect` are fine here (clippy's allow-unwrap-in-tests does not cover
// integration-test crates and test-support libraries).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_admin;
mod api_agent_errors;
mod api_auth;
mod api_chat;
mod api_email_change;
mod api_export_delete;
mod api_isolation;
mod api_profile;
mod api_resume;
mod api_sessions;
mod confab_up;
mod events_pipeline;
mod faults;
mod flow01_signup_to_first_chat;
mod flow02_oauth_login_to_history;
mod flow03_reconnect_with_state_recovery;
mod flow04_concurrent_users;
mod flow05_token_refresh_during_chat;
mod flow06_agent_error_and_retry;
mod flow07_profile_update_across_services;
mod flow08_rate_limit_and_upgrade;
mod flow09_export_and_delete;
mod flow10_logout_everywhere;
mod limits;
mod local_model;
mod oidc_refusals;
mod ops_admin_console;
mod ops_prometheus;
mod scale_out;

use confab_testkit::Build;

pub const BUILD: Build = Build {
    confab_bin: env!("CARGO_BIN_EXE_confab"),
    target_tmpdir: env!("CARGO_TARGET_TMPDIR"),
};
