//! Private repositories: an app's git credential is used by the node to clone, stored sealed, and
//! never shown by the API, written to a log, or kept in Redis in the clear.

use std::process::Command;
use std::time::Duration;

use berth_tests::{
    ingress_get, private_https_remote, repo_root, sh, unique, Cluster, GitRepo, TempDir,
};
use serde_json::json;

const TOKEN: &str = "ghp_TestTokenThatMustNeverLeak0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_token_clones_a_private_repo_and_never_leaks() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("private-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let (url, basic) = private_https_remote(src.path(), &repo, TOKEN)
        .await
        .unwrap();

    // Without the credential the repository refuses git, and creating the app is refused with
    // git's reason.
    let open = unique("nocred");
    let (s, v) = c
        .api
        .post(
            "/api/v1/apps",
            json!({"name": open, "repo": url, "port": 8080}),
        )
        .await
        .unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("cannot reach repository {url}: ")),
        "{v}"
    );

    // With it, the node clones and the app serves.
    let app = unique("private");
    let created = c
        .create_app(json!({"name": app, "repo": url, "port": 8080,
            "git_credential": {"kind": "https_token", "token": TOKEN}}))
        .await
        .unwrap();
    assert_eq!(created["git_credential"], "https_token");
    assert!(!created.to_string().contains(TOKEN));
    let (id, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&id).await.unwrap()
    );
    berth_tests::eventually(
        "the private app to answer",
        Duration::from_secs(10),
        || async {
            matches!(
                ingress_get(c.ingress, &format!("{app}.localhost")).await,
                Ok((200, _))
            )
            .then_some(())
        },
    )
    .await
    .unwrap();

    // Never returned, never logged.
    for path in [
        format!("/api/v1/apps/{app}"),
        "/api/v1/apps".to_string(),
        format!("/api/v1/deployments/{id}"),
    ] {
        let (_, v) = c.api.get(&path).await.unwrap();
        assert!(!v.to_string().contains(TOKEN), "{path}: {v}");
    }
    let log = c.api.log(&id).await.unwrap();
    assert!(!log.contains(TOKEN) && !log.contains(&basic), "{log}");
    let all = c.logs();
    assert!(
        !all.contains(TOKEN) && !all.contains(&basic),
        "process logs leak the token"
    );

    // Not in Redis in the clear: read every key's value through the server itself.
    let keys = c.redis_cli(&["--scan", "--pattern", "berth:*"]).unwrap();
    let mut seen_sealed = false;
    for k in keys.lines() {
        let t = c.redis_cli(&["TYPE", k]).unwrap();
        let dump = match t.as_str() {
            "string" => c.redis_cli(&["GET", k]).unwrap(),
            "stream" => c.redis_cli(&["XRANGE", k, "-", "+"]).unwrap(),
            "hash" => c.redis_cli(&["HGETALL", k]).unwrap(),
            _ => String::new(),
        };
        assert!(
            !dump.contains(TOKEN) && !dump.contains(&basic),
            "{k} holds the token in the clear"
        );
        seen_sealed |= k.ends_with(":credential");
    }
    assert!(seen_sealed, "the sealed credential is stored");

    // PATCH can remove it; the next clone is refused again.
    let (s, v) = c
        .api
        .patch(
            &format!("/api/v1/apps/{app}"),
            json!({"remove_git_credential": true}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(v["git_credential"].is_null(), "{v}");
    let (_, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(d["status"], "failed", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_deploy_key_clones_over_ssh() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("ssh-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let d = src.path();
    for k in ["hostkey", "deploykey"] {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(d.join(k)))
        .unwrap();
    }
    std::fs::copy(d.join("deploykey.pub"), d.join("authorized_keys")).unwrap();
    let port = berth_tests::free_port();
    let _sshd = start_sshd(d, port).await;
    let user = sh(&mut Command::new("whoami")).unwrap();
    let url = format!("ssh://{user}@127.0.0.1:{port}{}", repo.bare.display());
    let key = std::fs::read_to_string(d.join("deploykey")).unwrap();
    let secret_line = key.lines().nth(1).unwrap().to_string();

    let app = unique("sshapp");
    let created = c
        .create_app(json!({"name": app, "repo": url, "port": 8080,
            "git_credential": {"kind": "ssh_key", "private_key": key}}))
        .await
        .unwrap();
    assert_eq!(created["git_credential"], "ssh_key");
    let (id, dep) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await
        .unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(
        dep["status"],
        "succeeded",
        "{dep}\n{log}\n{}",
        std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
    );
    assert!(!log.contains(&secret_line));
    let (_, v) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert!(!v.to_string().contains(&secret_line));
    // The key file the node wrote for the clone is gone.
    let builds = c.dir.path().join("berth/node/builds");
    let left: Vec<_> = std::fs::read_dir(&builds)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().ends_with(".key")),
        "{left:?}"
    );
}

/// Copies the raw value of Redis key `from` to `to`, byte for byte, as someone with write access
/// to Redis could.
fn copy_raw(c: &Cluster, from: &str, to: &str) {
    c.redis_cli(&[
        "EVAL",
        "return redis.call('SET', KEYS[2], redis.call('GET', KEYS[1]))",
        "2",
        from,
        to,
    ])
    .unwrap();
}

/// The example app in a private https repository that wants `TOKEN`, created with that token:
/// the repository's directory (kept for the test's length), the repository, its URL, the app.
async fn private_app(c: &mut Cluster, prefix: &str) -> (TempDir, GitRepo, String, String) {
    let src = TempDir::with_prefix("private-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let (url, _) = private_https_remote(src.path(), &repo, TOKEN)
        .await
        .unwrap();
    let app = unique(prefix);
    c.create_app(json!({"name": app, "repo": url, "port": 8080,
        "git_credential": {"kind": "https_token", "token": TOKEN}}))
        .await
        .unwrap();
    (src, repo, url, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_copied_to_another_app_does_not_open_there() {
    use berth_protocol::keys::app_credential;
    let mut c = Cluster::up().await.unwrap();
    let (_src, _, _, victim) = private_app(&mut c, "victim").await;
    // The other app's repository is the attacker's: whatever credential its node opens is sent
    // there.
    let other = TempDir::with_prefix("attacker-src").unwrap();
    let attacker_repo =
        GitRepo::from_dir(other.path(), &repo_root().join("examples/hello")).unwrap();
    let attacker = unique("attacker");
    c.create_app(json!({"name": attacker, "repo": attacker_repo.url(), "port": 8080}))
        .await
        .unwrap();
    copy_raw(&c, &app_credential(&victim), &app_credential(&attacker));

    let (id, d) = c
        .api
        .deploy_and_wait(&attacker, None, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        d["status"],
        "failed",
        "the copied credential opened: {d}\n{}",
        c.api.log(&id).await.unwrap()
    );
    let error = d["error"].as_str().unwrap_or_default();
    assert!(error.contains("sealed for another app"), "{d}");
    assert!(!error.contains(TOKEN), "{d}");

    // The victim's own credential still works.
    let (id, d) = c
        .api
        .deploy_and_wait(&victim, None, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&id).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_sealed_by_an_older_version_is_resealed_and_keeps_working() {
    use berth_protocol::envelope::{encode, kind};
    use berth_protocol::keys::app_credential;
    use berth_protocol::secret::{GitCredential, SecretKey};
    // The key given, so the node has it from its start (it only reads the key file the
    // coordinator creates).
    let key = SecretKey::generate();
    let mut c = Cluster::separate_with(&[("BERTH_SECRET_KEY", &key.to_hex())])
        .await
        .unwrap();
    let (_src, repo, _, app) = private_app(&mut c, "legacy").await;
    // What an older version stored: the credential sealed without associated data, in a record
    // without the `v` field (an older `Sealed` had only these two).
    let cred = GitCredential::HttpsToken {
        username: "x-access-token".into(),
        token: TOKEN.into(),
    };
    let sealed = key.seal(&serde_json::to_vec(&cred).unwrap());
    #[derive(serde::Serialize, serde::Deserialize)]
    struct OldSealed {
        nonce: String,
        data: String,
    }
    let old = OldSealed {
        nonce: hex::encode(&sealed.nonce),
        data: hex::encode(&sealed.data),
    };
    let record = encode(kind::CREDENTIAL, &app, &old).unwrap();
    c.redis_pipe(&[vec![
        b"SET".to_vec(),
        app_credential(&app).into_bytes(),
        record,
    ]])
    .unwrap();
    // The upgrade: the new coordinator starts and re-seals it bound to its app.
    c.restart_coordinator().await.unwrap();
    let (id, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "the older credential was lost: {d}\n{}",
        c.api.log(&id).await.unwrap()
    );
    // Bound now: copied to another app, it does not open there.
    let other = unique("other");
    c.create_app(json!({"name": other, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    copy_raw(&c, &app_credential(&app), &app_credential(&other));
    let (_, d) = c
        .api
        .deploy_and_wait(&other, None, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(d["status"], "failed", "{d}");
    assert!(
        d["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sealed for another app"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_repository_to_another_host_drops_the_credential() {
    let mut c = Cluster::up().await.unwrap();
    let (_src, repo, url, app) = private_app(&mut c, "moving").await;
    let path = format!("/api/v1/apps/{app}");
    // The same server under another host name: the token is not sent there, so it refuses git
    // (were the token sent, this PATCH would pass), and the refused PATCH changes nothing.
    let elsewhere = url.replace("127.0.0.1", "localhost");
    let (s, v) = c
        .api
        .patch(&path, json!({"repo": elsewhere}))
        .await
        .unwrap();
    assert_eq!(
        s, 422,
        "the credential followed the repository to another host: {v}"
    );
    let (_, v) = c.api.get(&path).await.unwrap();
    assert_eq!(
        (v["repo"].as_str(), v["git_credential"].as_str()),
        (Some(url.as_str()), Some("https_token")),
        "{v}"
    );
    // Given again, it goes along.
    let (s, v) = c
        .api
        .patch(
            &path,
            json!({"repo": elsewhere,
                "git_credential": {"kind": "https_token", "token": TOKEN}}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["git_credential"], "https_token", "{v}");
    // Moved to a repository that needs none: the credential is gone, from Redis too.
    let (s, v) = c
        .api
        .patch(&path, json!({"repo": repo.url()}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(v["git_credential"].is_null(), "{v}");
    let stored = c
        .redis_cli(&["EXISTS", &berth_protocol::keys::app_credential(&app)])
        .unwrap();
    assert_eq!(stored.trim(), "0");
    // And it does not come back with the old address.
    let (s, v) = c.api.patch(&path, json!({"repo": url})).await.unwrap();
    assert_eq!(s, 422, "{v}");
}

/// A real sshd on 127.0.0.1:`port` with `dir`'s `hostkey`, letting in `dir`'s `authorized_keys`.
async fn start_sshd(d: &std::path::Path, port: u16) -> berth_tests::Proc {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut sshd = Command::new("/usr/sbin/sshd");
    sshd.args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
        .arg("-h")
        .arg(d.join("hostkey"))
        .arg("-o")
        .arg(format!(
            "AuthorizedKeysFile={}",
            d.join("authorized_keys").display()
        ))
        .args([
            "-o",
            "StrictModes=no",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "ListenAddress=127.0.0.1",
        ])
        .args(["-o", "PermitRootLogin=prohibit-password", "-o", "UsePAM=no"])
        .arg("-o")
        .arg(format!("PidFile={}", d.join("sshd.pid").display()));
    let proc = berth_tests::Proc::spawn("sshd", sshd, d.join("sshd.log")).unwrap();
    berth_tests::eventually("sshd", Duration::from_secs(10), || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    })
    .await
    .unwrap();
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_ssh_host_key_fails_the_next_deploy() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("ssh-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let d = src.path();
    let keygen = |k: &str| {
        let _ = std::fs::remove_file(d.join(k));
        let _ = std::fs::remove_file(d.join(format!("{k}.pub")));
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(d.join(k)))
        .unwrap();
    };
    keygen("hostkey");
    keygen("deploykey");
    std::fs::copy(d.join("deploykey.pub"), d.join("authorized_keys")).unwrap();
    let port = berth_tests::free_port();
    let sshd = start_sshd(d, port).await;
    let user = sh(&mut Command::new("whoami")).unwrap();
    let url = format!("ssh://{user}@127.0.0.1:{port}{}", repo.bare.display());
    let key = std::fs::read_to_string(d.join("deploykey")).unwrap();
    let app = unique("pinned");
    // The create's check sees the server's host key first: it is pinned from now on.
    c.create_app(json!({"name": app, "repo": url, "port": 8080,
        "git_credential": {"kind": "ssh_key", "private_key": key}}))
        .await
        .unwrap();
    let (id, dep) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        dep["status"],
        "succeeded",
        "{dep}\n{}",
        c.api.log(&id).await.unwrap()
    );

    // Someone else answers at the same address (a new host key): the next deployment fails.
    drop(sshd);
    keygen("hostkey");
    let _sshd = start_sshd(d, port).await;
    let (id, dep) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await
        .unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(
        dep["status"], "failed",
        "the changed host key was accepted: {dep}\n{log}"
    );
    let error = dep["error"].as_str().unwrap_or_default();
    assert!(error.contains("not the one pinned for this app"), "{dep}");
    // A PATCH of the branch checks with the pinned key too.
    let (s, v) = c
        .api
        .patch(&format!("/api/v1/apps/{app}"), json!({"branch": "main"}))
        .await
        .unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("pinned"),
        "{v}"
    );
}
