//! Errors that say what to do, through the real `berth` binary against one real cluster: a
//! second `berth up` on the same data dir, repositories checked at create, a rollback with
//! nothing to roll back to, a refused token, an image that listens on another port, a failure's
//! reason printed once, and a delete that asks first and takes the images with it.

use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::{eventually, repo_root, sh, unique, Cluster, GitRepo, TempDir};
use serde_json::json;

const DEPLOY: Duration = Duration::from_secs(180);

/// Runs `cmd` with no stdin (never a terminal): exit code, stdout, stderr.
fn run(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn berth(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let mut cmd = c.berth();
    cmd.args(args);
    run(cmd)
}

/// The images `berth/<app>:*` on the main engine.
fn images(app: &str) -> Vec<String> {
    sh(Command::new("docker").args([
        "images",
        "-q",
        "--filter",
        &format!("reference=berth/{app}"),
    ]))
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_say_what_to_do() {
    let mut c = Cluster::up().await.expect("berth up");
    let data_dir = c.dir.path().join("berth");

    // 1. A second `berth up` on the same data dir is refused before it starts anything, naming
    //    the running one; the first keeps serving.
    let (code, _, err) = berth(&c, &["up"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "Berth is already running on {} (pid ",
            data_dir.display()
        )) && err.contains(&format!("API {}); stop it first", c.api.base))
            && err.contains("BERTH_DATA_DIR"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let (s, _) = c.api.get("/api/v1/nodes").await.unwrap();
    assert_eq!(s, 200, "the first berth up still answers");
    assert!(
        data_dir.join("redis/redis.sock").exists(),
        "its Redis socket is left alone"
    );

    // 2. A relative --repo is stored absolute.
    let src = TempDir::with_prefix("cli-errors-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("rel");
    c.apps.push(app.clone());
    let mut cmd = c.berth();
    cmd.current_dir(src.path()).args([
        "apps",
        "create",
        &app,
        "--repo",
        "./repo.git",
        "--port",
        "8080",
    ]);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "{out}{err}");
    let (_, v) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    let absolute = std::fs::canonicalize(&repo.bare).unwrap();
    assert_eq!(v["repo"], absolute.to_str().unwrap(), "{v}");

    // 3. An unreachable repository or a missing branch is refused at create (422), and when a
    //    PATCH changes the branch.
    let bad = unique("bad");
    let missing = src.path().join("no-such.git");
    let (code, _, err) = berth(
        &c,
        &[
            "apps",
            "create",
            &bad,
            "--repo",
            missing.to_str().unwrap(),
            "--port",
            "8080",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("cannot reach repository {}: ", missing.display()))
            && err.contains("(HTTP 422)"),
        "{err}"
    );
    let url = repo.url();
    let (code, _, err) = berth(
        &c,
        &[
            "apps", "create", &bad, "--repo", &url, "--branch", "nope", "--port", "8080",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("branch nope is not in {url} (it has: main)")),
        "{err}"
    );
    let (s, v) = c.api.get(&format!("/api/v1/apps/{bad}")).await.unwrap();
    assert_eq!(s, 404, "nothing was created: {v}");
    let (s, v) = c
        .api
        .patch(&format!("/api/v1/apps/{app}"), json!({"branch": "nope"}))
        .await
        .unwrap();
    assert_eq!(s, 422, "{v}");

    // 4. A rollback of an app that never served says what to do.
    let (code, _, err) = berth(&c, &["rollback", &app]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "app {app} has no release yet: deploy it first with `berth deploy {app}`"
        )),
        "{err}"
    );

    // 5. A refused token: where it came from, and where `berth up` keeps the right one.
    let mut cmd = c.berth();
    cmd.env("BERTH_API__TOKEN", "not-the-right-token")
        .args(["apps", "list"]);
    let (code, _, err) = run(cmd);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refused the token taken from BERTH_API__TOKEN")
            && err.contains(&data_dir.join("token").display().to_string())
            && err.contains("client.toml"),
        "{err}"
    );
    let (code, _, err) = berth(&c, &["--token", "wrong", "apps", "list"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("taken from --token"), "{err}");

    // 6. An image that listens on another port than the app's: said at start and in the reason,
    //    which `deploy --follow` prints once; the waiting is not one line per attempt.
    let src2 = TempDir::with_prefix("cli-errors-port").unwrap();
    let other = GitRepo::from_dir(src2.path(), &repo_root().join("examples/hello")).unwrap();
    other
        .write(
            "Dockerfile",
            "FROM busybox\nCOPY www /www\nEXPOSE 9090\nCMD [\"httpd\", \"-f\", \"-p\", \"9090\", \"-h\", \"/www\"]\n",
        )
        .unwrap();
    other.commit("listens on 9090").unwrap();
    let pm = unique("port");
    c.apps.push(pm.clone());
    let (code, _, err) = berth(
        &c,
        &[
            "apps",
            "create",
            &pm,
            "--repo",
            &other.url(),
            "--port",
            "8080",
            "--health-deadline",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = berth(&c, &["deploy", &pm, "--follow"]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    let mismatch = "the image exposes 9090, the app's port is 8080";
    assert!(out.contains(&format!("warning: {mismatch}")), "{all}");
    let reason = "no answer on port 8080 after 3 s, ";
    assert_eq!(all.matches(reason).count(), 1, "the reason once:\n{all}");
    let line = all.lines().find(|l| l.contains(reason)).unwrap();
    assert!(line.ends_with(&format!("({mismatch})")), "{line}");
    let waiting = all
        .lines()
        .filter(|l| l.contains("accept connections") || l.contains("still no answer"))
        .count();
    assert!((1..=3).contains(&waiting), "{all}");
    // The timeline comes from the record: queued, started, failed, with times of day.
    for mark in ["queued ", "started ", "failed "] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(mark) && l.contains(" UTC")),
            "no {mark}in the timeline:\n{out}"
        );
    }
    assert!(
        err.contains("deployment ") && err.contains(" failed"),
        "{err}"
    );

    // 7. Delete: refused without a terminal and without --yes; with it the app's containers and
    //    images go.
    let (code, out, err) = berth(&c, &["deploy", &app, "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!images(&app).is_empty(), "the deploy built an image");
    let (code, _, err) = berth(&c, &["apps", "delete", &app]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--yes"), "{err}");
    let (s, _) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!(s, 200, "not deleted");
    let (code, out, err) = berth(&c, &["apps", "delete", &app, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    eventually("the deleted app's images gone", DEPLOY, || async {
        let containers = sh(Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.app={app}"),
        ]))
        .ok()?;
        (containers.is_empty() && images(&app).is_empty()).then_some(())
    })
    .await
    .unwrap();
}
