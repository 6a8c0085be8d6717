//! `berth exec`: a command in a running replica, through the real CLI, API, Redis and node.

use std::process::Output;
use std::time::{Duration, Instant};

use berth_tests::{repo_root, unique, Cluster, GitRepo, Sse, TempDir};
use serde_json::json;

const DEPLOY: Duration = Duration::from_secs(180);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs the CLI against the cluster.
fn berth(c: &Cluster, args: &[&str]) -> Output {
    c.berth().args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_a_command_in_a_running_replica() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("exec-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();

    // An app that never ran: the error says what to do.
    let idle = unique("exidle");
    c.create_app(json!({"name": idle, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let out = berth(&c, &["exec", &idle, "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "app {idle} has no running replica: deploy it with `berth deploy {idle}`"
        )),
        "{}",
        show(&out)
    );

    let app = unique("ex");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");

    // The output of a command: the page the app serves, byte for byte.
    let served =
        std::fs::read_to_string(repo_root().join("examples/hello/www/index.html")).unwrap();
    let out = berth(&c, &["exec", &app, "--", "cat", "/www/index.html"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout), served);
    assert_eq!(text(&out.stderr), "");

    // stdout to stdout, stderr to stderr, and the exit code is the command's.
    let out = berth(
        &c,
        &[
            "exec",
            &app,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; printf 'no newline'; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_eq!(text(&out.stdout), "out\nno newline");
    assert_eq!(text(&out.stderr), "err\n");

    // No such program: 127, as a shell says.
    let out = berth(&c, &["exec", &app, "--", "no-such-program", "x"]);
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    assert_eq!(
        text(&out.stdout),
        "",
        "Docker's message is not the command's output"
    );
    assert!(
        text(&out.stderr).contains("executable file not found"),
        "{}",
        show(&out)
    );

    // The node and the replica can be named; unknown ones are listed.
    let out = berth(
        &c,
        &["exec", &app, "--node", &c.node, "--", "echo", "on node"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout), "on node\n");
    let (_, replicas) = c
        .api
        .get(&format!("/api/v1/apps/{app}/replicas"))
        .await
        .unwrap();
    let container = replicas[0]["container"].as_str().unwrap().to_string();
    let out = berth(
        &c,
        &[
            "exec",
            &app,
            "--replica",
            &container[..12],
            "--",
            "hostname",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        container.starts_with(text(&out.stdout).trim()),
        "the container's hostname is its short id: {}",
        show(&out)
    );
    let out = berth(&c, &["exec", &app, "--node", "nowhere", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("its replicas run on: {}", c.node)),
        "{}",
        show(&out)
    );
    let out = berth(
        &c,
        &["exec", &app, "--replica", "ffffffff0000", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("{} on {}", &container[..12], c.node)),
        "{}",
        show(&out)
    );

    // An empty command, an unknown app.
    let out = berth(&c, &["exec", &app]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("the command is empty"),
        "{}",
        show(&out)
    );
    let out = berth(&c, &["exec", "no-such-app", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("not found"), "{}", show(&out));

    // A command past its timeout is killed and said so.
    let started = Instant::now();
    let out = berth(&c, &["exec", &app, "--timeout", "2s", "--", "sleep", "300"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("timed out after 2s: the command was killed"),
        "{}",
        show(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let out = berth(&c, &["exec", &app, "--", "ps"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!text(&out.stdout).contains("sleep 300"), "{}", show(&out));

    // Every exec stream expires: after its end, within `KEEP_S`.
    let keys = c
        .redis_cli(&["--scan", "--pattern", "berth:exec:*"])
        .unwrap();
    let streams: Vec<&str> = keys.lines().filter(|k| !k.ends_with(":claim")).collect();
    assert!(streams.len() >= 7, "one stream per exec that ran: {keys}");
    for key in keys.lines() {
        let ttl: i64 = c.redis_cli(&["TTL", key]).unwrap().parse().unwrap();
        assert!(ttl > 0, "{key} has a TTL: {ttl}");
        if streams.contains(&key) {
            assert!(
                ttl <= berth_protocol::exec::KEEP_S as i64,
                "{key} is kept after its end for KEEP_S at most: {ttl}"
            );
        }
    }

    // A command no node picks up (its node went down after it was queued) ends with an error
    // after the pickup wait, and the node would skip it if it came back.
    let ghost = "xghostexec";
    let queued_at = berth_protocol::now_ms() - (berth_protocol::exec::PICKUP_S + 1) * 1000;
    c.redis_cli(&[
        "XADD",
        &format!("berth:exec:{ghost}"),
        &format!("{queued_at}-0"),
        "type",
        "queued",
        "node",
        "ghost",
        "container",
        "c0ffee",
        "timeout_s",
        "60",
    ])
    .unwrap();
    let mut sse = Sse::open(&c.api, &format!("/api/v1/exec/{ghost}"), None)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(ev) = sse.next(Duration::from_secs(10)).await.unwrap() {
        events.push((ev.event, ev.data));
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].0, "queued", "{events:?}");
    assert_eq!(events[1].0, "end", "{events:?}");
    assert!(
        events[1]
            .1
            .contains("node ghost did not pick up the command"),
        "{events:?}"
    );
    assert_eq!(
        c.redis_cli(&["GET", &format!("berth:exec:{ghost}:claim")])
            .unwrap(),
        "expired"
    );
    let (s, v) = c.api.get("/api/v1/exec/xnosuchexec").await.unwrap();
    assert_eq!(s, 404, "{v}");
}
