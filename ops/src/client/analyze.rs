//! `berth analyze [DIR|URL]`: what the `auto` (or `static`) build pack would build — what it
//! found and why, the port, the start command and the generated Dockerfile. A local directory is
//! analysed here, with no server (`berth-packs`, the same code the nodes run); a repository URL
//! (or `--app`) goes through `POST /api/v1/analyze`, which clones it on the coordinator.

use std::path::Path;

use anyhow::Result;
use berth_protocol::api::{Analysis, Analyze};
use berth_protocol::BuildPack;
use reqwest::Method;

use super::args::AnalyzeArgs;
use super::http::Client;
use super::render::print;
use super::Failed;

/// Whether `a` names a directory on this machine to analyse without the API: a work tree, not a
/// bare repository (`HEAD` and `objects/` at its top), which has no files to read and goes to
/// the coordinator like a URL.
pub fn is_local(a: &AnalyzeArgs) -> bool {
    let dir = Path::new(&a.target);
    let bare = dir.join("HEAD").is_file() && dir.join("objects").is_dir();
    a.app.is_none() && dir.is_dir() && !bare
}

/// Analyses a local directory with the `[packs]` images of the configuration.
pub fn local(images: &berth_packs::Images, json: bool, a: AnalyzeArgs) -> Result<()> {
    let pack = a.build_pack.unwrap_or(BuildPack::Auto);
    let dir = berth_packs::context_dir(Path::new(&a.target), a.context.as_deref().unwrap_or("."))
        .map_err(Failed)?;
    let analysis = berth_packs::analyze(
        &dir,
        &berth_packs::Options {
            pack,
            static_dir: a.static_dir.as_deref(),
            port: None,
            images,
        },
    )
    .map_err(Failed)?;
    print(json, &analysis, |an| print!("{}", text(pack, an)))
}

/// Asks the API to analyse a repository (or an app's).
pub(super) async fn remote(c: &Client, json: bool, a: AnalyzeArgs) -> Result<()> {
    let req = Analyze {
        // A local bare repository is sent as an absolute path (the server resolves it).
        repo: match &a.app {
            None => Some(super::apps::repo_arg(&a.target)?),
            Some(_) => None,
        },
        git_ref: a.git_ref,
        app: a.app,
        context: a.context,
        build_pack: a.build_pack,
        static_dir: a.static_dir,
    };
    let pack = req.build_pack.unwrap_or(BuildPack::Auto);
    let analysis: Analysis = c.call(Method::POST, &["analyze"], Some(&req)).await?;
    print(json, &analysis, |an| print!("{}", text(pack, an)))
}

/// The analysis as text: the pack, why, the port and start command, then the Dockerfile.
pub fn text(pack: BuildPack, a: &Analysis) -> String {
    let mut out = format!("pack:  {} (build pack {pack})\nwhy:\n", a.kind);
    for r in &a.reasons {
        out.push_str(&format!("  - {r}\n"));
    }
    out.push_str(&format!(
        "port:  {}\nstart: {}\n\nDockerfile:\n",
        a.port, a.start
    ));
    for l in a.dockerfile.lines() {
        out.push_str(&format!("  {l}\n"));
    }
    out
}
