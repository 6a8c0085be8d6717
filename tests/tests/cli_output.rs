//! What the CLI prints, run as the real binary against a real cluster: the tables' header rows,
//! an app's status, release and URL, `apps show` and `deployment` as text, the nodes' host
//! figures, the words of empty results, `logs --timestamps`, `logs --tail 0 -f`, build logs
//! without control sequences, and `metrics` without a replaced release's replica.

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use berth_tests::{
    eventually, ingress_get, repo_root, unique, version_marker, Cluster, GitRepo, TempDir,
};
use serde_json::Value;

/// Runs the CLI; returns its stdout, failing with its stderr unless it succeeded.
fn run(c: &Cluster, args: &[&str]) -> String {
    let out = c.berth().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "berth {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&run(c, &all)).unwrap()
}

/// The words of a table's header row, and the row starting with `first`.
fn header_and_row<'a>(text: &'a str, first: &str) -> (Vec<&'a str>, &'a str) {
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{text}"));
    (header, row)
}

/// The numbers of the `tick <n>` lines of a text.
fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split("tick ").nth(1)?.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_tables_texts_and_logs_worth_reading() {
    // Container figures every second, so the first release has samples when it is replaced.
    let mut c = Cluster::up_with(&[("BERTH_NODE__STATS_INTERVAL_S", "1")])
        .await
        .unwrap();

    // Empty results say so, in text only.
    let text = run(&c, &["apps", "list"]);
    assert!(text.starts_with("no apps yet — create one with"), "{text}");
    assert_eq!(json(&c, &["apps", "list"]), serde_json::json!([]));

    let src = TempDir::with_prefix("cli-output-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let (fresh, app) = (unique("fresh"), unique("web"));
    c.apps.extend([fresh.clone(), app.clone()]);
    run(
        &c,
        &[
            "apps",
            "create",
            &fresh,
            "--repo",
            &repo.url(),
            "--port",
            "8080",
        ],
    );
    for (args, says) in [
        (
            vec!["deployments", &fresh],
            format!("no deployments of {fresh} yet — `berth deploy {fresh}`"),
        ),
        (
            vec!["releases", &fresh],
            format!("no releases of {fresh} yet"),
        ),
        (
            vec!["replicas", &fresh],
            format!("no replicas of {fresh} run"),
        ),
    ] {
        let text = run(&c, &args);
        assert!(text.starts_with(&says), "{args:?}: {text}");
        assert_eq!(json(&c, &args), serde_json::json!([]), "{args:?}");
    }
    let out = c.berth().args(["logs", &fresh]).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no log lines of"));

    // `apps create` prints the URL that works: with the ingress port.
    let created = run(
        &c,
        &[
            "apps",
            "create",
            &app,
            "--repo",
            &repo.url(),
            "--port",
            "8080",
            "--env",
            "GREETING=hello there",
        ],
    );
    let url = format!("http://{app}.localhost:{}/", c.ingress);
    assert!(
        created.starts_with(&format!("created app {app} → {url}\n")),
        "{created}"
    );
    let text = run(&c, &["apps", "list"]);
    let (header, row) = header_and_row(&text, &fresh);
    assert_eq!(header, ["NAME", "STATUS", "RELEASE", "URL"], "{text}");
    assert!(row.contains("not deployed"), "{text}");

    // The example app, deployed once; its URL serves it.
    run(&c, &["deploy", &app, "--wait"]);
    let first = json(&c, &["deployments", &app])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let host_port = url.trim_start_matches("http://").trim_end_matches('/');
    let (host, port) = host_port.rsplit_once(':').unwrap();
    let (status, body) = ingress_get(port.parse().unwrap(), host).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&version_marker("1")), "{body}");

    let text = run(&c, &["apps", "list"]);
    let (_, row) = header_and_row(&text, &app);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [app.as_str(), "running", first.as_str(), url.as_str()],
        "{text}"
    );
    let v = json(&c, &["apps", "show", &app]);
    assert_eq!(v["urls"], serde_json::json!([url]), "{v}");
    assert_eq!(
        (&v["status"], &v["release"]),
        (&"running".into(), &first.as_str().into())
    );

    let text = run(&c, &["apps", "show", &app]);
    for want in [
        format!("name:           {app}"),
        "status:         running".to_string(),
        format!("urls:           {url}"),
        format!("release:        {first}"),
        "env:            GREETING=hello there".to_string(),
        "git credential: none".to_string(),
        "port:           8080".to_string(),
    ] {
        assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
    }

    let text = run(&c, &["deployment", &first]);
    let commit = repo.git(&["rev-parse", "HEAD"]).unwrap();
    let message = repo.git(&["log", "-1", "--format=%s"]).unwrap();
    for want in [
        format!("{first}  {app}  succeeded"),
        "  kind:     deploy".to_string(),
        format!("  commit:   {}", &commit[..10]),
        format!("  message:  {message}"),
        format!("  node:     {}", c.node),
    ] {
        assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
    }
    for key in [
        "  author:   ",
        "  image:    ",
        "  created:  ",
        "  duration: ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "{key:?} in\n{text}"
        );
    }

    // The nodes' host figures, once the node sampled them.
    let node = c.node.clone();
    let text = eventually("the node's host figures", Duration::from_secs(20), || {
        let out = c.berth().arg("nodes").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let sampled = text
            .lines()
            .any(|l| l.starts_with(&node) && l.contains("iB / "));
        async move { sampled.then_some(text) }
    })
    .await
    .unwrap();
    let (header, row) = header_and_row(&text, &node);
    for col in [
        "NAME",
        "STATUS",
        "CPU%",
        "MEM",
        "DISK",
        "LABELS",
        "HEARTBEAT",
    ] {
        assert!(
            header.iter().any(|h| h.starts_with(col)),
            "{col} in\n{text}"
        );
    }
    assert!(row.contains("ready"), "{text}");

    // A second release: one that prints coloured text while it builds and ticks on stdout and
    // stderr while it runs.
    repo.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN printf '\\033[1;31mred build line\\033[0m\\n'\n\
         COPY www /www\n\
         CMD [\"sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick $i; echo oops $i >&2; sleep 0.2; done & exec httpd -f -p 8080 -h /www\"]\n",
    )
    .unwrap();
    repo.commit("tick").unwrap();
    run(&c, &["deploy", &app, "--wait"]);
    let second = json(&c, &["deployments", &app])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    let text = run(&c, &["apps", "list"]);
    let (_, row) = header_and_row(&text, &app);
    assert!(row.contains(&second) && row.contains("running"), "{text}");

    // The build log keeps the colour codes; printed to a file they are gone.
    let raw = c.api.log(&second).await.unwrap();
    assert!(raw.contains("\u{1b}[1;31mred build line"), "{raw:?}");
    let printed = run(&c, &["log", &second]);
    assert!(printed.contains("red build line"), "{printed}");
    assert!(!printed.contains('\u{1b}'), "{printed:?}");

    // Metrics: only the replica that runs now, although the first release's samples are in
    // the window.
    let stream = c
        .redis_cli(&["XRANGE", &format!("berth:metrics:{app}"), "-", "+"])
        .unwrap();
    assert!(
        stream.contains(&first),
        "samples of the first release are kept"
    );
    let m = eventually(
        "samples of the new release",
        Duration::from_secs(20),
        || {
            let out = c
                .berth()
                .args(["--json", "metrics", &app])
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let ok = v["replicas"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["deployment"] == second.as_str()));
            async move { ok.then_some(v) }
        },
    )
    .await
    .unwrap();
    let deployments: Vec<&str> = m["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deployment"].as_str().unwrap())
        .collect();
    assert_eq!(deployments, [second.as_str()], "{m}");
    let text = run(&c, &["metrics", &app]);
    assert!(text.contains(&second) && !text.contains(&first), "{text}");

    // Timestamps and streams.
    let text = eventually("ticks in the app's log", Duration::from_secs(20), || {
        let out = c
            .berth()
            .args(["logs", &app, "--timestamps", "--tail", "6"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        async move { (text.lines().count() == 6).then_some(text) }
    })
    .await
    .unwrap();
    let now = SystemTime::now();
    for line in text.lines() {
        let (ts, rest) = line.split_once(' ').unwrap();
        let at = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert!(
            now.duration_since(at).unwrap() < Duration::from_secs(60),
            "{line}"
        );
        assert!(rest.starts_with(&format!("{}/", c.node)), "{line}");
    }
    assert!(text.contains(" stdout  tick "), "{text}");
    assert!(text.contains(" stderr  oops "), "{text}");

    // `--tail 0 -f`: only lines that arrive after it started.
    let before = ticks(&run(&c, &["logs", &app, "--tail", "50"]));
    let newest_before = *before.iter().max().expect("ticks before");
    let file = c.dir.path().join("tail0.txt");
    let mut follower = c
        .berth()
        .args(["logs", &app, "--tail", "0", "-f"])
        .stdout(std::fs::File::create(&file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let followed = eventually(
        "the follower to print ticks",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            async move { (ticks(&text).len() >= 3).then_some(text) }
        },
    )
    .await;
    let _ = follower.kill();
    let _ = follower.wait();
    let followed = followed.unwrap();
    let got = ticks(&followed);
    assert!(
        got.iter().all(|n| *n > newest_before),
        "only ticks after {newest_before}: {followed}"
    );
}
