//! App containers are confined (issue 13, items 1 and 2): they inspect as unprivileged, with
//! every capability dropped but a small allow-list, `no-new-privileges`, memory, CPU and process
//! limits (the app's own, else the node's), on Berth's app network without the Docker socket or
//! the host's network; and from inside one, neither the node's Redis, nor its Caddy admin API,
//! nor another app's container can be reached, while both apps serve through Caddy.

use std::process::Output;
use std::time::Duration;

use berth_tests::{
    docker_cli, eventually, repo_root, running_containers, sh, unique, Cluster, GitRepo, TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

/// The capabilities an app keeps (`CAPABILITIES` in node/src/containers.rs), as Docker shows them.
const ALLOWED: [&str; 7] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETGID",
    "CAP_SETUID",
];

/// The same set as a capability mask (bits 0, 1, 3, 5, 6, 7, 10), as `/proc/<pid>/status`
/// prints it.
const ALLOWED_MASK: &str = "00000000000004eb";

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

/// `berth exec <app> -- sh -c <script>` in the cluster.
fn exec(c: &Cluster, app: &str, script: &str) -> Output {
    c.berth()
        .args(["exec", app, "--", "sh", "-c", script])
        .output()
        .unwrap()
}

/// Whether a TCP connection from inside `app`'s container to `ip:port` is made. busybox `nc`
/// either connects (it exits when the peer closes; a peer that keeps the connection open is
/// cut by `timeout`) or says it cannot: "can't connect" (refused, unreachable) or "timed out"
/// (dropped). Anything else — the probe itself failing — counts as reached, so a broken probe
/// fails the test rather than passing it.
fn reaches(c: &Cluster, app: &str, ip: &str, port: u16) -> (bool, String) {
    let out = exec(
        c,
        app,
        &format!("timeout 6 nc -w 3 {ip} {port} </dev/null; echo rc=$?"),
    );
    let all = show(&out);
    let refused = all.contains("can't connect") || all.contains("timed out");
    (!refused, all)
}

/// `docker inspect` of one container, as JSON.
fn inspect(id: &str) -> Value {
    let out = sh(docker_cli(None).args(["inspect", id])).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// A container's `IPAddress` or `Gateway` on the (one) network it joined.
fn address(info: &Value, field: &str) -> String {
    let networks = info["NetworkSettings"]["Networks"].as_object().unwrap();
    networks
        .values()
        .find_map(|n| n[field].as_str().filter(|a| !a.is_empty()))
        .unwrap_or_else(|| panic!("no {field} in {networks:?}"))
        .to_string()
}

/// The one running container of `app` on the cluster's node, once the previous one (if any)
/// was stopped.
async fn container_of(c: &Cluster, app: &str) -> String {
    eventually(
        &format!("one running container of {app}"),
        Duration::from_secs(30),
        || async {
            let ids = running_containers(app, &c.node).unwrap();
            (ids.len() == 1).then(|| ids[0].clone())
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_containers_are_confined_and_cannot_reach_redis_caddy_or_each_other() {
    // The separate form: Redis on TCP (127.0.0.1), Caddy's admin API on TCP (127.0.0.1). The
    // node's defaults for apps that set no limits are given here, so they show in the inspect.
    let mut c = Cluster::separate_with(&[
        ("BERTH_NODE__APP_MEMORY_MB", "300"),
        ("BERTH_NODE__APP_PIDS", "200"),
        ("BERTH_NODE__APP_MILLICPUS", "700"),
    ])
    .await
    .unwrap();
    let redis_port = c
        .redis_port()
        .expect("a separate cluster runs Redis on TCP");
    let admin_port: u16 = c
        .env
        .iter()
        .find(|(k, _)| k == "BERTH_NODE__CADDY_ADMIN")
        .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
        .expect("the Caddy admin address");
    let src = TempDir::with_prefix("contain-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();

    let (a, b) = (unique("cona"), unique("conb"));
    for app in [&a, &b] {
        c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
            .await
            .unwrap();
        let (_, d) = c.api.deploy_and_wait(app, None, DEPLOY).await.unwrap();
        assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    }
    for app in [&a, &b] {
        c.serves(&format!("{app}.localhost"), "Hello")
            .await
            .unwrap_or_else(|e| panic!("{app} is not served through Caddy: {e}"));
    }

    // The containers' bridge: its gateway is the host, as the app sees it.
    let (ca, cb) = (container_of(&c, &a).await, container_of(&c, &b).await);
    let gateway = address(&inspect(&ca), "Gateway");

    // The probe works: it reaches a listener the test opens on the gateway, and the app's
    // own port from inside.
    let listener = tokio::net::TcpListener::bind((gateway.as_str(), 0))
        .await
        .unwrap_or_else(|e| panic!("cannot listen on the gateway {gateway}: {e}"));
    let open = listener.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        // Accept and close at once: nc exits when the peer closes.
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let (ok, seen) = reaches(&c, &a, &gateway, open);
    assert!(
        ok,
        "the probe did not reach the test's listener on {gateway}:{open}: {seen}"
    );
    let (ok, seen) = reaches(&c, &a, "127.0.0.1", 8080);
    assert!(ok, "the probe did not reach the app's own port: {seen}");

    // The attacks: the node's Redis and Caddy admin API through the bridge's gateway, and the
    // other app's container directly.
    let (reached, seen) = reaches(&c, &a, &gateway, redis_port);
    assert!(
        !reached,
        "the app reached Redis at {gateway}:{redis_port}: {seen}"
    );
    let (reached, seen) = reaches(&c, &a, &gateway, admin_port);
    assert!(
        !reached,
        "the app reached Caddy's admin API at {gateway}:{admin_port}: {seen}"
    );
    let b_ip = address(&inspect(&cb), "IPAddress");
    let (reached, seen) = reaches(&c, &a, &b_ip, 8080);
    assert!(
        !reached,
        "app {a} reached app {b}'s container at {b_ip}:8080: {seen}"
    );
    accepting.abort();

    // What the engine says of the container.
    let info = inspect(&ca);
    let host = &info["HostConfig"];
    assert_eq!(host["Privileged"], false, "{host}");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{host}");
    let mut added: Vec<String> = host["CapAdd"]
        .as_array()
        .unwrap_or_else(|| panic!("no CapAdd: {host}"))
        .iter()
        .map(|c| {
            let c = c.as_str().unwrap().to_string();
            if c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect();
    added.sort();
    assert_eq!(added, ALLOWED, "{host}");
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]), "{host}");
    assert_eq!(host["Memory"], 300u64 << 20, "the node's default: {host}");
    assert_eq!(
        host["MemorySwap"],
        300u64 << 20,
        "no swap beyond it: {host}"
    );
    assert_eq!(host["PidsLimit"], 200, "{host}");
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(
        host["NanoCpus"],
        700u64.min(cpus * 1000) * 1_000_000,
        "{host}"
    );
    assert_eq!(host["ReadonlyRootfs"], false, "{host}");
    let mode = host["NetworkMode"].as_str().unwrap_or_default().to_string();
    for bad in ["default", "bridge", "host", ""] {
        assert_ne!(mode, bad, "{host}");
    }
    let networks = info["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(
        networks.keys().collect::<Vec<_>>(),
        ["berth-apps"],
        "{networks:?}"
    );
    let mounts = info["Mounts"].as_array().cloned().unwrap_or_default();
    assert!(
        !mounts.iter().any(|m| m.to_string().contains("docker.sock")),
        "{mounts:?}"
    );
    assert!(host["Binds"].is_null(), "{host}");
    let net: Value = serde_json::from_str(
        &sh(docker_cli(None).args(["network", "inspect", "berth-apps"])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        net[0]["Options"]["com.docker.network.bridge.enable_icc"], "false",
        "{net}"
    );

    // What the process inside has: the allow-list only, and no way to gain more.
    let out = exec(
        &c,
        &a,
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status",
    );
    assert!(out.status.success(), "{}", show(&out));
    let status = text(&out.stdout);
    assert!(
        status.contains(&format!("CapEff:\t{ALLOWED_MASK}")),
        "{status}"
    );
    assert!(
        status.contains(&format!("CapBnd:\t{ALLOWED_MASK}")),
        "{status}"
    );
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    // A raw socket needs NET_RAW, which is gone.
    let out = exec(&c, &a, "ping -c 1 -W 1 127.0.0.1");
    assert!(!out.status.success(), "ping worked: {}", show(&out));
    assert!(
        text(&out.stderr).contains("permission denied")
            || text(&out.stderr).contains("Operation not permitted"),
        "{}",
        show(&out)
    );

    // Both still serve through Caddy.
    for app in [&a, &b] {
        c.serves(&format!("{app}.localhost"), "Hello")
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_limits_are_validated_shown_and_applied() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("limits-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("lim");

    // Bad limits are refused with a sentence, at create and at PATCH, and change nothing.
    let (status, body) = c
        .api
        .post(
            "/api/v1/apps",
            json!({"name": app, "repo": repo.url(), "port": 8080, "limits": {"memory_mb": 1}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("limits.memory_mb must be 16 to 1048576 (MiB), not 1"),
        "{body}"
    );
    c.create_app(json!({
        "name": app, "repo": repo.url(), "port": 8080, "drain_s": 0,
        "limits": {"memory_mb": 64, "millicpus": 500, "pids": 64, "read_only": true}
    }))
    .await
    .unwrap();
    let (status, body) = c
        .api
        .patch(
            &format!("/api/v1/apps/{app}"),
            json!({"limits": {"pids": 2}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("limits.pids must be 16 to 4194304 (processes), not 2"),
        "{body}"
    );
    let (_, shown) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    let limits = &shown["limits"];
    assert_eq!(
        *limits,
        json!({"memory_mb": 64, "millicpus": 500, "pids": 64, "read_only": true}),
        "{shown}"
    );
    let out = c.berth().args(["apps", "show", &app]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("memory 64 MiB, cpu 500 millicpus, pids 64, read-only root"),
        "{}",
        show(&out)
    );

    // Deployed, the container has them; the read-only app still serves and writes to /tmp only.
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    c.serves(&format!("{app}.localhost"), "Hello")
        .await
        .unwrap();
    let host = inspect(&container_of(&c, &app).await)["HostConfig"].clone();
    assert_eq!(host["Memory"], 64u64 << 20, "{host}");
    assert_eq!(host["PidsLimit"], 64, "{host}");
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(
        host["NanoCpus"],
        500u64.min(cpus * 1000) * 1_000_000,
        "{host}"
    );
    assert_eq!(host["ReadonlyRootfs"], true, "{host}");
    let out = exec(&c, &app, "touch /www/x");
    assert!(
        !out.status.success(),
        "wrote to a read-only root: {}",
        show(&out)
    );
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        show(&out)
    );
    let out = exec(&c, &app, "touch /tmp/x && echo ok");
    assert!(out.status.success(), "{}", show(&out));

    // The process limit holds: more processes than it allows cannot start.
    let out = exec(
        &c,
        &app,
        "for i in $(seq 1 80); do sleep 5 </dev/null >/dev/null 2>&1 & done; \
         kill $(jobs -p) 2>/dev/null; echo done",
    );
    assert!(
        text(&out.stderr).contains("can't fork")
            || text(&out.stderr).contains("Resource temporarily unavailable"),
        "80 processes started under a limit of 64: {}",
        show(&out)
    );

    // Back to the node's defaults through the CLI, and a restart applies them.
    let out = c
        .berth()
        .args(["apps", "update", &app, "--default-limits", "--no-read-only"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = c
        .berth()
        .args(["restart", &app, "--wait"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out.stdout).contains("succeeded"),
        "{}\n{}",
        show(&out),
        c.logs()
    );
    let host = inspect(&container_of(&c, &app).await)["HostConfig"].clone();
    assert_eq!(host["Memory"], 512u64 << 20, "the node's default: {host}");
    assert_eq!(host["PidsLimit"], 512, "{host}");
    assert_eq!(host["ReadonlyRootfs"], false, "{host}");
}

/// A Dockerfile whose build probes, from a `RUN` step, the gateway's Redis and Caddy admin ports
/// and the test's own listener there (the control), and records its memory limit; the app then
/// serves the hello page, and `berth exec` reads what the build saw.
const PROBE_DOCKERFILE: &str = r#"FROM busybox
ARG GW
ARG REDIS
ARG ADMIN
ARG OPEN
RUN for p in $REDIS $ADMIN $OPEN; do (timeout 6 nc -w 3 $GW $p </dev/null; echo rc=$?) >/probe-$p.txt 2>&1; done; \
    cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max >/limit.txt 2>/dev/null; true
COPY www /www
CMD ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_are_limited_and_cannot_reach_redis_or_caddy() {
    let mut c = Cluster::separate_with(&[("BERTH_NODE__BUILD_MEMORY_MB", "200")])
        .await
        .unwrap();
    let redis_port = c
        .redis_port()
        .expect("a separate cluster runs Redis on TCP");
    let admin_port: u16 = c
        .env
        .iter()
        .find(|(k, _)| k == "BERTH_NODE__CADDY_ADMIN")
        .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
        .expect("the Caddy admin address");
    let src = TempDir::with_prefix("contain-build").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();

    // A first app makes the node create its network; its gateway is the host.
    let first = unique("conf");
    c.create_app(json!({"name": first, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (_, d) = c.api.deploy_and_wait(&first, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    let gateway = address(&inspect(&container_of(&c, &first).await), "Gateway");
    let listener = tokio::net::TcpListener::bind((gateway.as_str(), 0))
        .await
        .unwrap_or_else(|e| panic!("cannot listen on the gateway {gateway}: {e}"));
    let open = listener.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });

    repo.write("Dockerfile.probe", PROBE_DOCKERFILE).unwrap();
    repo.commit("a build that probes").unwrap();
    let app = unique("conbuild");
    c.create_app(json!({
        "name": app, "repo": repo.url(), "port": 8080, "dockerfile": "Dockerfile.probe",
        "env": {"build": {
            "GW": gateway, "REDIS": redis_port.to_string(), "ADMIN": admin_port.to_string(),
            "OPEN": open.to_string(),
        }},
    }))
    .await
    .unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    accepting.abort();
    let read = |file: String| {
        let out = exec(&c, &app, &format!("cat {file}"));
        assert!(out.status.success(), "{}", show(&out));
        text(&out.stdout)
    };
    let refused = |s: &str| s.contains("can't connect") || s.contains("timed out");
    let control = read(format!("/probe-{open}.txt"));
    assert!(
        !refused(&control),
        "the build's probe did not reach the test's listener on {gateway}:{open}: {control}"
    );
    let redis = read(format!("/probe-{redis_port}.txt"));
    assert!(
        refused(&redis),
        "the build reached Redis at {gateway}:{redis_port}: {redis}"
    );
    let admin = read(format!("/probe-{admin_port}.txt"));
    assert!(
        refused(&admin),
        "the build reached Caddy's admin API at {gateway}:{admin_port}: {admin}"
    );
    let limit = read("/limit.txt".into());
    assert_eq!(
        limit.split_whitespace().next(),
        Some((200u64 << 20).to_string().as_str()),
        "the build's memory limit: {limit}"
    );
}
