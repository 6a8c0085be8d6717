//! Fixture trees of each kind, made in temp dirs: the kind, port, start command and the
//! Dockerfile lines that matter.

use super::*;

/// A tree of `files` (path, contents) in a temp dir.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("berth-packs")
        .tempdir()
        .unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn auto(files: &[(&str, &str)]) -> Result<Analysis, String> {
    let images = Images::default();
    let dir = tree(files);
    analyze(
        dir.path(),
        &Options {
            pack: BuildPack::Auto,
            static_dir: None,
            port: None,
            images: &images,
        },
    )
}

/// The analysis, checked for kind, port and start command, and that the Dockerfile has every
/// line of `lines`.
fn expect(a: &Analysis, kind: &str, port: u16, start: &str, lines: &[&str]) {
    assert_eq!(
        (a.kind.as_str(), a.port, a.start.as_str()),
        (kind, port, start),
        "{a:#?}"
    );
    let have: Vec<&str> = a.dockerfile.lines().collect();
    for l in lines {
        assert!(have.contains(l), "{l:?} not in\n{}", a.dockerfile);
    }
    assert!(!a.reasons.is_empty());
}

const INDEX: &str = "<h1>hi</h1>";

#[test]
fn a_static_site_at_the_root() {
    let a = auto(&[("index.html", INDEX), ("style.css", "")]).unwrap();
    expect(
        &a,
        "static",
        8080,
        "httpd -f -v -p 8080 -h /srv/www",
        &[
            "FROM busybox:latest",
            "COPY . /srv/www/",
            "EXPOSE 8080",
            r#"CMD ["httpd","-f","-v","-p","8080","-h","/srv/www"]"#,
        ],
    );
    assert_eq!(a.reasons[0], "found index.html at the root");
}

#[test]
fn a_static_site_in_dist_public_or_build() {
    for d in ["public", "dist", "build"] {
        let a = auto(&[(&format!("{d}/index.html"), INDEX), ("README.md", "")]).unwrap();
        expect(
            &a,
            "static",
            8080,
            "httpd -f -v -p 8080 -h /srv/www",
            &[&format!("COPY {d}/ /srv/www/")],
        );
        assert_eq!(a.reasons[0], format!("found {d}/index.html"));
    }
    // public/ before dist/.
    let a = auto(&[("public/index.html", INDEX), ("dist/index.html", INDEX)]).unwrap();
    assert!(a.dockerfile.contains("COPY public/ /srv/www/"));
}

#[test]
fn the_static_pack_serves_the_given_directory_on_the_app_s_port() {
    let images = Images {
        static_image: "registry.example.com/busybox:1".into(),
        ..Images::default()
    };
    let dir = tree(&[
        ("site/www/index.html", INDEX),
        ("package.json", r#"{"scripts":{"start":"node s.js"}}"#),
    ]);
    let o = |static_dir| Options {
        pack: BuildPack::Static,
        static_dir,
        port: Some(9000),
        images: &images,
    };
    let a = analyze(dir.path(), &o(Some("site/www"))).unwrap();
    expect(
        &a,
        "static",
        9000,
        "httpd -f -v -p 9000 -h /srv/www",
        &[
            "FROM registry.example.com/busybox:1",
            "COPY site/www/ /srv/www/",
            "EXPOSE 9000",
        ],
    );
    let e = analyze(dir.path(), &o(None)).unwrap_err();
    assert!(
        e.starts_with("found no index.html at the root or in public/"),
        "{e}"
    );
    let e = analyze(dir.path(), &o(Some("nope"))).unwrap_err();
    assert!(e.starts_with("static_dir \"nope\" not found"), "{e}");
    let e = analyze(dir.path(), &o(Some("../x"))).unwrap_err();
    assert!(e.contains("static_dir"), "{e}");
}

#[test]
fn node_with_a_start_script() {
    let pkg = r#"{"name":"web","scripts":{"start":"node server.js","test":"x"}}"#;
    let a = auto(&[
        ("package.json", pkg),
        ("server.js", ""),
        ("public/index.html", INDEX),
    ])
    .unwrap();
    expect(
        &a,
        "node",
        3000,
        "npm start",
        &[
            "FROM node:22-slim",
            "COPY package.json ./",
            "RUN npm install --omit=dev",
            "ENV NODE_ENV=production PORT=3000",
            "EXPOSE 3000",
            r#"CMD ["npm","start"]"#,
        ],
    );
    assert_eq!(
        a.reasons[0],
        "found package.json with a start script: node server.js"
    );
    // A lock file and a build script.
    let pkg = r#"{"scripts":{"start":"node dist/s.js","build":"tsc"}}"#;
    let a = auto(&[("package.json", pkg), ("package-lock.json", "{}")]).unwrap();
    expect(
        &a,
        "node",
        3000,
        "npm start",
        &[
            "COPY package.json package-lock.json ./",
            "RUN npm ci",
            "RUN npm run build && npm prune --omit=dev",
        ],
    );
}

#[test]
fn python_flask_in_app_py_runs_under_gunicorn() {
    let app = "from flask import Flask\n\nserver = Flask(__name__)\n";
    let a = auto(&[("requirements.txt", "flask==3.0\n"), ("app.py", app)]).unwrap();
    expect(
        &a,
        "python",
        8000,
        "gunicorn --bind 0.0.0.0:8000 app:server",
        &[
            "FROM python:3.12-slim",
            "RUN pip install --no-cache-dir -r requirements.txt",
            "RUN pip install --no-cache-dir gunicorn",
            r#"CMD ["gunicorn","--bind","0.0.0.0:8000","app:server"]"#,
        ],
    );
    assert!(
        a.reasons
            .iter()
            .any(|r| r.contains("gunicorn is not among the dependencies")),
        "{a:#?}"
    );
}

#[test]
fn python_fastapi_in_main_py_runs_under_uvicorn() {
    let main = "from fastapi import FastAPI\napp = FastAPI()\n";
    let a = auto(&[
        ("requirements.txt", "fastapi\nuvicorn[standard]\n"),
        ("main.py", main),
    ])
    .unwrap();
    expect(
        &a,
        "python",
        8000,
        "uvicorn main:app --host 0.0.0.0 --port 8000",
        &[r#"CMD ["uvicorn","main:app","--host","0.0.0.0","--port","8000"]"#],
    );
    assert!(
        !a.dockerfile.contains("pip install --no-cache-dir uvicorn"),
        "{}",
        a.dockerfile
    );
}

#[test]
fn python_with_pyproject_and_a_plain_script() {
    let a = auto(&[
        ("pyproject.toml", "[project]\nname = \"x\"\n"),
        ("main.py", "print('hi')\n"),
    ])
    .unwrap();
    expect(
        &a,
        "python",
        8000,
        "python main.py",
        &[
            "COPY . .",
            "RUN pip install --no-cache-dir .",
            "ENV PYTHONUNBUFFERED=1 PORT=8000",
        ],
    );
}

#[test]
fn go_at_the_root_and_in_cmd() {
    let a = auto(&[
        ("go.mod", "module example.com/acme/hello\n\ngo 1.23\n"),
        ("go.sum", ""),
        ("main.go", "package main\n\nfunc main() {}\n"),
    ])
    .unwrap();
    expect(
        &a,
        "go",
        8080,
        "/usr/local/bin/hello",
        &[
            "FROM golang:1.23 AS build",
            "COPY go.mod go.sum ./",
            "RUN CGO_ENABLED=0 go build -o /out/hello .",
            "FROM debian:bookworm-slim",
            "COPY --from=build /out/hello /usr/local/bin/hello",
            r#"CMD ["/usr/local/bin/hello"]"#,
        ],
    );
    let a = auto(&[
        ("go.mod", "module x\n"),
        ("cmd/api/main.go", "package main\n"),
        ("lib.go", "package x\n"),
    ])
    .unwrap();
    expect(
        &a,
        "go",
        8080,
        "/usr/local/bin/api",
        &[
            "COPY go.mod ./",
            "RUN CGO_ENABLED=0 go build -o /out/api ./cmd/api",
        ],
    );
}

#[test]
fn rust_with_and_without_a_bin_table() {
    let toml = "[package]\nname = \"shop\"\nversion = \"0.1.0\"\n\n[[bin]]\nname = \"shop-server\" # the server\npath = \"src/server.rs\"\n";
    let a = auto(&[("Cargo.toml", toml), ("src/server.rs", "fn main() {}")]).unwrap();
    expect(
        &a,
        "rust",
        8080,
        "/usr/local/bin/shop-server",
        &[
            "FROM rust:1 AS build",
            "RUN cargo build --release --bin shop-server",
            "COPY --from=build /src/target/release/shop-server /usr/local/bin/shop-server",
        ],
    );
    let toml = "[package]\nname = \"shop\"\n\n[dependencies]\nname = \"not-this\"\n";
    let a = auto(&[("Cargo.toml", toml), ("src/main.rs", "fn main() {}")]).unwrap();
    expect(
        &a,
        "rust",
        8080,
        "/usr/local/bin/shop",
        &["RUN cargo build --release --bin shop"],
    );
    // A library is not an app.
    let e = auto(&[("Cargo.toml", toml), ("src/lib.rs", "")]).unwrap_err();
    assert!(e.contains("found Cargo.toml, but no binary"), "{e}");
}

#[test]
fn an_unknown_tree_gets_one_sentence_naming_what_was_looked_for() {
    let e = auto(&[
        ("README.md", "hello"),
        ("package.json", r#"{"scripts":{"test":"x"}}"#),
    ])
    .unwrap_err();
    assert!(
        e.starts_with(
            "found nothing Berth can build without a Dockerfile: it looks for index.html"
        ),
        "{e}"
    );
    for looked in [
        "package.json with a \"start\" script",
        "requirements.txt or pyproject.toml",
        "go.mod",
        "Cargo.toml with a binary",
    ] {
        assert!(e.contains(looked), "{looked}: {e}");
    }
    assert!(
        e.contains("(found package.json, but it has no \"start\" script)"),
        "{e}"
    );
    assert!(e.ends_with("use the dockerfile build pack"), "{e}");
    let e = auto(&[]).unwrap_err();
    assert!(!e.contains("(found"), "{e}");
}

#[test]
fn symlinks_are_not_followed() {
    let dir = tree(&[("README.md", "")]);
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("index.html")).unwrap();
    let images = Images::default();
    let o = Options {
        pack: BuildPack::Auto,
        static_dir: None,
        port: None,
        images: &images,
    };
    assert!(analyze(dir.path(), &o).is_err());
}

#[test]
fn the_same_tree_gives_the_same_text() {
    let files = [("go.mod", "module m\n"), ("main.go", "package main\n")];
    assert_eq!(auto(&files), auto(&files));
}

#[test]
fn images_are_checked() {
    assert!(Images::default().check().is_ok());
    let bad = Images {
        node_image: "node:22\nRUN rm -rf /".into(),
        ..Images::default()
    };
    assert!(bad.check().unwrap_err().starts_with("packs.node_image"));
}
