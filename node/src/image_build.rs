//! Turning a checked-out source tree into an image: the build seam.
//!
//! [`Builder::build`] takes a source directory and a [`BuildPlan`] and returns an image
//! reference. Today the only build pack is a Dockerfile (classic builder, offline: no pull, no
//! BuildKit); other packs are new [`BuildKind`] variants behind the same call.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_protocol::{validate, LogStream};
use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::{RwLock, RwLockWriteGuard};

use crate::dockerignore;
use crate::error::{Error, Result};
use crate::log_sink::{LineBuffer, LogSink};

/// How to build an image from a source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildKind {
    /// `docker build` of `context` (relative to the checkout) with `dockerfile` (relative to
    /// `context`).
    Dockerfile { context: String, dockerfile: String },
}

/// What to build and how to name it.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub kind: BuildKind,
    /// Image reference to produce, e.g. `berth/web:<deployment>`.
    pub tag: String,
    pub build_args: BTreeMap<String, String>,
    pub labels: HashMap<String, String>,
    /// Build every step again: no layer of an earlier build is taken from the cache.
    pub no_cache: bool,
}

/// Builds images on this node's Docker engine.
///
/// Removing an image also removes its untagged parents, which the classic builder uses as its
/// layer cache: a build that picked such a layer as cache fails with "unable to find image" when
/// the layer goes away under it. So builds and image removal on one node exclude each other
/// through [`Builder::removal`], and a build that still loses a cached layer (to another user of
/// the same engine) is run once more.
#[derive(Clone)]
pub struct Builder {
    docker: Docker,
    gate: Arc<RwLock<()>>,
    /// Largest build context sent to the engine, in bytes (`node.build_context_max_mb`).
    context_cap: u64,
    /// What a build's steps may use.
    limits: BuildLimits,
    /// The Docker network the build's steps join (`node.app_network`).
    network: String,
    /// One permit per build slot (`node.build_slots`): a build beyond them waits for one.
    slots: Arc<tokio::sync::Semaphore>,
    /// Builds waiting for a slot now (a new one is told how many are ahead of it).
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// What each build's `RUN` steps may use (`node.build_memory_mb`, `node.build_millicpus`), and
/// how long a build may run once it has its slot (`node.build_timeout_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildLimits {
    pub memory_mb: u64,
    pub millicpus: u32,
    pub timeout: Duration,
}

impl Default for BuildLimits {
    fn default() -> Self {
        BuildLimits {
            memory_mb: 1024,
            millicpus: 2000,
            timeout: Duration::from_secs(1800),
        }
    }
}

/// The most memory a build can be given: the Docker client library passes it as an `i32` of
/// bytes.
pub const BUILD_MEMORY_MB_MAX: u64 = 2047;

/// How many times a build that lost a cached layer (or its finished image) mid-build is started
/// again.
const CACHE_RACE_RETRIES: usize = 2;

impl Builder {
    /// A builder running at most `slots` builds at once, each within `limits`, sending at most
    /// `context_cap` bytes of context.
    pub fn new(
        docker: Docker,
        context_cap: u64,
        limits: BuildLimits,
        slots: u32,
        network: String,
    ) -> Self {
        Builder {
            docker,
            network,
            gate: Arc::new(RwLock::new(())),
            context_cap,
            limits,
            slots: Arc::new(tokio::sync::Semaphore::new(slots.max(1) as usize)),
            waiting: Arc::default(),
        }
    }

    /// Waits until no build runs on this node (polling, so that a waiting removal never holds up
    /// builds that start meanwhile) and holds builds off until the guard is dropped: take it
    /// around removing images. `None` if no such moment came within `patience`; the next
    /// deployment's pruning catches up.
    pub async fn removal(&self, patience: Duration) -> Option<RwLockWriteGuard<'_, ()>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Ok(guard) = self.gate.try_write() {
                return Some(guard);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Builds `plan` from the tree at `source_dir`; returns the image reference (the tag). A
    /// build beyond the node's slots waits for one, in turn, saying how many are ahead of it; a
    /// build that runs past `node.build_timeout_s` is stopped and fails with that reason.
    pub async fn build(
        &self,
        source_dir: &Path,
        plan: &BuildPlan,
        log: &LogSink,
    ) -> Result<String> {
        use std::sync::atomic::Ordering;
        let _slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // The semaphore serves waiters in turn: those waiting now go first.
                let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
                log.system(format!(
                    "every build slot of this node is taken: waiting for one ({ahead} other build(s) waiting before this one)"
                ))
                .await;
                let slot = self.slots.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                let slot =
                    slot.map_err(|_| Error::Internal("the build slots were closed".into()))?;
                log.system("a build slot is free: building").await;
                slot
            }
        };
        let _building = self.gate.read().await;
        let timeout = self.limits.timeout;
        match tokio::time::timeout(timeout, self.build_in_slot(source_dir, plan, log)).await {
            Ok(r) => r,
            Err(_) => {
                // Dropping the build's request stops it: the engine cancels a build whose
                // client went away.
                let why = format!(
                    "the build ran longer than {} s (node.build_timeout_s) and was stopped",
                    timeout.as_secs()
                );
                log.write(LogStream::Stderr, &why).await;
                Err(Error::Build(why))
            }
        }
    }

    /// [`Builder::build`] once it holds a slot.
    async fn build_in_slot(
        &self,
        source_dir: &Path,
        plan: &BuildPlan,
        log: &LogSink,
    ) -> Result<String> {
        let mut attempt = 0;
        loop {
            let result = match &plan.kind {
                BuildKind::Dockerfile {
                    context,
                    dockerfile,
                } => {
                    self.dockerfile(source_dir, context, dockerfile, plan, log)
                        .await
                }
            };
            match result {
                Err(Error::Build(msg))
                    if lost_cached_layer(&msg) && attempt < CACHE_RACE_RETRIES =>
                {
                    attempt += 1;
                    log.system(
                        "a cached layer or the image the build made was removed meanwhile (another prune); building again",
                    )
                    .await;
                }
                other => return other,
            }
        }
    }

    async fn dockerfile(
        &self,
        source_dir: &Path,
        context: &str,
        dockerfile: &str,
        plan: &BuildPlan,
        log: &LogSink,
    ) -> Result<String> {
        // Resolving the paths and packing the tree read the disk: off the async runtime. The
        // archive streams to the engine as it is packed (a bounded channel: packing waits for
        // the engine), never whole in memory, and stops at the cap.
        let (source_dir, ctx, df) = (
            source_dir.to_path_buf(),
            context.to_string(),
            dockerfile.to_string(),
        );
        let (ctx_dir, dockerfile_rel) =
            tokio::task::spawn_blocking(move || resolve_context(&source_dir, &ctx, &df))
                .await
                .map_err(|e| Error::Internal(format!("build context task failed: {e}")))??;
        log.system(format!(
            "building {} from {context} with {dockerfile_rel}{}",
            plan.tag,
            if plan.no_cache {
                ", with no cached layer (no_cache)"
            } else {
                ""
            }
        ))
        .await;
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let packing = {
            let keep = dockerfile_rel.clone();
            let cap = self.context_cap;
            tokio::task::spawn_blocking(move || {
                let over = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let out = ChunkWriter {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(CHUNK),
                    written: 0,
                    cap,
                    over: over.clone(),
                };
                let r = pack(&ctx_dir, &[keep.as_str(), ".dockerignore"], out)
                    .and_then(|mut w| {
                        use std::io::Write;
                        w.flush()
                            .map_err(|e| Error::io("cannot send the build context", e))?;
                        Ok(w.written)
                    })
                    .map_err(|e| match over.load(std::sync::atomic::Ordering::Relaxed) {
                        0 => e,
                        size => Error::Invalid(TooLarge { cap, size }.to_string()),
                    });
                if let Err(e) = &r {
                    // The request body fails too, so the engine never builds half a context.
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
                r
            })
        };
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));

        // The build's `RUN` steps join the app network (inter-container traffic off: they
        // reach no app) and are limited like an app, without swap.
        let network = crate::containers::app_network(&self.docker, &self.network).await?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let millicpus = self.limits.millicpus.min(cpus.saturating_mul(1000));
        let memory = (self.limits.memory_mb.min(BUILD_MEMORY_MB_MAX) << 20) as i32;
        let options = BuildImageOptions {
            dockerfile: dockerfile_rel,
            networkmode: Some(network),
            memory: Some(memory),
            memswap: Some(memory),
            cpuperiod: Some(100_000),
            cpuquota: Some(millicpus as i32 * 100),
            t: Some(plan.tag.clone()),
            rm: true,
            forcerm: true,
            pull: None,
            nocache: plan.no_cache,
            buildargs: Some(plan.build_args.clone().into_iter().collect()),
            labels: Some(plan.labels.clone()),
            ..Default::default()
        };
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(body)));
        let mut lines = LineBuffer::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                        log.write_lines(LogStream::Stdout, lines.push(text)).await;
                    }
                }
                Err(e) => {
                    if let Some(rest) = lines.finish() {
                        log.write_lines(LogStream::Stdout, vec![rest]).await;
                    }
                    // A context that could not be packed (too large, unreadable) is why the
                    // request failed: say that, not what the cut-off request looked like.
                    drop(stream);
                    if let Ok(Err(packing)) = packing.await {
                        log.write(LogStream::Stderr, &packing.to_string()).await;
                        return Err(packing);
                    }
                    let msg = docker_error_text(&e);
                    log.write(LogStream::Stderr, &msg).await;
                    // The build's own error (a step failed, a bad Dockerfile) is the app's; an
                    // engine that cut the build off (restarting, gone) is not.
                    return Err(match e {
                        bollard::errors::Error::DockerStreamError { .. }
                        | bollard::errors::Error::DockerResponseServerError { .. }
                            if !engine_fault(&msg) =>
                        {
                            Error::Build(msg)
                        }
                        bollard::errors::Error::DockerStreamError { .. }
                        | bollard::errors::Error::DockerResponseServerError { .. } => {
                            Error::Unavailable(format!(
                                "the Docker engine broke off the build: {msg}"
                            ))
                        }
                        e => Error::docker("the build", e),
                    });
                }
            }
        }
        if let Some(rest) = lines.finish() {
            log.write_lines(LogStream::Stdout, vec![rest]).await;
        }
        drop(stream);
        match packing.await {
            Ok(Ok(size)) => {
                tracing::debug!(tag = %plan.tag, kib = size / 1024, "build context sent");
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(Error::Internal(format!("build context task failed: {e}"))),
        }
        // The classic builder reports errors in-stream; make sure the tag really exists.
        self.docker
            .inspect_image(&plan.tag)
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError { .. } => Error::Build(format!(
                    "image {} {MISSING_AFTER_BUILD}: {}",
                    plan.tag,
                    docker_error_text(&e)
                )),
                e => Error::docker("inspecting the built image", e),
            })?;
        Ok(plan.tag.clone())
    }
}

/// Whether an error the engine reported inside a build stream is the engine's own (it is
/// shutting down, or lost its containerd) rather than the build's: a step that failed, a bad
/// Dockerfile, a missing file are the app's and say none of these.
fn engine_fault(msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    [
        "transport is closing",
        "code = unavailable",
        "daemon is shutting down",
        "connection refused",
        "connection reset",
        "error reading from server",
        "broken pipe",
    ]
    .iter()
    .any(|s| msg.contains(s))
}

/// Whether a build failed because a layer it took from the cache was removed meanwhile, or the
/// image it had just made: a cache hit gives an app the very image another app's build made,
/// and that app's prune (or an operator's `docker rmi`) can remove it between the build and its
/// tag, or between the tag and the check that it exists. Building again makes it anew.
fn lost_cached_layer(msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    msg.contains("unable to find image \"sha256:")
        || msg.contains("no such image: sha256:")
        || msg.contains("failed to get digest sha256:")
        || msg.contains(MISSING_AFTER_BUILD)
}

/// What the check after a build says when the image it tagged is gone.
const MISSING_AFTER_BUILD: &str = "missing after build";

/// The text of a Docker error without bollard's wrapping, for people.
pub fn docker_error_text(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerStreamError { error } => error.trim().to_string(),
        E::DockerResponseServerError { message, .. } => message.trim().to_string(),
        other => other.to_string(),
    }
}

/// Checks `context` and `dockerfile` and resolves them inside `source_dir`, following symlinks:
/// returns the context directory and the Dockerfile's path relative to it (as the build API wants).
pub fn resolve_context(
    source_dir: &Path,
    context: &str,
    dockerfile: &str,
) -> Result<(PathBuf, String)> {
    validate::repo_path("context", context).map_err(Error::Invalid)?;
    validate::repo_path("dockerfile", dockerfile).map_err(Error::Invalid)?;
    let root = std::fs::canonicalize(source_dir)
        .map_err(|e| Error::io(format!("cannot open checkout {}", source_dir.display()), e))?;
    let ctx = std::fs::canonicalize(root.join(context)).map_err(|e| {
        Error::Invalid(format!(
            "context {context:?} not found in the repository ({e})"
        ))
    })?;
    if !ctx.starts_with(&root) {
        return Err(Error::Invalid(format!(
            "context {context:?} leads outside the repository"
        )));
    }
    if !ctx.is_dir() {
        return Err(Error::Invalid(format!(
            "context {context:?} is not a directory"
        )));
    }
    let df = std::fs::canonicalize(ctx.join(dockerfile)).map_err(|e| {
        Error::Invalid(format!(
            "dockerfile {dockerfile:?} not found in context {context:?} ({e})"
        ))
    })?;
    let rel = df.strip_prefix(&ctx).map_err(|_| {
        Error::Invalid(format!(
            "dockerfile {dockerfile:?} leads outside the build context {context:?}"
        ))
    })?;
    if !df.is_file() {
        return Err(Error::Invalid(format!(
            "dockerfile {dockerfile:?} is not a file"
        )));
    }
    let rel = rel
        .to_str()
        .ok_or_else(|| Error::Invalid(format!("dockerfile {dockerfile:?} is not valid UTF-8")))?;
    Ok((ctx, rel.to_string()))
}

/// Packs `dir` as an uncompressed tar for the build API (into memory; tests).
pub fn tar_context(dir: &Path) -> Result<Vec<u8>> {
    pack(dir, &[], Vec::new())
}

/// Packs `dir` as an uncompressed tar into `out`. `.git` directories are left out, and what the
/// context's `.dockerignore` leaves out (but never the files named in `keep`: the Dockerfile
/// and `.dockerignore`, which Docker needs); symlinks are stored as links (never followed),
/// special files are skipped.
pub fn pack<W: std::io::Write>(dir: &Path, keep: &[&str], out: W) -> Result<W> {
    let rules = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => dockerignore::Rules::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => dockerignore::Rules::default(),
        Err(e) => return Err(Error::io("cannot read .dockerignore", e)),
    };
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let walk = Walk { rules, keep };
    walk.add_dir(&mut builder, dir, Path::new(""))?;
    builder
        .into_inner()
        .map_err(|e| Error::io("cannot finish the build context archive", e))
}

struct Walk<'a> {
    rules: dockerignore::Rules,
    keep: &'a [&'a str],
}

impl Walk<'_> {
    fn excluded(&self, rel: &Path) -> bool {
        let rel = rel.to_string_lossy();
        !self.keep.iter().any(|k| *k == rel) && self.rules.excluded(&rel)
    }

    fn add_dir<W: std::io::Write>(
        &self,
        builder: &mut tar::Builder<W>,
        dir: &Path,
        rel: &Path,
    ) -> Result<()> {
        let what = || format!("cannot read {}", dir.display());
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(what(), e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(what(), e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if name == ".git" {
                continue;
            }
            let path = entry.path();
            let rel_path = rel.join(&name);
            // A name from read_dir is one normal component; be strict anyway.
            if rel_path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(Error::Invalid(format!(
                    "refusing path {}",
                    rel_path.display()
                )));
            }
            let ft = entry
                .file_type()
                .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
            let excluded = self.excluded(&rel_path);
            if ft.is_dir() {
                // A left-out directory is still walked when an exception may put back
                // something inside it.
                if excluded && !self.rules.has_exceptions() {
                    continue;
                }
                if !excluded {
                    builder
                        .append_dir(&rel_path, &path)
                        .map_err(|e| add_error(&path, e))?;
                }
                self.add_dir(builder, &path, &rel_path)?;
            } else if (ft.is_file() || ft.is_symlink()) && !excluded {
                builder
                    .append_path_with_name(&path, &rel_path)
                    .map_err(|e| add_error(&path, e))?;
            }
        }
        Ok(())
    }
}

fn add_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("cannot add {}", path.display()), e)
}

/// The build context passed its cap (`node.build_context_max_mb`).
#[derive(Debug)]
struct TooLarge {
    cap: u64,
    size: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the build context is larger than {} MiB (node.build_context_max_mb): more than {} MiB \
             were packed before the build was stopped; leave out what the image does not need with \
             .dockerignore",
            self.cap / MIB,
            self.size / MIB
        )
    }
}

impl std::error::Error for TooLarge {}

const MIB: u64 = 1024 * 1024;

/// What the packing thread writes the archive into: chunks sent to the build request's body
/// as they are made, so the context is never whole in memory; past `cap` bytes it fails with
/// [`TooLarge`].
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    written: u64,
    cap: u64,
    /// Set to the bytes packed when the cap is passed: tar wraps the writer's error in its own,
    /// so the packing thread reads this to tell a too-large context from an unreadable one.
    over: Arc<std::sync::atomic::AtomicU64>,
}

/// Bytes sent to the engine at once.
const CHUNK: usize = 256 * 1024;

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the Docker engine stopped reading the build context",
            )
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.written += data.len() as u64;
        if self.written > self.cap {
            self.over
                .store(self.written, std::sync::atomic::Ordering::Relaxed);
            return Err(std::io::Error::other(TooLarge {
                cap: self.cap,
                size: self.written,
            }));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_tests::TempDir;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn an_engine_going_away_mid_build_is_told_apart_from_a_failed_step() {
        for engine in [
            "transport is closing: unavailable",
            "rpc error: code = Unavailable desc = connection error",
            "Error response from daemon: daemon is shutting down",
        ] {
            assert!(engine_fault(engine), "{engine}");
        }
        for app in [
            "The command '/bin/sh -c false' returned a non-zero code: 1",
            "COPY failed: file not found in build context",
            "dockerfile parse error line 2: unknown instruction: RUNN",
        ] {
            assert!(!engine_fault(app), "{app}");
        }
    }

    #[test]
    fn a_cache_layer_removed_mid_build_is_told_apart_from_a_missing_base_image() {
        // As the classic builder said in a CI run where another build's prune removed a layer.
        assert!(lost_cached_layer(
            "unable to find image \"sha256:3bdaf098d479704a807782462564784b5d20b4d864dba7de0dabaa2c5bf30083\""
        ));
        // Another app's prune removed the image the cache gave this build, before its tag
        // (seen in CI), or after it.
        assert!(lost_cached_layer(
            "failed to get digest sha256:bdeb1d9e444a484cd577912ce924cf193718b5d65de174a02613aec0bf6698a6: open /var/lib/docker/image/fuse-overlayfs/imagedb/content/sha256/bdeb1d9e444a484cd577912ce924cf193718b5d65de174a02613aec0bf6698a6: no such file or directory"
        ));
        assert!(lost_cached_layer(
            "image berth/a:d1 missing after build: no such image: berth/a:d1: No such image: berth/a:d1"
        ));
        assert!(!lost_cached_layer(
            "pull access denied for nosuchbase, repository does not exist"
        ));
        assert!(!lost_cached_layer(
            "unable to find image \"nosuchbase:latest\""
        ));
    }

    // The clock is paused: it moves only when every task is waiting on it, so the removal has
    // polled the gate (every 250 ms) as often as the test's time says, with no real waiting.
    #[tokio::test(start_paused = true)]
    async fn image_removal_waits_for_running_builds_without_holding_up_new_ones() {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let b = Builder::new(
            docker,
            u64::MAX,
            BuildLimits::default(),
            2,
            crate::containers::APP_NETWORK.into(),
        );
        let building = b.gate.clone().read_owned().await;
        let b2 = b.clone();
        let mut removal =
            tokio::spawn(async move { b2.removal(Duration::from_secs(30)).await.is_some() });
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut removal)
                .await
                .is_err(),
            "removal went ahead during a build"
        );
        // Another build can start while the removal waits.
        let second = tokio::time::timeout(Duration::from_millis(100), b.gate.clone().read_owned())
            .await
            .expect("a build was held up by a waiting removal");
        drop(building);
        drop(second);
        assert!(removal.await.unwrap());
        // A removal that finds no quiet moment gives up.
        let _busy = b.gate.clone().read_owned().await;
        assert!(b.removal(Duration::from_millis(300)).await.is_none());
    }

    #[test]
    fn tar_skips_git_and_keeps_symlinks_as_links() {
        let t = TempDir::with_prefix("berth-node-test-tar").unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join(".git/objects")).unwrap();
        std::fs::write(d.join(".git/HEAD"), "x").unwrap();
        std::fs::create_dir_all(d.join("src/.git")).unwrap();
        std::fs::write(d.join("Dockerfile"), "FROM busybox\n").unwrap();
        std::fs::write(d.join("src/main.txt"), "hi").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        let tar = tar_context(d).unwrap();
        let n = names(&tar);
        assert_eq!(n, ["Dockerfile", "link", "src", "src/main.txt"]);
        let mut a = tar::Archive::new(&tar[..]);
        let link = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some("link"))
            .unwrap();
        assert!(link.header().entry_type().is_symlink());
    }

    #[test]
    fn resolve_refuses_paths_that_escape() {
        let t = TempDir::with_prefix("berth-node-test-ctx").unwrap();
        let root = t.path().join("repo");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(root.join("app/Dockerfile"), "FROM busybox\n").unwrap();
        std::fs::write(root.join("Dockerfile.root"), "FROM busybox\n").unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        std::fs::write(t.path().join("outside/Dockerfile"), "FROM busybox\n").unwrap();
        std::os::unix::fs::symlink(t.path().join("outside"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../Dockerfile.root", root.join("app/up")).unwrap();

        let (ctx, df) = resolve_context(&root, "app", "Dockerfile").unwrap();
        assert!(ctx.ends_with("repo/app"));
        assert_eq!(df, "Dockerfile");
        let (_, df) = resolve_context(&root, ".", "app/Dockerfile").unwrap();
        assert_eq!(df, "app/Dockerfile");

        for (c, f, want) in [
            ("../outside", "Dockerfile", "inside the repository"),
            ("/etc", "Dockerfile", "relative"),
            ("escape", "Dockerfile", "outside the repository"),
            ("app", "../Dockerfile.root", "inside the repository"),
            ("app", "up", "outside the build context"),
            ("app", "missing", "not found"),
            ("nope", "Dockerfile", "not found"),
        ] {
            let e = resolve_context(&root, c, f).unwrap_err().to_string();
            assert!(e.contains(want), "{c} {f}: {e}");
        }
    }
}
