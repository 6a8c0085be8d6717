//! Cross-origin requests (CORS), for a dashboard served from another origin than the API's
//! (`api.cors_origins`; `berth export-dashboard` writes its files).
//!
//! Only the origins listed are answered with CORS headers: `Access-Control-Allow-Origin` naming
//! the request's own origin (never `*`, and no credentials: the token travels in
//! `Authorization`, not in a cookie), and a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) gets 204 with the methods and headers the API takes. A
//! request from any other origin is served exactly as without this module — no CORS header, so
//! a browser keeps the answer from the page that asked — and the same-origin dashboard, whose
//! `POST`s also carry an `Origin`, is untouched. With no origin listed nothing changes at all.

use std::sync::Arc;

use warp::http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The methods a cross-origin page may use.
const METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// The request headers it may send beyond the safelisted ones.
const HEADERS: &str = "authorization, content-type, last-event-id";
/// The answer headers its script may read beyond the safelisted ones.
const EXPOSED: &str = "retry-after, www-authenticate, allow, location";
/// How long a browser may keep a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Arc<[String]>,
}

impl Cors {
    /// The origins as configured: `scheme://host[:port]`, compared without case and without a
    /// trailing `/` (see [`origin_error`] for what is refused).
    pub fn new<S: AsRef<str>>(origins: &[S]) -> Cors {
        Cors {
            origins: origins.iter().map(|o| normalize(o.as_ref())).collect(),
        }
    }

    /// Whether no origin is listed (then the API sends no CORS header at all).
    pub fn is_off(&self) -> bool {
        self.origins.is_empty()
    }

    /// The request's `Origin` when it is one of the listed.
    fn allowed<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        let text = normalize(origin.to_str().ok()?);
        self.origins.contains(&text).then_some(origin)
    }

    /// A listed origin's preflight: 204 with what the API allows. Anything else goes on to the
    /// routes (a preflight from another origin meets the 405 of an `OPTIONS`, without CORS
    /// headers, and the browser refuses the request it was asking about).
    pub fn preflight(&self) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
        let cors = self.clone();
        warp::options()
            .and(warp::header::headers_cloned())
            .and_then(move |headers: HeaderMap| {
                let cors = cors.clone();
                async move {
                    let origin = match cors.allowed(&headers) {
                        Some(o) if headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) => o.clone(),
                        _ => return Err(warp::reject::not_found()),
                    };
                    let mut r = StatusCode::NO_CONTENT.into_response();
                    let h = r.headers_mut();
                    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                    h.insert(VARY, HeaderValue::from_static("Origin"));
                    h.insert(
                        ACCESS_CONTROL_ALLOW_METHODS,
                        HeaderValue::from_static(METHODS),
                    );
                    h.insert(
                        ACCESS_CONTROL_ALLOW_HEADERS,
                        HeaderValue::from_static(HEADERS),
                    );
                    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
                    Ok::<_, Rejection>(r)
                }
            })
    }

    /// Adds the CORS headers to `resp` when the request (its `headers`) came from a listed
    /// origin; `Vary: Origin` whenever any origin is listed, since the answer then depends on it.
    pub fn decorate(&self, headers: &HeaderMap, mut resp: Response) -> Response {
        if self.is_off() {
            return resp;
        }
        let h = resp.headers_mut();
        h.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = self.allowed(headers) {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
        }
        resp
    }
}

/// An origin without case and trailing `/`.
fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Why `origin` cannot be an entry of `api.cors_origins`, if it cannot: it must be
/// `http://` or `https://`, a host and maybe a port — no path, query, user or `*`.
pub fn origin_error(origin: &str) -> Option<String> {
    let o = normalize(origin);
    let o = o.as_str();
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"));
    let problem = match rest {
        _ if o == "*" || o == "null" => "Berth allows named origins only, not * or null",
        None => "an origin starts with http:// or https://",
        Some("") => "it names no host",
        Some(r) if r.contains(['/', '?', '#', '@', '*', ' ']) => {
            "an origin is scheme://host[:port], with no path, query, user or wildcard"
        }
        Some(_) => return None,
    };
    Some(format!(
        "api.cors_origins: {origin:?} is not an origin ({problem}), e.g. https://dash.example.com"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    #[test]
    fn only_a_listed_origin_gets_the_headers() {
        let cors = Cors::new(&["https://Dash.example.com/"]);
        let ok = cors.decorate(
            &headers("https://dash.example.com"),
            StatusCode::OK.into_response(),
        );
        assert_eq!(
            ok.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://dash.example.com"
        );
        assert_eq!(ok.headers()[VARY], "Origin");
        let other = cors.decorate(
            &headers("https://evil.example.com"),
            StatusCode::CREATED.into_response(),
        );
        // Served as ever (not refused), but nothing a browser would let the page read.
        assert_eq!(other.status(), StatusCode::CREATED);
        assert!(!other.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(other.headers()[VARY], "Origin");
        let none = cors.decorate(&HeaderMap::new(), StatusCode::OK.into_response());
        assert!(!none.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[test]
    fn nothing_changes_when_no_origin_is_listed() {
        let cors = Cors::new::<&str>(&[]);
        let r = cors.decorate(
            &headers("https://dash.example.com"),
            StatusCode::OK.into_response(),
        );
        assert!(r.headers().is_empty(), "{:?}", r.headers());
    }

    #[tokio::test]
    async fn a_listed_origins_preflight_is_answered() {
        let cors = Cors::new(&["http://localhost:8080"]);
        let r = warp::test::request()
            .method("OPTIONS")
            .path("/api/v1/apps")
            .header("origin", "http://localhost:8080")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .filter(&cors.preflight())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:8080"
        );
        assert!(r.headers()[ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("authorization"));
        for (origin, method) in [
            ("http://localhost:9999", Some("POST")),
            ("http://localhost:8080", None),
        ] {
            let mut req = warp::test::request()
                .method("OPTIONS")
                .path("/api/v1/apps")
                .header("origin", origin);
            if let Some(m) = method {
                req = req.header("access-control-request-method", m);
            }
            assert!(
                req.filter(&cors.preflight()).await.is_err(),
                "{origin} {method:?}"
            );
        }
    }

    #[test]
    fn origins_are_checked() {
        for ok in [
            "https://dash.example.com",
            "http://127.0.0.1:8080/",
            "HTTPS://A.B",
        ] {
            assert_eq!(origin_error(ok), None, "{ok}");
        }
        for bad in [
            "*",
            "null",
            "dash.example.com",
            "https://",
            "https://dash.example.com/ui",
            "https://user@dash.example.com",
            "ftp://dash.example.com",
        ] {
            let e = origin_error(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains("api.cors_origins"), "{e}");
        }
    }
}
