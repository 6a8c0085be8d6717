//! Caddy's admin API as this node uses it: the JSON of the `berth` server and of one route per
//! domain, and a small client for the few calls the [`crate::router::Router`] makes.
//!
//! Only the router calls this (it is the only writer of the node's Caddy). Caddy 2.6.2 wants
//! `Content-Type: application/json` on mutations; PUT is strict-create; a PUT at an array index
//! inserts there, which keeps new routes ahead of the catch-all.
//!
//! HTTPS ([`Https::On`], `node.https`): the berth server listens on both ingress ports and Caddy's
//! automatic HTTPS gets a certificate for every domain its routes' host matchers name, from the
//! issuer set in `apps.tls` (Caddy's own CA, its root never put in the system's trust store, or an
//! ACME CA). Caddy's own redirects are off: it would insert them after the routes of the domains
//! (whose plain-HTTP requests would be served first) and name no port when the HTTPS port is
//! Caddy's `https_port`; instead each route answers plain HTTP with a 308 to `https://` itself.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// `@id` of the catch-all 404 route; its absence means Caddy lost its config.
pub const CATCHALL_ID: &str = "berth_catchall";
/// Path of the berth HTTP server in Caddy's config.
pub const SERVER_PATH: &str = "/config/apps/http/servers/berth";
/// Path of Caddy's apps (the berth server's, and with HTTPS its `tls` and `pki`).
const APPS_PATH: &str = "/config/apps";

/// How the berth server serves apps: plain HTTP on `http`, and HTTPS as `https` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingress {
    /// The plain-HTTP port (`node.ingress_http`).
    pub http: u16,
    pub https: Https,
}

/// Whether the berth server serves HTTPS (`node.https`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Https {
    /// Plain HTTP only: Caddy's automatic HTTPS is disabled on the berth server.
    #[default]
    Off,
    /// HTTPS on `port` too, with a certificate for each app domain from `issuer`; plain HTTP for
    /// an app domain answers a 308 to the same URL over HTTPS.
    On { port: u16, issuer: Issuer },
}

/// Where the certificates of app domains come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// Caddy's own CA (`local`; its root at the admin API's `GET /pki/ca/local`). Caddy is told
    /// never to install that root in the system's trust store.
    Internal,
    /// An ACME CA: `ca` is its directory URL, `email` the account's contact (optional in ACME).
    /// Names no public CA can certify (`*.localhost`, IPs) still get Caddy's own CA.
    Acme { ca: String, email: Option<String> },
}

/// The `@id` of a domain's route: `berth_route_` + the domain with `.` replaced by `_`.
pub fn route_id(domain: &str) -> String {
    format!("berth_route_{}", domain.replace('.', "_"))
}

/// The Caddy route of one domain. Its upstreams are not in it: Caddy reads them from the
/// node's DNS responder at `resolver` (SRV `_app._tcp.<domain>.berth.internal`, re-read every
/// `resolver::REFRESH`), so the route never changes while the domain exists and moving traffic
/// reloads nothing. While no upstream answers (a node restart, a first start), a request waits
/// up to 5 s for one instead of failing at once. With HTTPS on, a plain-HTTP request answers a
/// 308 to the same URL over HTTPS (the port named unless it is 443) and only HTTPS is proxied.
pub fn route_json(domain: &str, resolver: &str, ingress: &Ingress) -> Value {
    let resolver = json!({ "addresses": [resolver] });
    let proxy = json!({
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
    });
    let handle = match &ingress.https {
        Https::Off => proxy,
        Https::On { port, .. } => {
            let port = if *port == 443 {
                String::new()
            } else {
                format!(":{port}")
            };
            json!({
                "handler": "subroute",
                "routes": [
                    {
                        "match": [{ "protocol": "http" }],
                        "handle": [{
                            "handler": "static_response",
                            "status_code": 308,
                            "headers": {
                                "Location": [format!("https://{{http.request.host}}{port}{{http.request.uri}}")],
                            },
                            "close": true,
                        }],
                    },
                    { "handle": [proxy] },
                ],
            })
        }
    };
    json!({
        "@id": route_id(domain),
        "match": [{ "host": [domain] }],
        "handle": [handle],
        "terminal": true,
    })
}

/// The berth server: HTTP on the HTTP port, a catch-all 404 route; with HTTPS on, TLS on the
/// HTTPS port too (Caddy's automatic HTTPS without its redirects: the routes redirect).
pub fn server_json(ingress: &Ingress) -> Value {
    let catchall = json!({
        "@id": CATCHALL_ID,
        "handle": [{
            "handler": "static_response",
            "status_code": 404,
            "body": "no app is deployed at this host\n",
        }],
    });
    match &ingress.https {
        Https::Off => json!({
            "listen": [format!(":{}", ingress.http)],
            "automatic_https": { "disable": true },
            "routes": [catchall],
        }),
        Https::On { port, .. } => json!({
            "listen": [format!(":{}", ingress.http), format!(":{port}")],
            "automatic_https": { "disable_redirects": true },
            // TLS on every listener but the app's `http_port`, also while no route names a domain.
            "tls_connection_policies": [{}],
            "routes": [catchall],
        }),
    }
}

/// Caddy's `apps` as this node wants them, from the `current` ones (`null` when Caddy has none):
/// the berth server as [`server_json`] makes it, keeping the routes it has; and with HTTPS on,
/// `http.http_port` (so Caddy knows which listener is plain), the issuer as the policy of every
/// name (`tls.automation`), and the `local` CA's `install_trust` off. Anything else in `current`
/// is kept; with HTTPS off, `tls` and `pki` are left as they are (nothing of the berth server uses
/// them then).
pub fn apps_json(current: &Value, ingress: &Ingress) -> Value {
    let mut apps = match current {
        Value::Object(_) => current.clone(),
        _ => json!({}),
    };
    let mut server = server_json(ingress);
    if let Some(routes) = apps.pointer("/http/servers/berth/routes") {
        server["routes"] = routes.clone();
    }
    *entry(&mut apps, &["http", "servers", "berth"]) = server;
    if let Https::On { issuer, .. } = &ingress.https {
        *entry(&mut apps, &["http", "http_port"]) = json!(ingress.http);
        let issuer = match issuer {
            Issuer::Internal => json!({ "module": "internal" }),
            Issuer::Acme { ca, email } => {
                let mut acme = json!({ "module": "acme", "ca": ca });
                if let Some(email) = email {
                    acme["email"] = json!(email);
                }
                acme
            }
        };
        *entry(&mut apps, &["tls", "automation"]) =
            json!({ "policies": [{ "issuers": [issuer] }] });
        *entry(
            &mut apps,
            &["pki", "certificate_authorities", "local", "install_trust"],
        ) = json!(false);
    }
    apps
}

/// The value at `path` under `v`, made (with objects on the way) when missing.
fn entry<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter().fold(v, |v, key| {
        if !v.is_object() {
            *v = json!({});
        }
        v.as_object_mut()
            .expect("an object")
            .entry(key.to_string())
            .or_insert(Value::Null)
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

    /// Makes Caddy's `apps` what [`apps_json`] wants for `ingress` — the berth server created
    /// when missing, or brought to this ingress (ports, HTTPS, issuer) when a node restarts with
    /// other settings — in one load, so Caddy never runs a half-changed config (its CA would be
    /// set up before `install_trust` is off). Returns whether it changed anything. The routes
    /// kept are rewritten for the ingress by the router's resync that follows.
    pub async fn ensure_server(&self, ingress: &Ingress) -> Result<bool> {
        let (status, text) = self.call(Method::GET, APPS_PATH, None).await?;
        if !status.is_success() {
            return Err(Self::fail("GET", APPS_PATH, status, &text));
        }
        // An empty config answers `null`.
        let current: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Caddy(format!("GET {APPS_PATH}: not JSON ({e}): {text}")))?;
        let wanted = apps_json(&current, ingress);
        if wanted == current {
            return Ok(false);
        }
        // POST sets (or replaces) the object at the path.
        let (status, text) = self.call(Method::POST, APPS_PATH, Some(&wanted)).await?;
        if !status.is_success() {
            return Err(Self::fail("POST", APPS_PATH, status, &text));
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
    pub async fn upsert_route(
        &self,
        domain: &str,
        resolver: &str,
        ingress: &Ingress,
    ) -> Result<()> {
        let body = route_json(domain, resolver, ingress);
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

    fn internal(http: u16, https: u16) -> Ingress {
        Ingress {
            http,
            https: Https::On {
                port: https,
                issuer: Issuer::Internal,
            },
        }
    }

    fn plain(http: u16) -> Ingress {
        Ingress {
            http,
            https: Https::Off,
        }
    }

    #[test]
    fn route_json_shape() {
        let v = route_json("a.localhost", "127.0.0.1:5380", &plain(8080));
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
    fn with_https_a_route_redirects_plain_http_and_proxies_the_rest() {
        let off = route_json("a.example.com", "127.0.0.1:5380", &plain(80));
        let v = route_json("a.example.com", "127.0.0.1:5380", &internal(8080, 8443));
        // Same id and host matcher: the router's upserts and deletes find it in either mode.
        assert_eq!((&v["@id"], &v["match"]), (&off["@id"], &off["match"]));
        assert_eq!(v["terminal"], json!(true));
        let sub = &v["handle"][0];
        assert_eq!(sub["handler"], "subroute");
        assert_eq!(
            sub["routes"][0],
            json!({
                "match": [{"protocol": "http"}],
                "handle": [{
                    "handler": "static_response",
                    "status_code": 308,
                    "headers": {"Location": ["https://{http.request.host}:8443{http.request.uri}"]},
                    "close": true
                }]
            })
        );
        // Everything else (HTTPS) goes to the app exactly as with HTTPS off.
        assert_eq!(
            sub["routes"][1],
            json!({"handle": [off["handle"][0].clone()]})
        );
        assert_eq!(sub["routes"].as_array().unwrap().len(), 2);
        // The standard port is not named.
        let v = route_json("a.example.com", "127.0.0.1:5380", &internal(80, 443));
        assert_eq!(
            v["handle"][0]["routes"][0]["handle"][0]["headers"]["Location"],
            json!(["https://{http.request.host}{http.request.uri}"])
        );
    }

    #[test]
    fn server_json_shape() {
        let v = server_json(&plain(8080));
        assert_eq!(v["listen"], json!([":8080"]));
        assert_eq!(v["automatic_https"], json!({"disable": true}));
        assert!(v.get("tls_connection_policies").is_none());
        assert_eq!(v["routes"][0]["@id"], json!(CATCHALL_ID));
        assert_eq!(v["routes"][0]["handle"][0]["status_code"], json!(404));
        assert_eq!(v["routes"].as_array().unwrap().len(), 1);

        let v = server_json(&internal(80, 443));
        assert_eq!(v["listen"], json!([":80", ":443"]));
        assert_eq!(v["automatic_https"], json!({"disable_redirects": true}));
        assert_eq!(v["tls_connection_policies"], json!([{}]));
        assert_eq!(v["routes"], server_json(&plain(80))["routes"]);
    }

    #[test]
    fn apps_json_from_nothing_for_each_mode() {
        let off = apps_json(&Value::Null, &plain(8080));
        assert_eq!(
            off,
            json!({"http": {"servers": {"berth": server_json(&plain(8080))}}})
        );

        let v = apps_json(&Value::Null, &internal(8080, 8443));
        assert_eq!(v["http"]["http_port"], json!(8080));
        assert_eq!(
            v["http"]["servers"]["berth"],
            server_json(&internal(8080, 8443))
        );
        assert_eq!(
            v["tls"],
            json!({"automation": {"policies": [{"issuers": [{"module": "internal"}]}]}})
        );
        // Never the system's trust store.
        assert_eq!(
            v["pki"],
            json!({"certificate_authorities": {"local": {"install_trust": false}}})
        );

        let acme = |email: Option<&str>| Ingress {
            http: 80,
            https: Https::On {
                port: 443,
                issuer: Issuer::Acme {
                    ca: "https://acme.example/directory".into(),
                    email: email.map(str::to_string),
                },
            },
        };
        let v = apps_json(&Value::Null, &acme(Some("ops@example.com")));
        assert_eq!(
            v["tls"]["automation"]["policies"],
            json!([{"issuers": [{"module": "acme", "ca": "https://acme.example/directory", "email": "ops@example.com"}]}])
        );
        assert_eq!(
            v["pki"]["certificate_authorities"]["local"]["install_trust"],
            json!(false)
        );
        let v = apps_json(&Value::Null, &acme(None));
        assert_eq!(
            v["tls"]["automation"]["policies"][0]["issuers"],
            json!([{"module": "acme", "ca": "https://acme.example/directory"}])
        );
    }

    #[test]
    fn apps_json_converges_an_existing_config_and_keeps_its_routes() {
        let route = route_json("a.localhost", "127.0.0.1:5380", &plain(8080));
        let mut before = apps_json(&Value::Null, &plain(8080));
        before["http"]["servers"]["berth"]["routes"] =
            json!([route, server_json(&plain(8080))["routes"][0]]);
        before["http"]["servers"]["other"] = json!({"listen": [":9999"]});
        // Nothing to change: the same value, so no reload.
        assert_eq!(apps_json(&before, &plain(8080)), before);

        // Another mode (or port): the frame changes, routes and other servers stay.
        let after = apps_json(&before, &internal(8080, 8443));
        assert_ne!(after, before);
        let server = &after["http"]["servers"]["berth"];
        assert_eq!(server["listen"], json!([":8080", ":8443"]));
        assert_eq!(
            server["routes"],
            before["http"]["servers"]["berth"]["routes"]
        );
        assert_eq!(
            after["http"]["servers"]["other"],
            json!({"listen": [":9999"]})
        );
        assert_eq!(apps_json(&after, &internal(8080, 8443)), after, "converged");

        // Back off: automatic HTTPS disabled again; tls and pki are left (unused).
        let back = apps_json(&after, &plain(8080));
        assert_eq!(
            back["http"]["servers"]["berth"],
            before["http"]["servers"]["berth"]
        );
        assert_eq!(back["tls"], after["tls"]);
        assert_eq!(
            apps_json(&before, &plain(8081))["http"]["servers"]["berth"]["listen"],
            json!([":8081"])
        );

        // An issuer change is a change.
        let acme = Ingress {
            http: 8080,
            https: Https::On {
                port: 8443,
                issuer: Issuer::Acme {
                    ca: "https://acme.example/directory".into(),
                    email: None,
                },
            },
        };
        assert_ne!(apps_json(&after, &acme)["tls"], after["tls"]);
    }
}
