//! The image registry a fleet shares (`registry.url`): how an image built on one node's engine
//! reaches another's.
//!
//! After a build, the node tags the image `<registry>/berth/<app>:<deployment>` and pushes it;
//! that reference is the deployment's image from then on, so every node — a rollback or a
//! failover placed elsewhere — can pull it. A node that lacks a job's image pulls it when a
//! registry is configured and the image lives there; without one it says so instead of failing
//! obscurely. `berth up` (one engine) needs no registry.

use std::time::Instant;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, PushImageOptions, TagImageOptions};
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::log_sink::LogSink;

/// Where images go, and how to log in (both optional: a registry on loopback needs neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `host:port` (as Docker names a registry in an image reference).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl RegistryConfig {
    /// The repository of an app's images in this registry.
    pub fn repository(&self, app: &str) -> String {
        format!("{}/berth/{app}", self.url.trim_end_matches('/'))
    }

    /// Whether `image` is a reference into this registry.
    pub fn holds(&self, image: &str) -> bool {
        image.starts_with(&format!("{}/", self.url.trim_end_matches('/')))
    }

    fn credentials(&self) -> Option<DockerCredentials> {
        self.username.as_ref().map(|u| DockerCredentials {
            username: Some(u.clone()),
            password: self.password.clone(),
            serveraddress: Some(self.url.clone()),
            ..Default::default()
        })
    }
}

/// Tags the freshly built `local` image for the registry and pushes it; returns the reference
/// every node pulls (`<registry>/berth/<app>:<tag>`).
pub async fn push(
    docker: &Docker,
    reg: &RegistryConfig,
    local: &str,
    app: &str,
    tag: &str,
    log: &LogSink,
) -> Result<String> {
    let repo = reg.repository(app);
    let remote = format!("{repo}:{tag}");
    let t = Instant::now();
    let opts = TagImageOptions {
        repo: Some(repo.clone()),
        tag: Some(tag.to_string()),
    };
    docker.tag_image(local, Some(opts)).await?;
    let opts = PushImageOptions {
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    let mut stream = docker.push_image(&repo, Some(opts), reg.credentials());
    while let Some(item) = stream.next().await {
        // The registry or the engine failing a push is never the app's fault.
        let info = item.map_err(|e| Error::Unavailable(format!("pushing {remote}: {e}")))?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            return Err(Error::Unavailable(format!("pushing {remote}: {e}")));
        }
    }
    log.system(format!(
        "pushed {remote} to the registry in {:.1} s",
        t.elapsed().as_secs_f64()
    ))
    .await;
    Ok(remote)
}

/// Makes sure the engine has `image`: pulls it from the registry when it is not there.
pub async fn ensure_image(
    docker: &Docker,
    reg: Option<&RegistryConfig>,
    image: &str,
    node: &str,
    log: &LogSink,
) -> Result<()> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    let Some(reg) = reg.filter(|r| r.holds(image)) else {
        return Err(Error::Invalid(match reg {
            None => format!(
                "image {image} is not on node {node}'s engine (it was built on another node) and no registry is configured: set registry.url so nodes share images"
            ),
            Some(r) => format!(
                "image {image} is not on node {node}'s engine and is not in the registry {}",
                r.url
            ),
        }));
    };
    let t = Instant::now();
    log.system(format!("pulling {image} from the registry"))
        .await;
    let (from, tag) = match image.rsplit_once(':') {
        Some((f, t)) if !t.contains('/') => (f.to_string(), t.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    };
    let opts = CreateImageOptions {
        from_image: Some(from),
        tag: Some(tag),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(opts), None, reg.credentials());
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| Error::Unavailable(format!("pulling {image}: {e}")))?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            return Err(Error::Unavailable(format!("pulling {image}: {e}")));
        }
    }
    log.system(format!(
        "pulled {image} in {:.1} s",
        t.elapsed().as_secs_f64()
    ))
    .await;
    Ok(())
}

/// The tags of an app's repository in the registry (`GET /v2/<name>/tags/list`); none when
/// the repository does not exist.
pub async fn tags(http: &reqwest::Client, reg: &RegistryConfig, app: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct List {
        tags: Option<Vec<String>>,
    }
    let url = format!(
        "http://{}/v2/berth/{app}/tags/list",
        reg.url.trim_end_matches('/')
    );
    let fail = |e: String| Error::Run(format!("listing the registry's tags of {app}: {e}"));
    let resp = authed(reg, http.get(&url))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !resp.status().is_success() {
        return Err(fail(format!("answered {}", resp.status())));
    }
    let list: List = resp.json().await.map_err(|e| fail(e.to_string()))?;
    Ok(list.tags.unwrap_or_default())
}

/// The path of `image` in this registry's API (`berth/<app>`) and its tag.
fn name_and_tag<'a>(reg: &RegistryConfig, image: &'a str) -> Option<(&'a str, &'a str)> {
    image
        .strip_prefix(&format!("{}/", reg.url.trim_end_matches('/')))?
        .rsplit_once(':')
}

fn authed(reg: &RegistryConfig, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match &reg.username {
        Some(u) => r.basic_auth(u, reg.password.as_deref()),
        None => r,
    }
}

/// The digest of `image`'s manifest in the registry; `None` when it is not there.
pub async fn digest(
    http: &reqwest::Client,
    reg: &RegistryConfig,
    image: &str,
) -> Result<Option<String>> {
    let fail = |e: String| Error::Run(format!("reading {image} in the registry: {e}"));
    let (name, tag) =
        name_and_tag(reg, image).ok_or_else(|| fail("not in this registry".into()))?;
    let url = format!(
        "http://{}/v2/{name}/manifests/{tag}",
        reg.url.trim_end_matches('/')
    );
    let head = authed(reg, http.head(url))
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if head.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !head.status().is_success() {
        return Err(fail(format!("HEAD answered {}", head.status())));
    }
    let digest = head
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| fail("no Docker-Content-Digest".into()))?;
    Ok(Some(digest.to_string()))
}

/// Deletes `image`'s manifest, whose digest is `digest`, from the registry
/// (`DELETE /v2/<name>/manifests/<digest>`, which needs `storage.delete.enabled`); every tag of
/// that digest goes with it, so the caller never passes one a kept release shares. The registry
/// frees the space at its next garbage collection (`docker-registry garbage-collect`), which the
/// operator runs.
pub async fn delete(
    http: &reqwest::Client,
    reg: &RegistryConfig,
    image: &str,
    digest: &str,
) -> Result<()> {
    let fail = |e: String| Error::Run(format!("deleting {image} from the registry: {e}"));
    let (name, _) = name_and_tag(reg, image).ok_or_else(|| fail("not in this registry".into()))?;
    let url = format!(
        "http://{}/v2/{name}/manifests/{digest}",
        reg.url.trim_end_matches('/')
    );
    let del = authed(reg, http.delete(url))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    match del.status() {
        s if s.is_success() || s == reqwest::StatusCode::NOT_FOUND => Ok(()),
        s => Err(fail(format!("DELETE answered {s}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = RegistryConfig {
            url: "127.0.0.1:5000".into(),
            username: None,
            password: None,
        };
        assert_eq!(r.repository("web"), "127.0.0.1:5000/berth/web");
        assert!(r.holds("127.0.0.1:5000/berth/web:d1"));
        assert!(!r.holds("berth/web:d1"));
        assert!(!r.holds("127.0.0.1:50000/berth/web:d1"));
        assert!(r.credentials().is_none());
    }
}
