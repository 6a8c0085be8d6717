//! Caddy's admin API as this node uses it: the JSON of the `berth` server and of one route per
//! domain, and a small client for the few calls the [`crate::router::Router`] makes.
//!
//! Only the router calls this (it is the only writer of the node's Caddy). Caddy 2.6.2 wants
//! `Content-Type: application/json` on mutations; PUT is strict-create; a PUT at an array index
//! inserts there, which keeps new routes ahead of the catch-all.

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

/// The Caddy route of one domain. Its upstreams are not in it: Caddy reads them from the
/// node's DNS responder at `resolver` (SRV `_app._tcp.<domain>.berth.internal`, re-read every
/// `resolver::REFRESH`), so the route never changes while the domain exists and moving traffic
/// reloads nothing. While no upstream answers (a node restart, a first start), a request waits
/// up to 5 s for one instead of failing at once.
pub fn route_json(domain: &str, resolver: &str) -> Value {
    let resolver = json!({ "addresses": [resolver] });
    json!({
        "@id": route_id(domain),
        "match": [{ "host": [domain] }],
        "handle": [{
            "handler": "reverse_proxy",
            "dynamic_upstreams": {
                "source": "srv",
                "service": "app",
                "proto": "tcp",
                "name": crate::resolver::srv_name(domain),
                "refresh": crate::resolver::REFRESH,
                "resolver": resolver,
            },
            "transport": { "protocol": "http", "resolver": resolver },
            "load_balancing": { "try_duration": "5s", "try_interval": "100ms" },
        }],
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
        berth_bus::tls::install_provider();
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

    /// Creates or replaces the route of `domain`.
    pub async fn upsert_route(&self, domain: &str, resolver: &str) -> Result<()> {
        let body = route_json(domain, resolver);
        let path = format!("/id/{}", route_id(domain));
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

    #[test]
    fn route_ids() {
        assert_eq!(route_id("web.example.com"), "berth_route_web_example_com");
        assert_eq!(route_id("localhost"), "berth_route_localhost");
    }

    #[test]
    fn route_json_shape() {
        let v = route_json("a.localhost", "127.0.0.1:5380");
        let resolver = json!({"addresses": ["127.0.0.1:5380"]});
        assert_eq!(
            v,
            json!({
                "@id": "berth_route_a_localhost",
                "match": [{"host": ["a.localhost"]}],
                "handle": [{
                    "handler": "reverse_proxy",
                    "dynamic_upstreams": {
                        "source": "srv", "service": "app", "proto": "tcp",
                        "name": "a.localhost.berth.internal", "refresh": "100ms",
                        "resolver": resolver
                    },
                    "transport": {"protocol": "http", "resolver": resolver},
                    "load_balancing": {"try_duration": "5s", "try_interval": "100ms"}
                }],
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
