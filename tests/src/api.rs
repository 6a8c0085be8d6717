//! [`Api`]: an HTTP client of the Berth API with the cluster's token.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::eventually;

/// An HTTP client of the Berth API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String, token: String) -> Api {
        Api {
            base,
            token,
            http: crate::http_client()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    /// `GET /metrics` with the token: status, content type and the Prometheus text.
    pub async fn metrics_text(&self) -> Result<(u16, String, String)> {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((status, ctype, r.text().await?))
    }

    /// Sends a request with the token; returns status and JSON body (Null when empty).
    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, v))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.req(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.req(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(u16, Value)> {
        self.req(reqwest::Method::DELETE, path, None).await
    }

    /// `POST /api/v1/deployments/{id}/cancel`: status and body.
    pub async fn cancel(&self, id: &str) -> Result<(u16, Value)> {
        self.post(&format!("/api/v1/deployments/{id}/cancel"), json!({}))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.req(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// Creates an app; panics with the API's message unless 201.
    pub async fn create_app(&self, body: Value) -> Result<Value> {
        let (s, v) = self.post("/api/v1/apps", body).await?;
        if s != 201 {
            bail!("create app: HTTP {s}: {v}");
        }
        Ok(v)
    }

    /// Queues a deployment and returns its id.
    pub async fn deploy(&self, app: &str, git_ref: Option<&str>) -> Result<String> {
        let body = match git_ref {
            Some(r) => serde_json::json!({"ref": r}),
            None => serde_json::json!({}),
        };
        let (s, v) = self
            .post(&format!("/api/v1/apps/{app}/deployments"), body)
            .await?;
        if s != 202 {
            bail!("deploy: HTTP {s}: {v}");
        }
        Ok(v["id"].as_str().context("deployment id")?.to_string())
    }

    /// Waits until a deployment is terminal and returns its record.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> Result<Value> {
        let api = self.clone();
        eventually(&format!("deployment {id} to end"), timeout, || {
            let api = api.clone();
            async move {
                let (s, v) = api.get(&format!("/api/v1/deployments/{id}")).await.ok()?;
                let st = v["status"].as_str()?;
                (s == 200 && matches!(st, "succeeded" | "failed" | "cancelled")).then_some(v)
            }
        })
        .await
    }

    /// Queues a deployment ([`Api::deploy`]) and waits until it is terminal
    /// ([`Api::wait_terminal`]); returns its id and its record.
    pub async fn deploy_and_wait(
        &self,
        app: &str,
        git_ref: Option<&str>,
        timeout: Duration,
    ) -> Result<(String, Value)> {
        let id = self.deploy(app, git_ref).await?;
        let d = self.wait_terminal(&id, timeout).await?;
        Ok((id, d))
    }

    pub async fn log(&self, id: &str) -> Result<String> {
        let r = self
            .http
            .get(format!("{}/api/v1/deployments/{id}/logs", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(r.text().await?)
    }

    /// Waits until the log of deployment `id` contains `needle` (`what` names that moment in the
    /// timeout message); returns the log.
    pub async fn wait_log(
        &self,
        what: &str,
        id: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        eventually(what, timeout, || async {
            self.log(id).await.ok().filter(|l| l.contains(needle))
        })
        .await
    }
}
