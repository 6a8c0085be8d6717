//! The examples/hello app the tests deploy: where it is, and its page at a given version.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// How examples/hello's page shows version `v`.
pub fn version_marker(v: &str) -> String {
    format!("<span id=\"version\">{v}</span>")
}

/// The example app's page with its version replaced.
pub fn hello_page(version: &str) -> String {
    let page = std::fs::read_to_string(repo_root().join("examples/hello/www/index.html"))
        .expect("examples/hello/www/index.html");
    page.replace(
        "<span id=\"version\">1</span>",
        &format!("<span id=\"version\">{version}</span>"),
    )
}

/// examples/hello's Dockerfile with a build step of `secs` seconds that the layer cache never
/// answers (a unique echo): a build long enough to do things to while it runs.
pub fn slow_dockerfile(secs: u32) -> String {
    format!(
        "FROM busybox\nRUN echo {} && sleep {secs}\nCOPY www /www\nCMD [\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]\n",
        crate::unique("layer")
    )
}
