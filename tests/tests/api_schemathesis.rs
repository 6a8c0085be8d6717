//! Outside contract testing (issue 15): schemathesis, from PyPI (installed by
//! `scripts/schemathesis.sh`), generates requests from the OpenAPI document a live `berth up`
//! serves at `/api/v1/openapi.json`, sends them with an admin token, and checks every answer:
//! no server error, a documented status code, content type and headers, and a body that the
//! document's schema accepts.
//!
//! The cluster is seeded first (an app deployed from a real git repository, so its deployment,
//! release, replica, log and metrics endpoints answer with real records; a second token; a
//! cancelled deployment), and schemathesis is told those names and ids, so its requests reach
//! real resources as well as missing ones.
//!
//! CI runs a short run (`BERTH_SCHEMATHESIS_EXAMPLES`, default 2 cases per operation and
//! phase, fixed seed); the long run of BENCHMARKS.md is the same test with more examples.
//! Generated repositories can never leave the machine: the cluster's git goes through a
//! proxy on a closed loopback port and its SSH is `false`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use berth_tests::{repo_root, unique, Cluster, GitRepo, TempDir};
use serde_json::{json, Value};

/// The `st` command: `BERTH_SCHEMATHESIS`, or the one `scripts/schemathesis.sh` installs (run
/// here when missing; it is idempotent).
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/schemathesis.sh"))
        .output()
        .expect("run scripts/schemathesis.sh");
    assert!(
        out.status.success(),
        "scripts/schemathesis.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    PathBuf::from(path)
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The processes' environment that keeps every generated repository on this machine.
const NO_NETWORK: &[(&str, &str)] = &[
    ("HTTPS_PROXY", "http://127.0.0.1:9"),
    ("https_proxy", "http://127.0.0.1:9"),
    ("HTTP_PROXY", "http://127.0.0.1:9"),
    ("http_proxy", "http://127.0.0.1:9"),
    ("ALL_PROXY", "http://127.0.0.1:9"),
    ("all_proxy", "http://127.0.0.1:9"),
    ("NO_PROXY", "127.0.0.1,localhost,::1"),
    ("no_proxy", "127.0.0.1,localhost,::1"),
    ("GIT_SSH_COMMAND", "false"),
    ("BERTH_GITHUB__WEBHOOK_SECRET", "contract-webhook-secret"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_break() {
    let st = schemathesis();
    let examples = env_u64("BERTH_SCHEMATHESIS_EXAMPLES", 2);
    let seed = env_u64("BERTH_SCHEMATHESIS_SEED", 1);
    let mut c = Cluster::up_with(NO_NETWORK).await.unwrap();

    // Seed real records.
    let src = TempDir::with_prefix("contract-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("contract");
    c.apps.push(app.clone());
    c.api
        .create_app(
            json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1,
                           "domains": [format!("{app}.localhost")]}),
        )
        .await
        .unwrap();
    let doomed = unique("contract-doomed");
    c.api
        .create_app(json!({"name": doomed, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (deployment, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    let (s, v) = c
        .api
        .post(
            "/api/v1/tokens",
            json!({"name": "contract-reader", "scope": "read"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    let token_id = v["id"].as_str().unwrap().to_string();
    let (s, v) = c
        .api
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/apps/{app}/env/GREETING"),
            Some(json!({"value": "hello"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");

    // What schemathesis is told to use for path parameters, half of the time.
    let dir = c.dir.path().join("schemathesis");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        r#"
[dictionaries.names]
values = ["{app}", "{node}"]
[dictionaries.ids]
values = ["{deployment}", "{token_id}"]
[dictionaries.keys]
values = ["GREETING"]

[parameters]
"path.name" = {{ dictionary = "names", probability = 0.5 }}
"path.app" = {{ dictionary = "names", probability = 0.5 }}
"path.node" = {{ dictionary = "names", probability = 0.5 }}
"path.id" = {{ dictionary = "ids", probability = 0.5 }}
"path.key" = {{ dictionary = "keys", probability = 0.5 }}

# Deleting the seeded app would leave every later request about it a 404: a second app is
# there to be deleted.
[[operations]]
include-name = "DELETE /api/v1/apps/{{name}}"
parameters = {{ "path.name" = "{doomed}" }}
"#,
        node = c.node,
    );
    let config_file = dir.join("schemathesis.toml");
    std::fs::write(&config_file, config).unwrap();

    let url = format!("{}/api/v1/openapi.json", c.api.base);
    let out = Command::new(&st)
        .arg("--config-file")
        .arg(&config_file)
        .args(["run", &url, "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {}", c.api.token)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--workers", "1", "--request-timeout", "20"])
        .args(["--generation-database", "none"])
        .arg("--report")
        .arg("json")
        .arg("--report-json-path")
        .arg(dir.join("report.json"))
        .current_dir(&dir)
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.join("report.json"))
            .unwrap_or_else(|e| panic!("no schemathesis report ({e}):\n{text}")),
    )
    .unwrap();
    let generated = report["test_cases"]["generated"].as_u64().unwrap_or(0);
    let operations = report["operations"]["tested"].as_u64().unwrap_or(0);
    // Its summary (operations, phases, warnings, test cases), whatever the outcome.
    if let Some(at) = text.find("=== SUMMARY ===") {
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        println!("{}", &text[start..]);
    }
    println!(
        "schemathesis {}: {generated} generated requests over {operations} operations, seed \
         {seed}, {examples} examples; failures: {}; errors: {}; {:.1} s",
        report["schemathesis_version"],
        report["failures"],
        report["errors"],
        report["running_time"].as_f64().unwrap_or(0.0),
    );
    assert!(
        out.status.success()
            && report["failures"].as_array().is_some_and(Vec::is_empty)
            && report["errors"].as_array().is_some_and(Vec::is_empty),
        "schemathesis found problems:\n{text}"
    );
    assert!(
        operations >= 30 && generated >= operations,
        "schemathesis tested too little ({operations} operations, {generated} requests):\n{text}"
    );

    // Still answering, every process still running.
    let (s, _) = c.api.get("/api/v1/apps").await.unwrap();
    assert_eq!(s, 200);
    for p in c.procs.iter_mut() {
        assert!(
            !p.exited(),
            "{} exited during the run:\n{}",
            p.name,
            p.log_text()
        );
    }
}
