//! JSON over HTTP for tests: one call, status and body back. Plumbing only;
//! what the status and body must be is the test's business.

use serde_json::Value;

/// Any JSON request; a body that is not JSON comes back as `Value::Null`.
pub async fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("request to {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

impl crate::Harness {
    /// `GET` with an optional bearer token.
    pub async fn get(&self, url: &str, token: Option<&str>) -> (u16, Value) {
        request(&self.http, reqwest::Method::GET, url, token, None).await
    }

    /// Log a session out through the auth API; returns the HTTP status.
    pub async fn log_out(&self, access_token: &str) -> u16 {
        let url = format!("{}/v1/auth/logout", self.auth_url);
        request(
            &self.http,
            reqwest::Method::POST,
            &url,
            Some(access_token),
            None,
        )
        .await
        .0
    }

    /// `POST` a JSON body with an optional bearer token.
    pub async fn post(&self, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        request(&self.http, reqwest::Method::POST, url, token, Some(&body)).await
    }
}

impl crate::Harness {
    /// Any method, optional token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        request(&self.http, method, url, token, body.as_ref()).await
    }

    /// One conversation made over the socket: each text is sent and its
    /// reply awaited. Returns the thread id.
    pub async fn chat(&self, user: &crate::TestUser, texts: &[&str]) -> String {
        let mut ws = self.socket(user).await;
        let mut thread: Option<String> = None;
        for text in texts {
            let id = format!("c-{}", uuid::Uuid::new_v4().simple());
            let ack = ws.send_message(&id, thread.as_deref(), text).await;
            thread = Some(ack["thread_id"].as_str().expect("thread id").to_string());
            ws.collect_reply().await;
        }
        ws.close().await;
        thread.expect("at least one message")
    }
}
