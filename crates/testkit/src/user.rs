//! Users made through the real sign-up API.

use crate::Harness;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub display_name: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// A unique address per call, so parallel tests never collide.
pub fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}@example.test",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl TestUser {
    pub async fn sign_up(h: &Harness) -> Self {
        Self::sign_up_named(h, "Test User").await
    }

    /// A user with the given display name (unique names let a test look
    /// for this user's traces in every store).
    pub async fn sign_up_named(h: &Harness, display_name: &str) -> Self {
        let email = unique_email("user");
        let password = "correct horse battery staple".to_string();
        let display_name = display_name.to_string();
        let resp = h
            .http
            .post(format!("{}/v1/auth/signup", h.auth_url))
            .json(&json!({"email": email, "password": password, "display_name": display_name}))
            .send()
            .await
            .expect("signup request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("signup body");
        assert_eq!(status, 201, "signup failed: {body}");
        Self {
            id: body["user"]["id"].as_str().expect("user id").to_string(),
            email,
            password,
            display_name,
            access_token: body["access_token"]
                .as_str()
                .expect("access token")
                .to_string(),
            refresh_token: body["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_string(),
        }
    }
}
