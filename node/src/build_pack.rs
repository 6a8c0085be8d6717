//! The Dockerfile a build uses, by the app's build pack: its own (`dockerfile`), or one the
//! analysis of the checkout generates (`auto`, `static`; the pure part is the `berth-packs`
//! crate), written into the build context as [`GENERATED_DOCKERFILE`]. Blocking file work: run
//! it off the async runtime.

use std::io::{Read, Write};
use std::path::Path;

use berth_packs::{Images, Options, GENERATED_DOCKERFILE};
use berth_protocol::api::Analysis;
use berth_protocol::messages::{cap_dockerfile, DOCKERFILE_MAX};
use berth_protocol::{App, BuildPack};

use crate::error::{Error, Result};
use crate::image_build::resolve_context;

/// What a build is given.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The Dockerfile's path relative to the app's context.
    pub dockerfile: String,
    /// Its text as the deployment record keeps it (capped).
    pub text: String,
    /// What the analysis found (`auto`, `static`).
    pub analysis: Option<Analysis>,
    /// The repository had a file of its own at [`GENERATED_DOCKERFILE`], which was replaced.
    pub replaced: bool,
}

/// Prepares the Dockerfile of `app` in the checkout at `root`.
pub fn prepare(root: &Path, app: &App, images: &Images) -> Result<Prepared> {
    if app.build_pack == BuildPack::Dockerfile {
        let (ctx, rel) = resolve_context(root, &app.context, &app.dockerfile)?;
        let mut text = String::new();
        std::fs::File::open(ctx.join(&rel))
            .and_then(|f| f.take(DOCKERFILE_MAX as u64 * 2).read_to_string(&mut text))
            .map_err(|e| Error::Invalid(format!("cannot read dockerfile {rel:?}: {e}")))?;
        return Ok(Prepared {
            dockerfile: app.dockerfile.clone(),
            text: cap_dockerfile(&text),
            analysis: None,
            replaced: false,
        });
    }
    let pack = app.build_pack;
    let ctx = berth_packs::context_dir(root, &app.context).map_err(Error::Invalid)?;
    let analysis = berth_packs::analyze(
        &ctx,
        &Options {
            pack,
            static_dir: app.static_dir.as_deref(),
            port: Some(app.port),
            images,
        },
    )
    .map_err(|e| Error::Invalid(format!("build pack {pack}: {e}")))?;
    let path = ctx.join(GENERATED_DOCKERFILE);
    // Whatever the repository has there goes (a symlink is removed, never written through).
    let replaced = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => {
            return Err(Error::Invalid(format!(
                "build pack {pack}: the repository has a directory named {GENERATED_DOCKERFILE}, where Berth writes the Dockerfile it generates"
            )))
        }
        Ok(_) => {
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("cannot replace {GENERATED_DOCKERFILE}"), e))?;
            true
        }
        Err(_) => false,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(analysis.dockerfile.as_bytes()))
        .map_err(|e| Error::io(format!("cannot write {GENERATED_DOCKERFILE}"), e))?;
    Ok(Prepared {
        dockerfile: GENERATED_DOCKERFILE.into(),
        text: cap_dockerfile(&analysis.dockerfile),
        analysis: Some(analysis),
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(pack: BuildPack) -> App {
        let mut a: App = serde_json::from_value(serde_json::json!({
            "name": "site", "repo": "/srv/git/site.git", "branch": "main",
            "dockerfile": "Dockerfile", "context": "web", "port": 8081,
            "domains": ["site.localhost"], "created_at": 0, "updated_at": 0,
        }))
        .unwrap();
        a.build_pack = pack;
        a
    }

    #[test]
    fn a_generated_dockerfile_replaces_a_link_and_is_the_one_kept() {
        let tmp = berth_tests::TempDir::with_prefix("berth-build-pack").unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("web/public")).unwrap();
        std::fs::write(root.join("web/public/index.html"), "hi").unwrap();
        let outside = root.join("outside");
        std::fs::write(&outside, "keep me").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("web").join(GENERATED_DOCKERFILE)).unwrap();
        let p = prepare(root, &app(BuildPack::Auto), &Images::default()).unwrap();
        assert!(p.replaced);
        assert_eq!(p.dockerfile, GENERATED_DOCKERFILE);
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
        let written = std::fs::read_to_string(root.join("web").join(GENERATED_DOCKERFILE)).unwrap();
        assert_eq!(written, p.text);
        assert!(written.contains("COPY public/ /srv/www/"), "{written}");
        assert!(written.contains("EXPOSE 8081"), "{written}");
        assert_eq!(p.analysis.unwrap().kind, "static");

        // The dockerfile pack reads the app's own.
        std::fs::write(root.join("web/Dockerfile"), "FROM busybox\n").unwrap();
        let p = prepare(root, &app(BuildPack::Dockerfile), &Images::default()).unwrap();
        assert_eq!(
            (p.dockerfile.as_str(), p.text.as_str()),
            ("Dockerfile", "FROM busybox\n")
        );
        assert!(p.analysis.is_none());

        let mut a = app(BuildPack::Static);
        a.context = ".".into();
        let e = prepare(root, &a, &Images::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("build pack static: found no index.html"),
            "{e}"
        );
    }
}
