//! Build packs: what Berth builds from a source tree that has no Dockerfile of its own.
//!
//! [`analyze`] reads a checked-out directory — a few named files, never following a symlink,
//! none larger than [`READ_MAX`] — and answers an [`Analysis`]: what it found (a static site,
//! Node, Python, Go or Rust), why (one sentence per file that decided it), the port, the start
//! command and the Dockerfile that builds it. Deterministic and pure: the same tree gives the
//! same text, nothing runs, nothing is written. The node writes the Dockerfile into the checkout
//! and builds with it (`node/src/pipeline/deploy.rs`); the coordinator analyses a shallow clone
//! for `POST /api/v1/analyze`; `berth analyze DIR` analyses a local directory.
//!
//! The first rule that matches wins, in this order: Node, Python, Go, Rust, then a static site
//! (a server app may carry a `public/index.html` of its own).

use std::path::{Path, PathBuf};

use berth_protocol::api::Analysis;
use berth_protocol::{validate, BuildPack};
use serde::{Deserialize, Serialize};

/// Where the node writes a generated Dockerfile, relative to the build context (a file of the
/// repository with that name is replaced).
pub const GENERATED_DOCKERFILE: &str = ".berth.Dockerfile";

/// The largest file the analysis reads; a larger one counts as absent.
pub const READ_MAX: u64 = 1024 * 1024;

/// The base images of the generated Dockerfiles (settings section `[packs]`, read by the node
/// and the coordinator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Images {
    /// The static pack's web server: an image with busybox `httpd`.
    pub static_image: String,
    pub node_image: String,
    pub python_image: String,
    /// Where Go programs are compiled.
    pub go_image: String,
    /// Where Rust programs are compiled.
    pub rust_image: String,
    /// What a compiled Go or Rust program runs on.
    pub runtime_image: String,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            static_image: "busybox:latest".into(),
            node_image: "node:22-slim".into(),
            python_image: "python:3.12-slim".into(),
            go_image: "golang:1.23".into(),
            rust_image: "rust:1".into(),
            runtime_image: "debian:bookworm-slim".into(),
        }
    }
}

impl Images {
    /// Refuses an image name Docker would not take (or that would break the Dockerfile's line).
    pub fn check(&self) -> Result<(), String> {
        for (key, v) in [
            ("packs.static_image", &self.static_image),
            ("packs.node_image", &self.node_image),
            ("packs.python_image", &self.python_image),
            ("packs.go_image", &self.go_image),
            ("packs.rust_image", &self.rust_image),
            ("packs.runtime_image", &self.runtime_image),
        ] {
            let ok = !v.is_empty()
                && v.len() <= 255
                && !v.starts_with(['-', '.', '/', ':'])
                && v.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_' | b'/' | b':' | b'@')
                });
            if !ok {
                return Err(format!(
                    "{key} {v:?} is not an image reference: give one like node:22-slim or registry.example.com/base/node:22"
                ));
            }
        }
        Ok(())
    }
}

/// What to analyse for.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// `Auto` detects the kind; `Static` serves a directory whatever else is there.
    pub pack: BuildPack,
    /// The directory the static pack serves, relative to the analysed one (default: the one
    /// holding `index.html`: `.`, `public`, `dist` or `build`).
    pub static_dir: Option<&'a str>,
    /// The port the app is given (its `port`): the generated image listens there. `None`: each
    /// kind's usual one (static 8080, Node 3000, Python 8000, Go and Rust 8080).
    pub port: Option<u16>,
    pub images: &'a Images,
}

/// The directory of `context` inside `root`, which must stay inside it (symlinks followed).
pub fn context_dir(root: &Path, context: &str) -> Result<PathBuf, String> {
    validate::repo_path("context", context)?;
    let root = std::fs::canonicalize(root)
        .map_err(|e| format!("cannot open the source tree {}: {e}", root.display()))?;
    let dir = std::fs::canonicalize(root.join(context))
        .map_err(|e| format!("context {context:?} not found in the repository ({e})"))?;
    if !dir.starts_with(&root) {
        return Err(format!("context {context:?} leads outside the repository"));
    }
    if !dir.is_dir() {
        return Err(format!("context {context:?} is not a directory"));
    }
    Ok(dir)
}

/// Analyses the tree at `dir` (the app's build context). An `Err` is one sentence a person
/// reads: what was looked for, and what was found that came close.
pub fn analyze(dir: &Path, o: &Options) -> Result<Analysis, String> {
    let tree = Tree { dir };
    match o.pack {
        BuildPack::Dockerfile => Err(
            "the dockerfile build pack builds with the app's own Dockerfile: there is nothing to analyse (use auto or static)"
                .into(),
        ),
        BuildPack::Static => static_site(&tree, o, &mut Vec::new())?.ok_or_else(|| {
            "found no index.html at the root or in public/, dist/ or build/: give the directory to serve with static_dir (--static-dir)".into()
        }),
        BuildPack::Auto => {
            let mut near = Vec::new();
            for kind in [node, python, go, rust] {
                if let Some(a) = kind(&tree, o, &mut near)? {
                    return Ok(a);
                }
            }
            if let Some(a) = static_site(&tree, o, &mut near)? {
                return Ok(a);
            }
            let mut msg = String::from(
                "found nothing Berth can build without a Dockerfile: it looks for index.html (at the root or in public/, dist/ or build/), \
                 package.json with a \"start\" script, requirements.txt or pyproject.toml with app.py, main.py, wsgi.py or asgi.py, \
                 go.mod with a main package, or Cargo.toml with a binary",
            );
            if !near.is_empty() {
                msg.push_str(&format!(" ({})", near.join("; ")));
            }
            msg.push_str("; add a Dockerfile and use the dockerfile build pack");
            Err(msg)
        }
    }
}

/// Reads files of the analysed directory: regular files only (a symlink is not followed: a
/// clone must not make the analysis read the host's files), at most [`READ_MAX`] bytes.
struct Tree<'a> {
    dir: &'a Path,
}

impl Tree<'_> {
    fn is_file(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.dir.join(rel)).is_ok_and(|m| m.is_file())
    }

    fn is_dir(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.dir.join(rel)).is_ok_and(|m| m.is_dir())
    }

    fn read(&self, rel: &str) -> Option<String> {
        let path = self.dir.join(rel);
        let m = std::fs::symlink_metadata(&path).ok()?;
        if !m.is_file() || m.len() > READ_MAX {
            return None;
        }
        std::fs::read_to_string(path).ok()
    }

    /// The names in `rel` (sorted), directories or files as `dirs` says; none when unreadable.
    fn entries(&self, rel: &str, dirs: bool) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join(rel))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_type()
                    .is_ok_and(|t| if dirs { t.is_dir() } else { t.is_file() })
            })
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// `["a", "b"]` as the JSON form of a Dockerfile `CMD`.
fn exec_form(args: &[&str]) -> String {
    serde_json::to_string(args).unwrap_or_default()
}

fn header(kind: &str) -> String {
    format!("# Generated by Berth's {kind} build pack (`berth analyze` says why).\n")
}

/// A name safe in a path and a Dockerfile line.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with(['-', '.'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn static_site(t: &Tree, o: &Options, near: &mut Vec<String>) -> Result<Option<Analysis>, String> {
    let mut reasons = Vec::new();
    let dir = match o.static_dir {
        Some(d) => {
            validate::repo_path("static_dir", d)?;
            let root = std::fs::canonicalize(t.dir)
                .map_err(|e| format!("cannot open the source tree {}: {e}", t.dir.display()))?;
            match std::fs::canonicalize(root.join(d)) {
                Ok(full) if full.starts_with(&root) && full.is_dir() => {}
                Ok(full) if full.starts_with(&root) => {
                    return Err(format!("static_dir {d:?} is not a directory"))
                }
                Ok(_) => return Err(format!("static_dir {d:?} leads outside the build context")),
                Err(e) => {
                    return Err(format!(
                        "static_dir {d:?} not found in the build context ({e})"
                    ))
                }
            }
            reasons.push(format!("serving {d}/ (static_dir)"));
            if !t.is_file(&format!("{d}/index.html")) {
                reasons.push(format!(
                    "found no {d}/index.html: / answers 404, the files are served by their paths"
                ));
            }
            d.trim_end_matches('/').to_string()
        }
        None => {
            let found = [".", "public", "dist", "build"]
                .into_iter()
                .find(|d| t.is_file(&format!("{d}/index.html")));
            match found {
                Some(d) => {
                    reasons.push(match d {
                        "." => "found index.html at the root".to_string(),
                        d => format!("found {d}/index.html"),
                    });
                    d.to_string()
                }
                None => {
                    if t.is_dir("public") || t.is_dir("dist") || t.is_dir("build") {
                        near.push("found public/, dist/ or build/ but no index.html in it".into());
                    }
                    return Ok(None);
                }
            }
        }
    };
    let port = o.port.unwrap_or(8080);
    let port_s = port.to_string();
    let cmd = ["httpd", "-f", "-v", "-p", port_s.as_str(), "-h", "/srv/www"];
    let source = if dir == "." {
        ".".to_string()
    } else {
        format!("{dir}/")
    };
    let dockerfile = format!(
        "{}FROM {}\nCOPY {source} /srv/www/\nEXPOSE {port}\nCMD {}\n",
        header("static"),
        o.images.static_image,
        exec_form(&cmd)
    );
    reasons.push(format!(
        "busybox httpd serves it on port {port} ({})",
        o.images.static_image
    ));
    Ok(Some(Analysis {
        kind: "static".into(),
        reasons,
        port,
        start: cmd.join(" "),
        dockerfile,
    }))
}

fn node(t: &Tree, o: &Options, near: &mut Vec<String>) -> Result<Option<Analysis>, String> {
    let Some(text) = t.read("package.json") else {
        return Ok(None);
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            near.push(format!("found package.json, but it is not JSON ({e})"));
            return Ok(None);
        }
    };
    let scripts = &json["scripts"];
    let Some(start) = scripts["start"].as_str().filter(|s| !s.trim().is_empty()) else {
        near.push("found package.json, but it has no \"start\" script".into());
        return Ok(None);
    };
    let mut reasons = vec![format!(
        "found package.json with a start script: {}",
        start.trim()
    )];
    let port = o.port.unwrap_or(3000);
    let lock = t.is_file("package-lock.json");
    let build = scripts["build"]
        .as_str()
        .is_some_and(|s| !s.trim().is_empty());
    let mut df = header("node");
    df.push_str(&format!("FROM {}\nWORKDIR /app\n", o.images.node_image));
    if lock {
        reasons.push("found package-lock.json: npm ci installs exactly what it locks".into());
        df.push_str("COPY package.json package-lock.json ./\n");
    } else {
        df.push_str("COPY package.json ./\n");
    }
    let install = match (lock, build) {
        (true, true) => "npm ci",
        (true, false) => "npm ci --omit=dev",
        (false, true) => "npm install",
        (false, false) => "npm install --omit=dev",
    };
    df.push_str(&format!("RUN {install}\nCOPY . .\n"));
    if build {
        reasons.push("found a build script: the image runs npm run build".into());
        df.push_str("RUN npm run build && npm prune --omit=dev\n");
    }
    reasons.push(format!(
        "the app listens on $PORT, {port} ({})",
        o.images.node_image
    ));
    df.push_str(&format!(
        "ENV NODE_ENV=production PORT={port}\nEXPOSE {port}\nCMD {}\n",
        exec_form(&["npm", "start"])
    ));
    Ok(Some(Analysis {
        kind: "node".into(),
        reasons,
        port,
        start: "npm start".into(),
        dockerfile: df,
    }))
}

/// The name `x` of a line `x = Framework(` in a Python file.
fn assigned_from(source: &str, call: &str) -> Option<String> {
    source.lines().find_map(|l| {
        let (lhs, rhs) = l.split_once('=')?;
        let name = lhs.trim();
        let ident = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        (ident && !l.starts_with([' ', '\t']) && rhs.trim_start().starts_with(call))
            .then(|| name.to_string())
    })
}

fn python(t: &Tree, o: &Options, near: &mut Vec<String>) -> Result<Option<Analysis>, String> {
    let (deps_file, deps) = match (t.read("requirements.txt"), t.read("pyproject.toml")) {
        (Some(r), _) => ("requirements.txt", r),
        (None, Some(p)) => ("pyproject.toml", p),
        (None, None) => return Ok(None),
    };
    let entries = ["app.py", "main.py", "wsgi.py", "asgi.py"];
    let Some((entry, source)) = entries.iter().find_map(|e| t.read(e).map(|s| (*e, s))) else {
        near.push(format!(
            "found {deps_file}, but none of {}",
            entries.join(", ")
        ));
        return Ok(None);
    };
    let module = entry.trim_end_matches(".py");
    let port = o.port.unwrap_or(8000);
    let mut reasons = vec![format!("found {deps_file} and {entry}")];
    let deps_lower = deps.to_ascii_lowercase();
    let asgi = ["FastAPI(", "Starlette(", "Quart("]
        .iter()
        .find_map(|c| assigned_from(&source, c).map(|v| (v, *c)));
    let wsgi = ["Flask(", "Bottle(", "Falcon(", "falcon.App("]
        .iter()
        .find_map(|c| assigned_from(&source, c).map(|v| (v, *c)));
    let bind = format!("0.0.0.0:{port}");
    let port_s = port.to_string();
    let (server, cmd): (Option<&str>, Vec<String>) = match (asgi, wsgi) {
        (Some((var, call)), _) => {
            reasons.push(format!(
                "{entry} makes an ASGI app: {var} = {call}…): uvicorn serves {module}:{var}"
            ));
            let target = format!("{module}:{var}");
            (
                Some("uvicorn"),
                [
                    "uvicorn",
                    target.as_str(),
                    "--host",
                    "0.0.0.0",
                    "--port",
                    port_s.as_str(),
                ]
                .map(String::from)
                .to_vec(),
            )
        }
        (None, Some((var, call))) => {
            reasons.push(format!(
                "{entry} makes a WSGI app: {var} = {call}…): gunicorn serves {module}:{var}"
            ));
            let target = format!("{module}:{var}");
            (
                Some("gunicorn"),
                ["gunicorn", "--bind", bind.as_str(), target.as_str()]
                    .map(String::from)
                    .to_vec(),
            )
        }
        (None, None) => {
            reasons.push(format!(
                "{entry} makes no WSGI or ASGI app Berth knows: python runs it, and it should listen on $PORT"
            ));
            (None, vec!["python".into(), entry.into()])
        }
    };
    let mut df = header("python");
    df.push_str(&format!(
        "FROM {}\nWORKDIR /app\nENV PYTHONUNBUFFERED=1 PORT={port}\n",
        o.images.python_image
    ));
    if deps_file == "requirements.txt" {
        df.push_str("COPY requirements.txt ./\nRUN pip install --no-cache-dir -r requirements.txt\nCOPY . .\n");
    } else {
        df.push_str("COPY . .\nRUN pip install --no-cache-dir .\n");
    }
    if let Some(s) = server.filter(|s| !deps_lower.contains(s)) {
        reasons.push(format!(
            "{s} is not among the dependencies in {deps_file}: the image installs it"
        ));
        df.push_str(&format!("RUN pip install --no-cache-dir {s}\n"));
    }
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    df.push_str(&format!("EXPOSE {port}\nCMD {}\n", exec_form(&args)));
    reasons.push(format!(
        "the app listens on port {port} ({})",
        o.images.python_image
    ));
    Ok(Some(Analysis {
        kind: "python".into(),
        reasons,
        port,
        start: cmd.join(" "),
        dockerfile: df,
    }))
}

/// Whether `rel` (a directory) holds a Go file of `package main`.
fn go_main(t: &Tree, rel: &str) -> bool {
    t.entries(rel, false)
        .iter()
        .filter(|n| n.ends_with(".go") && !n.ends_with("_test.go"))
        .any(|n| {
            t.read(&format!("{rel}/{n}"))
                .is_some_and(|s| s.lines().any(|l| l.trim() == "package main"))
        })
}

fn go(t: &Tree, o: &Options, near: &mut Vec<String>) -> Result<Option<Analysis>, String> {
    let Some(gomod) = t.read("go.mod") else {
        return Ok(None);
    };
    let module = gomod
        .lines()
        .find_map(|l| l.trim().strip_prefix("module "))
        .map(|m| m.trim().trim_matches('"').to_string());
    let mut reasons = vec![match &module {
        Some(m) => format!("found go.mod (module {m})"),
        None => "found go.mod".to_string(),
    }];
    let pkg = if go_main(t, ".") {
        reasons.push("found package main at the root".into());
        ".".to_string()
    } else {
        let cmds: Vec<String> = t
            .entries("cmd", true)
            .into_iter()
            .filter(|c| plain_name(c) && go_main(t, &format!("cmd/{c}")))
            .collect();
        match cmds.first() {
            Some(c) => {
                reasons.push(match cmds.len() {
                    1 => format!("found package main in cmd/{c}/"),
                    n => format!("found package main in {n} directories of cmd/: building the first, cmd/{c}/"),
                });
                format!("./cmd/{c}")
            }
            None => {
                near.push("found go.mod, but no package main at the root or in cmd/<name>/".into());
                return Ok(None);
            }
        }
    };
    let name = match pkg.strip_prefix("./cmd/") {
        Some(c) => c.to_string(),
        None => module
            .as_deref()
            .and_then(|m| m.rsplit('/').next())
            .filter(|n| plain_name(n))
            .unwrap_or("app")
            .to_string(),
    };
    let port = o.port.unwrap_or(8080);
    let mut df = header("go");
    df.push_str(&format!(
        "FROM {} AS build\nWORKDIR /src\n",
        o.images.go_image
    ));
    if t.is_file("go.sum") {
        df.push_str("COPY go.mod go.sum ./\n");
    } else {
        df.push_str("COPY go.mod ./\n");
    }
    let bin = format!("/usr/local/bin/{name}");
    df.push_str(&format!(
        "RUN go mod download\nCOPY . .\nRUN CGO_ENABLED=0 go build -o /out/{name} {pkg}\n\nFROM {}\nCOPY --from=build /out/{name} {bin}\nENV PORT={port}\nEXPOSE {port}\nCMD {}\n",
        o.images.runtime_image,
        exec_form(&[bin.as_str()])
    ));
    reasons.push(format!(
        "go build makes {name} ({}), which runs on {} and should listen on $PORT, {port}",
        o.images.go_image, o.images.runtime_image
    ));
    Ok(Some(Analysis {
        kind: "go".into(),
        reasons,
        port,
        start: bin,
        dockerfile: df,
    }))
}

/// The first `name = "…"` of each `[package]` and `[[bin]]` table of a Cargo.toml: a line
/// reading of the two keys Berth needs, not a TOML parser.
fn cargo_names(toml: &str) -> (Option<String>, Vec<String>, bool) {
    let (mut package, mut bins, mut workspace) = (None, Vec::new(), false);
    let mut section = String::new();
    for line in toml.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l.split('#').next().unwrap_or("").trim().to_string();
            workspace |= section == "[workspace]";
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        if k.trim() != "name" {
            continue;
        }
        let v = v
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        match section.as_str() {
            "[package]" if package.is_none() => package = Some(v.to_string()),
            "[[bin]]" => bins.push(v.to_string()),
            _ => {}
        }
    }
    (package, bins, workspace)
}

fn rust(t: &Tree, o: &Options, near: &mut Vec<String>) -> Result<Option<Analysis>, String> {
    let Some(toml) = t.read("Cargo.toml") else {
        return Ok(None);
    };
    let (package, bins, workspace) = cargo_names(&toml);
    let mut reasons = Vec::new();
    let name = match (bins.first(), &package) {
        (Some(b), _) => {
            reasons.push(format!("found Cargo.toml with a [[bin]] named {b}"));
            b.clone()
        }
        (None, Some(p)) if t.is_file("src/main.rs") => {
            reasons.push(format!(
                "found Cargo.toml (package {p}) and src/main.rs: the binary is {p}"
            ));
            p.clone()
        }
        _ => {
            near.push(match workspace {
                true => "found Cargo.toml, but it is a workspace with no binary of its own (analyse the member's directory as the context)".into(),
                false => "found Cargo.toml, but no binary ([[bin]] or src/main.rs)".into(),
            });
            return Ok(None);
        }
    };
    if !plain_name(&name) {
        return Err(format!(
            "the Rust binary's name {name:?} is not one Berth can use (letters, digits, '-', '_', '.')"
        ));
    }
    let port = o.port.unwrap_or(8080);
    let bin = format!("/usr/local/bin/{name}");
    let df = format!(
        "{}FROM {} AS build\nWORKDIR /src\nCOPY . .\nRUN cargo build --release --bin {name}\n\nFROM {}\nCOPY --from=build /src/target/release/{name} {bin}\nENV PORT={port}\nEXPOSE {port}\nCMD {}\n",
        header("rust"),
        o.images.rust_image,
        o.images.runtime_image,
        exec_form(&[bin.as_str()])
    );
    reasons.push(format!(
        "cargo build --release makes {name} ({}), which runs on {} and should listen on $PORT, {port}",
        o.images.rust_image, o.images.runtime_image
    ));
    Ok(Some(Analysis {
        kind: "rust".into(),
        reasons,
        port,
        start: bin,
        dockerfile: df,
    }))
}

#[cfg(test)]
mod tests;
