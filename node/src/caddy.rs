//! Caddy's admin API as this node uses it: the JSON of the `berth` server and of one route per
//! domain, and a small client for the few calls the [`crate::router::Router`] makes.
//!
//! Only the router calls this (it is the only writer of the node's Caddy). Caddy 2.6.2 wants
//! `Content-Type: application/json` on mutations; PUT is strict-create; a PUT at an array index
//! inserts there, which keeps new routes ahead of the catch-all.

use berth_protocol::Route;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// `@id` of the catch-all 404 route; its absence means Caddy lost its config.
pub const CATCHALL_ID: &str = "berth_catchall";
/// Path of the berth HTTP server in Caddy's config.
pub const SERVER_PATH: &str = "/config/apps/http/servers/berth";

/// The `@id` of a domain's route: `berth_route_` + the domain with `.` replaced by `_`.
pub fn route_id(domain: &str) -> String {
    format!("berth_route_{}", domain.replace('.', "_"))
}

/// The Caddy route of one domain, proxying to every upstream of `route`.
pub fn route_json(route: &Route) -> Value {
    let upstreams: Vec<Value> = route
        .upstreams
        .iter()
        .map(|u| json!({ "dial": u.dial }))
        .collect();
    json!({
        "@id": route_id(&route.domain),
        "match": [{ "host": [route.domain] }],
        "handle": [{ "handler": "reverse_proxy", "upstreams": upstreams }],
        "terminal": true,
    })
}

/// The berth server: HTTP on `ingress_http`, no automatic HTTPS, a catch-all 404 route.
pub fn server_json(ingress_http: u16) -> Value {
    json!({
        "listen": [format!(":{ingress_http}")],
        "automatic_https": { "disable": true },
        "routes": [{
            "@id": CATCHALL_ID,
            "handle": [{
                "handler": "static_response",
                "status_code": 404,
                "body": "no app is deployed at this host\n",
            }],
        }],
    })
}

/// A client of one Caddy's admin API.
#[derive(Clone)]
pub struct CaddyAdmin {
    http: reqwest::Client,
    base: String,
}

impl CaddyAdmin {
    /// `admin` is the `host:port` of the admin endpoint.
    pub fn new(admin: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Caddy(format!("cannot create HTTP client: {e}")))?;
        Ok(CaddyAdmin {
            http,
            base: format!("http://{admin}"),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::Caddy(format!("{method} {url}: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| Error::Caddy(format!("{method} {url}: reading the answer: {e}")))?;
        Ok((status, text))
    }

    fn fail(method: &str, path: &str, status: StatusCode, text: &str) -> Error {
        Error::Caddy(format!(
            "{method} {path} answered {status}: {}",
            text.trim()
        ))
    }

    /// Creates the berth server if Caddy has none; returns whether it did.
    pub async fn ensure_server(&self, ingress_http: u16) -> Result<bool> {
        let (status, text) = self.call(Method::GET, SERVER_PATH, None).await?;
        // An empty config answers `null`, or 400 "invalid traversal path" when a parent
        // (`apps`, `http`, `servers`) is missing too.
        let missing = (status.is_success() && text.trim() == "null")
            || (status == StatusCode::BAD_REQUEST && text.contains("invalid traversal path"));
        if !missing {
            if !status.is_success() {
                return Err(Self::fail("GET", SERVER_PATH, status, &text));
            }
            return Ok(false);
        }
        let body = server_json(ingress_http);
        let (status, text) = self.call(Method::PUT, SERVER_PATH, Some(&body)).await?;
        if !status.is_success() {
            return Err(Self::fail("PUT", SERVER_PATH, status, &text));
        }
        Ok(true)
    }

    /// Whether the catch-all route is there (false after Caddy restarted without our config).
    pub async fn has_catchall(&self) -> Result<bool> {
        let path = format!("/id/{CATCHALL_ID}");
        let (status, text) = self.call(Method::GET, &path, None).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(Self::fail("GET", &path, s, &text)),
        }
    }

    /// Creates or replaces the route of `route.domain`.
    pub async fn upsert_route(&self, route: &Route) -> Result<()> {
        let body = route_json(route);
        let path = format!("/id/{}", route_id(&route.domain));
        let (status, text) = self.call(Method::PATCH, &path, Some(&body)).await?;
        if status.is_success() {
            return Ok(());
        }
        if status != StatusCode::NOT_FOUND {
            return Err(Self::fail("PATCH", &path, status, &text));
        }
        let insert = format!("{SERVER_PATH}/routes/0");
        let (status, text) = self.call(Method::PUT, &insert, Some(&body)).await?;
        if !status.is_success() {
            return Err(Self::fail("PUT", &insert, status, &text));
        }
        Ok(())
    }

    /// Removes the route of `domain`; a route that is not there is fine.
    pub async fn delete_route(&self, domain: &str) -> Result<()> {
        let path = format!("/id/{}", route_id(domain));
        let (status, text) = self.call(Method::DELETE, &path, None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(Self::fail("DELETE", &path, status, &text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::Upstream;

    pub fn route(domain: &str, dials: &[&str]) -> Route {
        Route {
            domain: domain.into(),
            app: "web".into(),
            upstreams: dials
                .iter()
                .map(|d| Upstream {
                    dial: (*d).into(),
                    node: "n1".into(),
                    container: "c".into(),
                    deployment: "d".into(),
                })
                .collect(),
            updated_at: 1,
        }
    }

    #[test]
    fn route_ids() {
        assert_eq!(route_id("web.example.com"), "berth_route_web_example_com");
        assert_eq!(route_id("localhost"), "berth_route_localhost");
    }

    #[test]
    fn route_json_shape() {
        let v = route_json(&route("a.localhost", &["127.0.0.1:49153", "10.0.0.2:4000"]));
        assert_eq!(
            v,
            json!({
                "@id": "berth_route_a_localhost",
                "match": [{"host": ["a.localhost"]}],
                "handle": [{"handler": "reverse_proxy", "upstreams": [
                    {"dial": "127.0.0.1:49153"}, {"dial": "10.0.0.2:4000"}
                ]}],
                "terminal": true
            })
        );
    }

    #[test]
    fn server_json_shape() {
        let v = server_json(8080);
        assert_eq!(v["listen"], json!([":8080"]));
        assert_eq!(v["automatic_https"]["disable"], json!(true));
        assert_eq!(v["routes"][0]["@id"], json!(CATCHALL_ID));
        assert_eq!(v["routes"][0]["handle"][0]["status_code"], json!(404));
    }
}
