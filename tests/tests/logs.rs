//! Real-time logs through the real cluster: a deployment's log followed over SSE while it builds
//! and resumed with `Last-Event-ID`; runtime lines of every replica merged and tagged; masking of
//! a registered secret in build and app output; the CLI's `logs` and `deploy --follow`.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use berth_protocol::sse::SseEvent;
use berth_protocol::LogEntry;
use berth_tests::{
    eventually, private_https_remote, repo_root, sh, unique, Api, Cluster, GitRepo, Sse, TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);
const EVENT: Duration = Duration::from_secs(60);

/// An app from examples/hello with its Dockerfile replaced, and a file of its own in `www/`, so
/// no layer cache left on the engine by an earlier (interrupted) run skips its build steps.
fn repo_with(dir: &TempDir, dockerfile: &str) -> GitRepo {
    let repo = GitRepo::from_dir(dir.path(), &repo_root().join("examples/hello")).unwrap();
    repo.write("Dockerfile", dockerfile).unwrap();
    repo.write("www/build-id", &unique("build")).unwrap();
    repo.commit("dockerfile").unwrap();
    repo
}

fn line_of(ev: &SseEvent) -> LogEntry {
    ev.json::<LogEntry>()
        .unwrap_or_else(|| panic!("not a log line event: {ev:?}"))
}

async fn status(api: &Api, id: &str) -> String {
    let (_, d) = api.get(&format!("/api/v1/deployments/{id}")).await.unwrap();
    d["status"].as_str().unwrap_or_default().to_string()
}

async fn json_log(api: &Api, path: &str) -> Vec<LogEntry> {
    let (s, v) = api.get(path).await.unwrap();
    assert_eq!(s, 200, "{path}: {v}");
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_lines_stream_while_building_and_resume_without_gap() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("logs-src").unwrap();
    // The build prints one marker, works for a while, then prints another (after COPY, so a
    // change to www/ runs it again).
    let repo = repo_with(
        &src,
        "FROM busybox\n\
         COPY www /www\n\
         RUN echo first-build-marker && sleep 4 && echo second-build-marker\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    );
    let app = unique("follow");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let id = c.api.deploy(&app, None).await.unwrap();
    let path = format!("/api/v1/deployments/{id}/logs");

    // Follow from the start; the first marker arrives while the build is still running.
    let mut sse = Sse::open(&c.api, &format!("{path}?follow=1"), None)
        .await
        .unwrap();
    let mut seen: Vec<LogEntry> = Vec::new();
    loop {
        let ev = sse
            .next(EVENT)
            .await
            .unwrap()
            .expect("stream open until the end");
        assert_eq!(ev.event, "message", "{ev:?}");
        let e = line_of(&ev);
        assert_eq!(ev.id.as_deref(), Some(e.id.as_str()));
        seen.push(e.clone());
        if e.line.line.trim() == "first-build-marker" {
            assert_eq!(
                status(&c.api, &id).await,
                "building",
                "the line came only after the build"
            );
            assert!(seen
                .iter()
                .all(|e| e.line.line.trim() != "second-build-marker"));
            break;
        }
    }
    // Drop the connection mid-build and come back with the last id seen.
    drop(sse);
    let last = seen.last().unwrap().id.clone();
    let mut sse = Sse::open(&c.api, &path, Some(&last)).await.unwrap();
    let end = loop {
        let ev = sse
            .next(DEPLOY)
            .await
            .unwrap()
            .expect("an end event before the stream closes");
        if ev.event == "end" {
            break ev;
        }
        seen.push(line_of(&ev));
    };
    let end: Value = serde_json::from_str(&end.data).unwrap();
    assert_eq!(end["status"], "succeeded", "{end}");
    assert!(
        sse.next(Duration::from_secs(5)).await.unwrap().is_none(),
        "the stream closes after the end event"
    );

    // What the two connections delivered is exactly the stored log: no duplicate, no gap.
    let full = json_log(&c.api, &format!("{path}?format=json")).await;
    let ids = |v: &[LogEntry]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&seen), ids(&full));
    assert_eq!(
        ids(&seen).into_iter().collect::<HashSet<_>>().len(),
        full.len()
    );
    assert!(full
        .iter()
        .any(|e| e.line.line.trim() == "second-build-marker"));
    assert_eq!(
        full.last().unwrap().line.line,
        "deployment succeeded",
        "the closing line is last"
    );

    // Following a finished deployment replays it and ends at once; the text form is the same.
    let mut again = Sse::open(&c.api, &path, None).await.unwrap();
    let mut n = 0;
    while let Some(ev) = again.next(EVENT).await.unwrap() {
        if ev.event == "end" {
            break;
        }
        n += 1;
    }
    assert_eq!(n, full.len());
    let text = c.api.log(&id).await.unwrap();
    assert_eq!(text.lines().count(), full.len());

    // Bad input is refused with a reason.
    for (p, last, want) in [
        (format!("{path}?follow=1"), Some("not-an-id"), 400),
        (format!("{path}?follow=maybe"), None, 400),
        (
            "/api/v1/deployments/nope/logs?follow=1".to_string(),
            None,
            404,
        ),
    ] {
        let mut req = c
            .api
            .http
            .get(format!("{}{p}", c.api.base))
            .bearer_auth(&c.api.token);
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{p}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    // The CLI: `deploy --follow` prints the build as it goes, then the outcome.
    repo.write("www/extra.txt", "x").unwrap();
    repo.commit("again").unwrap();
    let out = c
        .berth()
        .args(["deploy", &app, "--follow"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.find("\nfirst-build-marker\n").expect(&stdout);
    let second = stdout.find("\nsecond-build-marker\n").expect(&stdout);
    let done = stdout.rfind("succeeded").expect(&stdout);
    assert!(first < second && second < done, "{stdout}");
    c.apps.push(app);
}

/// The app prints `tick <version>` on stdout and `tock <version>` on stderr a few times a second.
const TICKER: &str = "FROM busybox\n\
    COPY www /www\n\
    CMD [\"sh\", \"-c\", \"while true; do echo tick $(cat /www/v.txt); echo tock $(cat /www/v.txt) >&2; sleep 0.2; done & exec httpd -f -p 8080 -h /www\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_lines_of_old_and_new_release_merge_during_the_drain() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("applogs-src").unwrap();
    let repo = repo_with(&src, TICKER);
    let app = unique("ticker");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 8}))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for v in ["v1", "v2"] {
        repo.write("www/v.txt", v).unwrap();
        repo.commit(v).unwrap();
        let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
        assert_eq!(d["status"], "succeeded", "{d}");
        ids.push(id);
    }
    let path = format!("/api/v1/apps/{app}/logs");

    // During v1's drain both containers print; the one merged stream carries both, tagged.
    let mut sse = Sse::open(&c.api, &format!("{path}?follow=1&tail=1"), None)
        .await
        .unwrap();
    let mut got: Vec<LogEntry> = Vec::new();
    let interleaved = |got: &[LogEntry]| {
        let first_v2 = got.iter().position(|e| e.line.line == "tick v2");
        first_v2.is_some_and(|i| got[i..].iter().any(|e| e.line.line == "tick v1"))
    };
    while !interleaved(&got) {
        let ev = sse.next(Duration::from_secs(20)).await.unwrap().unwrap();
        got.push(line_of(&ev));
    }
    drop(sse);
    for e in &got {
        let version = e.line.line.rsplit(' ').next().unwrap();
        let want_deployment = if version == "v1" { &ids[0] } else { &ids[1] };
        assert_eq!(e.line.node.as_deref(), Some(c.node.as_str()), "{e:?}");
        assert_eq!(e.line.deployment.as_ref(), Some(want_deployment), "{e:?}");
        let stream = if e.line.line.starts_with("tock") {
            "stderr"
        } else {
            "stdout"
        };
        assert_eq!(e.line.stream.as_str(), stream, "{e:?}");
        assert!(e.line.ts > 0);
    }
    let containers: HashSet<_> = got
        .iter()
        .filter_map(|e| e.line.container.clone())
        .collect();
    assert_eq!(containers.len(), 2, "{containers:?}");
    let running = berth_tests::running_containers(&app, &c.node).unwrap();
    assert!(!running.is_empty());

    // Reads: `tail`, `since`, text; bad input is a 400.
    let five = json_log(&c.api, &format!("{path}?format=json&tail=5")).await;
    assert_eq!(five.len(), 5);
    let order = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    };
    assert!(five.windows(2).all(|w| order(&w[0].id) < order(&w[1].id)));
    let recent = json_log(&c.api, &format!("{path}?format=json&since=2s")).await;
    let cutoff = berth_protocol::now_ms() - 4_000;
    assert!(!recent.is_empty() && recent.iter().all(|e| e.line.ts >= cutoff));
    let (s, v) = c
        .api
        .get(&format!("{path}?tail=0&format=json"))
        .await
        .unwrap();
    assert_eq!((s, v), (200, serde_json::json!([])));
    let (s, v) = c.api.get(&format!("{path}?tail=10001")).await.unwrap();
    assert_eq!(s, 400, "{v}");
    let (s, _) = c.api.get("/api/v1/apps/nope/logs").await.unwrap();
    assert_eq!(s, 404);

    // The CLI prints `node/container  line`.
    let out = sh(c.berth().args(["logs", &app, "--tail", "3"])).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in lines {
        assert!(l.starts_with(&format!("{}/", c.node)), "{l}");
        assert!(l.contains("tick v") || l.contains("tock v"), "{l}");
    }
    c.apps.push(app);
}

const SECRET: &str = "ghp_LogMaskingSecret0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_secret_is_masked_in_build_and_app_output() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("mask-src").unwrap();
    // The repository itself prints the credential's value, at build time and at run time.
    let repo = repo_with(
        &src,
        &format!(
            "FROM busybox\n\
             RUN echo build says {SECRET}\n\
             COPY www /www\n\
             CMD [\"sh\", \"-c\", \"while true; do echo app says {SECRET}; sleep 0.3; done & exec httpd -f -p 8080 -h /www\"]\n"
        ),
    );
    let (url, _) = private_https_remote(src.path(), &repo, SECRET)
        .await
        .unwrap();
    let app = unique("masked");
    c.create_app(json!({"name": app, "repo": url,
        "port": 8080, "git_credential": {"kind": "https_token", "token": SECRET}}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    let build_log = c.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{build_log}");
    assert!(build_log.contains("build says ********"), "{build_log}");
    assert!(!build_log.contains(SECRET), "{build_log}");

    let runtime = eventually("the app's output", Duration::from_secs(20), || {
        let api = c.api.clone();
        let app = app.clone();
        async move {
            let (_, v) = api
                .get(&format!("/api/v1/apps/{app}/logs?format=json&tail=20"))
                .await
                .ok()?;
            let text = v.to_string();
            text.contains("app says").then_some(text)
        }
    })
    .await
    .unwrap();
    assert!(runtime.contains("app says ********"), "{runtime}");
    assert!(!runtime.contains(SECRET), "{runtime}");
    // The container really printed the value: the masking happened on the way out.
    let ids = berth_tests::running_containers(&app, &c.node).unwrap();
    let raw = sh(Command::new("docker").args(["logs", "--tail", "3", &ids[0]])).unwrap();
    assert!(raw.contains(SECRET), "{raw}");
    c.apps.push(app);
}

/// Retention: creating a deployment deletes the logs of the app's deployments beyond the newest
/// 20 (the records stay); long lines are cut at 4 KiB on the way out of the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_deployment_logs_are_trimmed_and_long_lines_cut() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("trim-src").unwrap();
    // At start the app prints one 6,000-byte line.
    let repo = repo_with(
        &src,
        "FROM busybox\n\
         COPY www /www\n\
         CMD [\"sh\", \"-c\", \"head -c 6000 /dev/zero | tr '\\\\0' x; echo; exec httpd -f -p 8080 -h /www\"]\n",
    );
    let app = unique("trim");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    // 25 earlier deployments, each with a log, written straight into Redis (oldest first).
    let redis = |args: &[&str]| c.redis_cli(args);
    let old: Vec<String> = (0..25).map(|i| format!("dold{i:02}")).collect();
    for (i, id) in old.iter().enumerate() {
        let score = (1000 + i).to_string();
        redis(&["ZADD", &format!("berth:app:{app}:deployments"), &score, id]).unwrap();
        redis(&[
            "XADD",
            &format!("berth:logs:{id}"),
            "*",
            "ts",
            "1",
            "stream",
            "system",
            "line",
            "old",
        ])
        .unwrap();
    }
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    // 26 deployments now: the 6 oldest lost their logs, the newest 20 (19 old + this) kept them.
    for (i, old_id) in old.iter().enumerate() {
        let exists = redis(&["EXISTS", &format!("berth:logs:{old_id}")]).unwrap();
        let want = if i < 6 { "0" } else { "1" };
        assert_eq!(exists, want, "log of {old_id} (#{i})");
    }
    assert!(!c.api.log(&id).await.unwrap().is_empty());

    let long = eventually("the long line", Duration::from_secs(20), || {
        let api = c.api.clone();
        let app = app.clone();
        async move {
            let path = format!("/api/v1/apps/{app}/logs?format=json&tail=10");
            let (_, v) = api.get(&path).await.ok()?;
            let entries: Vec<LogEntry> = serde_json::from_value(v).ok()?;
            entries
                .into_iter()
                .find(|e| e.line.line.starts_with("xxxx"))
        }
    })
    .await
    .unwrap();
    assert!(
        long.line.line.ends_with("… [line cut at 4096 bytes]"),
        "{}",
        &long.line.line[long.line.line.len() - 60..]
    );
    assert!(long.line.line.len() < 4096 + 64);
    c.apps.push(app);
}

/// A node restart loses no line of a running app and repeats none: the shipper resumes after the
/// last line it shipped (Docker's nanosecond stamp), not from "now". A `berth logs -f` running
/// through a node and a coordinator restart prints every line once: it resumes with
/// `Last-Event-ID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_leave_no_gap_in_runtime_logs() {
    let mut c = Cluster::separate().await.unwrap();
    let src = TempDir::with_prefix("restart-src").unwrap();
    let repo = repo_with(
        &src,
        "FROM busybox\n\
         COPY www /www\n\
         CMD [\"sh\", \"-c\", \"i=0; while true; do echo n $i; i=$((i+1)); usleep 20000; done & exec httpd -f -p 8080 -h /www\"]\n",
    );
    let app = unique("gapless");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    let path = format!("/api/v1/apps/{app}/logs?format=json&tail=10000");
    let numbers = |entries: Vec<LogEntry>| -> Vec<u64> {
        entries
            .iter()
            .filter_map(|e| e.line.line.strip_prefix("n ")?.parse().ok())
            .collect()
    };
    let before = eventually("lines before the restart", Duration::from_secs(20), || {
        let api = c.api.clone();
        let path = path.clone();
        async move {
            let n = numbers(json_log(&api, &path).await);
            (n.len() >= 10).then(|| *n.last().unwrap())
        }
    })
    .await
    .unwrap();

    let cli_out = c.dir.path().join("cli-follow.txt");
    let mut cli = c
        .berth()
        .args(["logs", &app, "-f", "--tail", "1"])
        .stdout(std::fs::File::create(&cli_out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the CLI follower to print", Duration::from_secs(20), || {
        let out = std::fs::read_to_string(&cli_out).unwrap_or_default();
        async move { out.contains("  n ").then_some(()) }
    })
    .await
    .unwrap();
    c.restart_node().await.unwrap();
    c.restart_coordinator().await.unwrap();
    // The app printed on while the node was down; wait for lines well after the restart.
    let all = eventually("lines after the restart", Duration::from_secs(30), || {
        let api = c.api.clone();
        let path = path.clone();
        async move {
            let n = numbers(json_log(&api, &path).await);
            (n.last().copied().unwrap_or(0) > before + 100).then_some(n)
        }
    })
    .await
    .unwrap();
    let first = all[0];
    let expected: Vec<u64> = (first..first + all.len() as u64).collect();
    assert_eq!(
        all, expected,
        "every number once, in order, across the restart (after {before})"
    );

    // The CLI follower saw the same: consecutive numbers, through both restarts.
    let last = *all.last().unwrap();
    eventually("the CLI to catch up", Duration::from_secs(30), || {
        let out = std::fs::read_to_string(&cli_out).unwrap_or_default();
        async move { out.contains(&format!("  n {last}\n")).then_some(()) }
    })
    .await
    .unwrap();
    let _ = cli.kill();
    let _ = cli.wait();
    let printed: Vec<u64> = std::fs::read_to_string(&cli_out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split("  n ").nth(1)?.parse().ok())
        .collect();
    let from = printed[0];
    let expected: Vec<u64> = (from..from + printed.len() as u64).collect();
    assert_eq!(printed, expected, "the CLI printed every line once");
    c.apps.push(app);
}

/// Followers of one stream share one blocking Redis reader: 30 followers of an app add one Redis
/// connection, not 30; a line added to the stream reaches all of them; and once they are gone the
/// reader goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_one_stream_share_one_redis_reader() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("hub-src").unwrap();
    let repo = repo_with(&src, "FROM busybox\nCOPY www /www\n");
    let app = unique("hub");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let redis = |args: &[&str]| c.redis_cli(args);
    // Connections other than redis-cli's own.
    let clients = || -> usize {
        let info = redis(&["INFO", "clients"]).unwrap();
        let n: usize = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        n - 1
    };
    let before = clients();
    let path = format!("/api/v1/apps/{app}/logs?follow=1");
    let mut followers = Vec::new();
    for _ in 0..30 {
        followers.push(Sse::open(&c.api, &path, None).await.unwrap());
    }
    let during = clients();
    assert!(
        during <= before + 1,
        "30 followers took {} Redis connections",
        during - before
    );
    redis(&[
        "XADD",
        &format!("berth:applogs:{app}"),
        "*",
        "ts",
        "1",
        "stream",
        "stdout",
        "line",
        "hub-news",
        "node",
        &c.node,
        "container",
        "hub-c1",
    ])
    .unwrap();
    for (i, f) in followers.iter_mut().enumerate() {
        let ev = f
            .next(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("follower {i}: stream closed"));
        let e = line_of(&ev);
        assert_eq!(e.line.line, "hub-news", "follower {i}");
        assert_eq!(e.line.container.as_deref(), Some("hub-c1"));
    }
    drop(followers);
    eventually("the reader to go", Duration::from_secs(10), || async {
        (clients() <= before).then_some(())
    })
    .await
    .unwrap();
}
