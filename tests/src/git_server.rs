//! A private git remote over HTTP: git's "dumb HTTP" files served only with Basic auth.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{sh, GitRepo};

/// Serves `repo` (whose bare repository lies in `root`) as a private HTTPS-token remote: git's
/// dumb-HTTP files are prepared and a [`private_git_server`] demands Basic auth with user
/// `x-access-token` and `token`. Returns the clone URL and the Basic value, computed by the
/// system's `base64`, independent of Berth's code.
pub async fn private_https_remote(
    root: &Path,
    repo: &GitRepo,
    token: &str,
) -> Result<(String, String)> {
    sh(Command::new("git")
        .arg("-C")
        .arg(&repo.bare)
        .arg("update-server-info"))?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' 'x-access-token:{token}' | base64 -w0"))
        .output()?;
    let basic = String::from_utf8(out.stdout)?;
    let port = private_git_server(root.to_path_buf(), basic.clone()).await?;
    let name = repo
        .bare
        .file_name()
        .context("bare repository path")?
        .to_string_lossy();
    Ok((format!("http://127.0.0.1:{port}/{name}"), basic))
}

/// A git "dumb HTTP" server for one directory that demands `Authorization: Basic <b64>` on every
/// request (a private repository). Runs until the test's runtime ends.
pub async fn private_git_server(root: PathBuf, basic: String) -> Result<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (root, basic) = (root.clone(), basic.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut request = String::new();
                    if r.read_line(&mut request).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut authorized = false;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("authorization")
                                && v.trim() == format!("Basic {basic}")
                            {
                                authorized = true;
                            }
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/");
                    let path = path
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .trim_start_matches('/');
                    let file = root.join(path);
                    let (status, body) = if !authorized {
                        (
                            "401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"",
                            Vec::new(),
                        )
                    } else if path.contains("..") {
                        ("403 Forbidden", Vec::new())
                    } else {
                        match tokio::fs::read(&file).await {
                            Ok(b) => ("200 OK", b),
                            Err(_) => ("404 Not Found", Vec::new()),
                        }
                    };
                    let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", body.len());
                    if w.write_all(head.as_bytes()).await.is_err()
                        || w.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}
