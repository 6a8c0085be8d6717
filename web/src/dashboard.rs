//! The dashboard: a page at `/` and its files under `/ui/`, embedded in the binary
//! (`include_str!`, no build step, no npm), served without a token.
//!
//! Nothing here is secret: the page asks for an API token (or takes it from a `/#token=…` link)
//! and every API call it makes sends `Authorization: Bearer`, so the API's own checks — scopes,
//! the failed-token allowance, the audit log — apply to the dashboard exactly as to the CLI.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles, images and
//! connections from this origin only, no inline script or style, no framing, no `<base>`, no
//! form posting elsewhere — the page makes no third-party request.

use warp::http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The policy of every dashboard answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The page itself.
const INDEX: &str = include_str!("../assets/index.html");

/// A JavaScript module of `web/assets/`.
macro_rules! js {
    ($name:literal) => {
        (
            $name,
            "text/javascript; charset=utf-8",
            include_str!(concat!("../assets/", $name)),
        )
    };
}

/// The files under `/ui/`: name, content type, text.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../assets/icon.svg"),
    ),
    js!("main.js"),
    js!("api.js"),
    js!("sse.js"),
    js!("dom.js"),
    js!("apps.js"),
    js!("app.js"),
    js!("deployments.js"),
    js!("monitoring.js"),
    js!("config.js"),
    js!("resources.js"),
    js!("logs.js"),
    js!("nodes.js"),
    js!("forms.js"),
    js!("newapp.js"),
    js!("tokens.js"),
    js!("audit.js"),
    js!("events.js"),
];

/// The asset called `name`, with its content type.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ty, body)| (*ty, *body))
}

/// `GET /` (the page) and `GET /ui/{file}`; an unknown file is the API's 404.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let index = warp::path::end()
        .and(warp::get())
        .map(|| page("text/html; charset=utf-8", INDEX));
    let file = warp::path!("ui" / String)
        .and(warp::get())
        .and_then(|name: String| async move {
            match asset(&name) {
                Some((ty, body)) => Ok(page(ty, body)),
                None => Err(warp::reject::not_found()),
            }
        });
    index.or(file).unify()
}

/// What [`export`] refuses as the API's address, if anything: it must be `http://` or `https://`
/// and a host, maybe a port and a path, with nothing a page's markup would have to escape.
pub fn api_base_error(api: &str) -> Option<String> {
    let rest = api
        .strip_prefix("https://")
        .or_else(|| api.strip_prefix("http://"));
    let problem = match rest {
        None => "it starts with http:// or https://",
        Some(r) if r.is_empty() || r.starts_with('/') => "it names no host",
        Some(r)
            if r.contains(['?', '#', '@', '"', '\'', '<', '>', '&', '\\', ' '])
                || r.contains(char::is_control) =>
        {
            "it is the API's base URL: no query, fragment, user or markup"
        }
        Some(_) => return None,
    };
    Some(format!(
        "{api:?} is not the API's address ({problem}), e.g. https://berth.example.com:7700"
    ))
}

/// The dashboard's files for a web server of your own, talking to the API at `api` (which
/// must list that server's origin in `api.cors_origins`): `index.html` naming the API in its
/// `berth-api` meta and carrying the policy as a meta (`connect-src` the API's origin; the
/// headers Berth sends cannot travel in a file), and `ui/<file>` for every asset. Relative
/// paths, so the copy may live under any path.
pub fn export(api: &str) -> Result<Vec<(String, String)>, String> {
    if let Some(e) = api_base_error(api) {
        return Err(e);
    }
    let api = api.trim_end_matches('/');
    let scheme_end = api.find("://").map_or(0, |i| i + 3);
    let origin = match api[scheme_end..].find('/') {
        Some(i) => &api[..scheme_end + i],
        None => api,
    };
    let policy = CSP
        .replace("connect-src 'self'", &format!("connect-src {origin}"))
        .replace("; frame-ancestors 'none'", "");
    let meta = r#"<meta name="berth-api" content="">"#;
    assert!(INDEX.contains(meta), "index.html names the API in a meta");
    let index = INDEX.replace(
        meta,
        &format!(
            "<meta name=\"berth-api\" content=\"{api}\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">"
        ),
    );
    let mut files = vec![("index.html".to_string(), index)];
    files.extend(
        ASSETS
            .iter()
            .map(|(n, _, body)| (format!("ui/{n}"), body.to_string())),
    );
    Ok(files)
}

/// An embedded file with the dashboard's headers. `no-cache`: a browser asks again each time
/// (the files are small and change with the binary, which has no version in their names).
fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file is served with its type and the policy (the routes themselves are exercised
    /// through a real server in tests/tests/dashboard.rs).
    #[test]
    fn files_carry_their_type_and_a_strict_policy() {
        let r = page("text/html; charset=utf-8", INDEX);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(r.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(INDEX.contains(r#"src="ui/main.js""#), "{INDEX}");
        assert_eq!(
            asset("sse.js").map(|(ty, _)| ty),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            asset("app.css").map(|(ty, _)| ty),
            Some("text/css; charset=utf-8")
        );
        assert!(asset("nothing.js").is_none());
        assert!(asset("../lib.rs").is_none());
    }

    /// The exported copy names the API and keeps a policy that lets it reach that origin only;
    /// an address that is not one is refused with the reason.
    #[test]
    fn an_export_names_its_api() {
        let files = export("https://berth.example.com:7700/").unwrap();
        let index = &files.iter().find(|(n, _)| n == "index.html").unwrap().1;
        assert!(
            index.contains(r#"<meta name="berth-api" content="https://berth.example.com:7700">"#),
            "{index}"
        );
        assert!(
            index.contains("connect-src https://berth.example.com:7700;"),
            "{index}"
        );
        assert!(!index.contains("connect-src 'self'"), "{index}");
        assert!(!index.contains("frame-ancestors"), "{index}");
        assert_eq!(files.len(), ASSETS.len() + 1);
        assert!(files
            .iter()
            .any(|(n, body)| n == "ui/main.js" && !body.is_empty()));
        let proxied = export("https://example.com/berth").unwrap();
        assert!(proxied[0].1.contains("connect-src https://example.com;"));
        for bad in [
            "berth.example.com",
            "ftp://x",
            "https://",
            "https:///x",
            "https://x/?a=1",
            "https://x/\"><script>",
        ] {
            let e = export(bad).unwrap_err();
            assert!(e.contains("is not the API's address"), "{bad}: {e}");
        }
    }

    /// No inline script or style anywhere (the policy would block it, silently) and nothing
    /// loaded from another origin; every module the page imports is served.
    #[test]
    fn the_files_need_nothing_the_policy_forbids() {
        let files = std::iter::once(INDEX).chain(ASSETS.iter().map(|(_, _, body)| *body));
        for text in files {
            // The SVG namespace is a name, not an address anything is loaded from.
            let text = &text
                .replace(r#"xmlns="http://www.w3.org/2000/svg""#, "")
                .replace(r#""http://www.w3.org/2000/svg""#, "");
            assert!(!text.contains(" style=\""), "inline style in\n{text}");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{text}"
            );
            assert!(
                !text.contains("innerHTML"),
                "DOM built from nodes, not markup"
            );
        }
        assert!(!INDEX.contains("<script>"), "inline script");
        for (i, _) in INDEX.match_indices(" on") {
            let rest = &INDEX[i + 3..];
            let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            assert!(
                !rest[word.len()..].starts_with('='),
                "inline handler on{word}"
            );
        }
        for (name, _, body) in ASSETS {
            for import in body.split("from \"./").skip(1) {
                let file = import.split('"').next().unwrap_or_default();
                assert!(
                    asset(file).is_some(),
                    "{name} imports {file}, which is not served"
                );
            }
        }
    }
}
