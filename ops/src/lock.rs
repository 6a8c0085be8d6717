//! One Berth per data directory: the server commands take an exclusive `flock` on a lock file in
//! `data_dir` before they start anything, and write their pid and API address into it.
//!
//! `berth coordinator` locks `coordinator.lock`, `berth node` locks `node.lock`, and `berth up`
//! (which runs both, and Redis and Caddy under `data_dir`) locks both. So a coordinator and a node
//! may share a data directory (the token and secret key are meant to be shared), but a second
//! `berth up`, or a second node on one outbox, is refused before it touches anything — a second
//! `berth up` used to delete the first one's Redis socket and start a second Redis on the same
//! append-only file. The kernel drops the lock when the process ends, however it ends; the file
//! stays (removing it would let a third process lock a file nobody else sees).
//!
//! The data directory holds the API token, the secret key, Redis's data and build checkouts, so
//! taking it also makes it private ([`make_private`]): the directory and its subdirectories 0700,
//! the token and key files 0600 — also when an older version or an operator left them readable.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Files in `data_dir` that hold secrets: mode 0600.
const SECRET_FILES: [&str; 2] = ["token", "secret.key"];

/// Creates `dir` (and any missing parent) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Tightens `data_dir`: itself and its direct subdirectories to 0700, its token and key files to
/// 0600. What is deeper sits behind a 0700 directory already.
pub fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} private (mode {mode:o})", path.display()))
    };
    set(dir, 0o700)?;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading data_dir {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        // Not following symlinks: one pointing out of data_dir is not ours to change.
        let kind = entry.file_type()?;
        let name = entry.file_name();
        if kind.is_dir() {
            set(&entry.path(), 0o700)?;
        } else if kind.is_file() && SECRET_FILES.iter().any(|f| name == *f) {
            set(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// Which server command holds a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Up,
    Coordinator,
    Node,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Up => "up",
            Role::Coordinator => "coordinator",
            Role::Node => "node",
        }
    }

    /// The lock files this role needs.
    fn files(self) -> &'static [&'static str] {
        match self {
            Role::Up => &["coordinator.lock", "node.lock"],
            Role::Coordinator => &["coordinator.lock"],
            Role::Node => &["node.lock"],
        }
    }
}

/// The held locks; released when dropped (or when the process ends).
pub struct DataDirLock {
    role: Role,
    files: Vec<Flock<File>>,
}

/// What a lock file says about its holder.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub role: Option<String>,
    pub api: Option<String>,
}

impl Holder {
    fn parse(text: &str) -> Holder {
        let mut h = Holder::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", v)) => h.pid = v.trim().parse().ok(),
                Some(("role", v)) => h.role = Some(v.trim().to_string()),
                Some(("api", v)) if !v.trim().is_empty() => h.api = Some(v.trim().to_string()),
                _ => {}
            }
        }
        h
    }

    fn render(pid: u32, role: Role, api: Option<&str>) -> String {
        format!(
            "pid={pid}\nrole={}\napi={}\n",
            role.name(),
            api.unwrap_or("")
        )
    }
}

/// The message of a refused start: who holds `dir`, and what to do.
pub fn busy_message(dir: &Path, h: &Holder) -> String {
    let what = match h.role.as_deref() {
        Some("coordinator") => "A Berth coordinator",
        Some("node") => "A Berth node",
        _ => "Berth",
    };
    let mut who = Vec::new();
    if let Some(pid) = h.pid {
        who.push(format!("pid {pid}"));
    }
    if let Some(api) = &h.api {
        who.push(format!("API {api}"));
    }
    let who = if who.is_empty() {
        String::new()
    } else {
        format!(" ({})", who.join(", "))
    };
    format!(
        "{what} is already running on {}{who}; stop it first, or give another data dir with \
         BERTH_DATA_DIR or `data_dir` in the file given to --config",
        dir.display()
    )
}

impl DataDirLock {
    /// Takes `role`'s locks in `dir` (created if needed) without waiting; refuses with
    /// [`busy_message`] when another process holds one.
    pub fn acquire(dir: &Path, role: Role, api: Option<&str>) -> Result<DataDirLock> {
        create_private_dir(dir).with_context(|| format!("creating data_dir {}", dir.display()))?;
        make_private(dir)?;
        let mut files = Vec::new();
        for name in role.files() {
            let path: PathBuf = dir.join(name);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => files.push(locked),
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    anyhow::bail!(busy_message(dir, &Holder::parse(&text)));
                }
                Err((_, e)) => {
                    return Err(anyhow::anyhow!("locking {}: {e}", path.display()));
                }
            }
        }
        let lock = DataDirLock { role, files };
        lock.record(api)?;
        Ok(lock)
    }

    /// Writes this process's pid, role and API address (once known) into its lock files.
    pub fn record(&self, api: Option<&str>) -> Result<()> {
        let text = Holder::render(std::process::id(), self.role, api);
        for f in &self.files {
            let mut file: &File = f;
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(text.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        use rand::RngExt;
        let n: u64 = rand::rng().random();
        std::env::temp_dir().join(format!("berth-lock-{n:016x}"))
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_api() {
        let dir = temp_dir();
        let up = DataDirLock::acquire(&dir, Role::Up, None).unwrap();
        up.record(Some("http://127.0.0.1:7700")).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts too.
        let e = DataDirLock::acquire(&dir, Role::Up, None)
            .err()
            .unwrap()
            .to_string();
        let pid = std::process::id();
        assert!(
            e.starts_with(&format!(
                "Berth is already running on {} (pid {pid}, API http://127.0.0.1:7700); stop it first",
                dir.display()
            )),
            "{e}"
        );
        assert!(e.contains("BERTH_DATA_DIR"), "{e}");
        // `up` runs a node: a separate node on its data dir is refused too.
        assert!(DataDirLock::acquire(&dir, Role::Node, None).is_err());
        drop(up);
        // A coordinator and a node may share one.
        let c = DataDirLock::acquire(&dir, Role::Coordinator, None).unwrap();
        let n = DataDirLock::acquire(&dir, Role::Node, None).unwrap();
        let e = DataDirLock::acquire(&dir, Role::Node, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("A Berth node is already running"), "{e}");
        drop((c, n));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn holder_text_round_trips_and_tolerates_garbage() {
        let t = Holder::render(42, Role::Coordinator, Some("http://h:1"));
        assert_eq!(
            Holder::parse(&t),
            Holder {
                pid: Some(42),
                role: Some("coordinator".into()),
                api: Some("http://h:1".into())
            }
        );
        assert_eq!(Holder::parse("junk\npid=x\napi=\n"), Holder::default());
        assert_eq!(
            busy_message(Path::new("/d"), &Holder::default()),
            "Berth is already running on /d; stop it first, or give another data dir with \
             BERTH_DATA_DIR or `data_dir` in the file given to --config"
        );
    }
}
