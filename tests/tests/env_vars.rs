//! Variables as a resource (issue 14): build and runtime scopes, secrets sealed at rest, masked
//! in every log line, never in an API answer, and kept (sealed) with each release so a rollback
//! runs with its own values. Through a real `berth up`: Docker builds, Caddy serves, the CLI
//! sets values from stdin and files.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use berth_tests::{eventually, sh, unique, Cluster, GitRepo, TempDir};
use serde_json::{json, Value};

/// The secret values: none may appear in an API answer, a log line or Redis.
const BUILD_SECRET: &str = "bsecret-envtest-never-shown-4c1a";
const RT_SECRET_1: &str = "rsecret-envtest-first-never-shown-77b0";
const RT_SECRET_2: &str = "rsecret-envtest-second-never-shown-19e5";
const CLI_STDIN_SECRET: &str = "clisecret-envtest-from-stdin-0d3f";
const CLI_FILE_SECRET: &str = "clisecret-envtest-from-file-a2b9";

/// Builds with two build args (one echoed by a `RUN` step), starts with a command that prints the
/// runtime variables and serves a page made of them — secret values upper-cased, so the page
/// proves each value arrived without holding it.
const DOCKERFILE: &str = r#"FROM busybox
ARG BUILD_PLAIN
ARG BUILD_SECRET
RUN echo "build secret is $BUILD_SECRET" && mkdir -p /www && echo "$BUILD_PLAIN" > /www/build-plain && echo "$BUILD_SECRET" | tr a-z A-Z > /www/build-secret
CMD ["sh", "-c", "echo runtime secret is $RT_SECRET; echo \"bp=$(cat /www/build-plain) bs=$(cat /www/build-secret) rp=$RT_PLAIN rs=$(echo $RT_SECRET | tr a-z A-Z) end\" > /www/index.html; exec httpd -f -p 8080 -h /www"]
"#;

fn page(rs: &str) -> String {
    format!(
        "bp=plain-build bs={} rp=plain-rt rs={} end",
        BUILD_SECRET.to_uppercase(),
        rs.to_uppercase()
    )
}

/// Every value an answer must never hold.
const NEVER: [&str; 5] = [
    BUILD_SECRET,
    RT_SECRET_1,
    RT_SECRET_2,
    CLI_STDIN_SECRET,
    CLI_FILE_SECRET,
];

fn leaked(text: &str) -> Option<&'static str> {
    NEVER.into_iter().find(|s| text.contains(s))
}

/// `GET path`, checked to be 200 and to hold no secret value.
async fn get_clean(c: &Cluster, path: &str) -> Value {
    let (s, v) = c.api.get(path).await.unwrap();
    assert_eq!(s, 200, "{path}: {v}");
    if let Some(secret) = leaked(&v.to_string()) {
        panic!("{path} answers {secret}: {v}");
    }
    v
}

async fn put_env(c: &Cluster, app: &str, key: &str, body: Value) -> (u16, Value) {
    c.api
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/apps/{app}/env/{key}"),
            Some(body),
        )
        .await
        .unwrap()
}

/// The app's runtime log (JSON lines), once it holds `needle`.
async fn app_log_with(c: &Cluster, app: &str, needle: &str) -> String {
    eventually(
        &format!("{app}'s runtime log to hold {needle:?}"),
        Duration::from_secs(20),
        || async {
            let (s, v) = c
                .api
                .get(&format!("/api/v1/apps/{app}/logs?format=json&tail=1000"))
                .await
                .ok()?;
            let text = v.to_string();
            (s == 200 && text.contains(needle)).then_some(text)
        },
    )
    .await
    .unwrap()
}

/// `berth <args>` with `stdin`; its stdout, or its stderr as the error.
fn berth(c: &Cluster, args: &[&str], stdin: &str) -> Result<String, String> {
    let mut child = c
        .berth()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    match out.status.success() {
        true => Ok(o),
        false => Err(format!("{o}{e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_variables_reach_build_and_container_and_never_leak() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("env-src").unwrap();
    let repo = GitRepo::init(src.path()).unwrap();
    repo.write("Dockerfile", DOCKERFILE).unwrap();
    repo.commit("env app").unwrap();
    let app = unique("envs");
    let host = format!("{app}.localhost");

    // Today's form still works: plain variables given whole at create.
    let created = c
        .create_app(json!({"name": app, "repo": repo.url(), "port": 8080,
            "env": {"runtime": {"RT_PLAIN": "plain-rt"}, "build": {"BUILD_PLAIN": "plain-build"}}}))
        .await
        .unwrap();
    assert_eq!(created["env"]["runtime"]["RT_PLAIN"], "plain-rt");

    // Secrets through the resource; the answer says a redeploy applies them.
    let (s, v) = put_env(
        &c,
        &app,
        "BUILD_SECRET",
        json!({"value": BUILD_SECRET, "scope": "build", "secret": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("a redeploy applies it"),
        "{v}"
    );
    assert!(v.get("deployment").is_none(), "{v}");
    let (s, v) = put_env(
        &c,
        &app,
        "RT_SECRET",
        json!({"value": RT_SECRET_1, "secret": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(leaked(&v.to_string()).is_none(), "{v}");

    // Bad input: a clear 4xx each.
    let (s, v) = put_env(&c, &app, "1BAD", json!({"value": "x"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("must be letters, digits and '_'"),
        "{v}"
    );
    let (s, v) = put_env(&c, &app, "OK", json!({"value": "x", "scope": "sometimes"})).await;
    assert_eq!(s, 400, "{v}");
    let big = "x".repeat(40 * 1024);
    let (s, v) = put_env(&c, &app, "BIG", json!({"value": big})).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("at most 32768"),
        "{v}"
    );
    let (s, v) = c
        .api
        .delete(&format!("/api/v1/apps/{app}/env/NOPE"))
        .await
        .unwrap();
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("has no variable \"NOPE\""),
        "{v}"
    );
    // The old form cannot give a secret's name a plain value.
    let (s, v) = c
        .api
        .patch(
            &format!("/api/v1/apps/{app}"),
            json!({"env": {"runtime": {"RT_PLAIN": "plain-rt", "RT_SECRET": "oops"}}}),
        )
        .await
        .unwrap();
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("RT_SECRET is a secret variable"),
        "{v}"
    );

    // The listing: plain values shown, secrets named with their scope and no value.
    let list = get_clean(&c, &format!("/api/v1/apps/{app}/env")).await;
    assert_eq!(
        list,
        json!([
            {"key": "BUILD_PLAIN", "scope": "build", "secret": false, "value": "plain-build"},
            {"key": "BUILD_SECRET", "scope": "build", "secret": true},
            {"key": "RT_PLAIN", "scope": "runtime", "secret": false, "value": "plain-rt"},
            {"key": "RT_SECRET", "scope": "runtime", "secret": true},
        ])
    );

    // A deploy: the build gets both build variables, the container both runtime ones.
    let (first, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await
        .unwrap();
    let log = c.api.log(&first).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}");
    c.serves(&host, &page(RT_SECRET_1)).await.unwrap();
    // The build's output printed the secret: masked. And the log warns about image history.
    assert!(log.contains("build secret is ********"), "{log}");
    assert!(
        log.contains("the secret build variable BUILD_SECRET is passed as a build arg"),
        "{log}"
    );
    assert!(leaked(&log).is_none(), "{log}");
    // The app printed its secret: masked in its runtime log.
    let applog = app_log_with(&c, &app, "runtime secret is ********").await;
    assert!(leaked(&applog).is_none(), "{applog}");

    // A new value, deployed at once (`?deploy=true`): the answer is the queued deployment.
    let (s, v) = c
        .api
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/apps/{app}/env/RT_SECRET?deploy=true"),
            Some(json!({"value": RT_SECRET_2, "secret": true})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let second = v["deployment"]["id"].as_str().unwrap().to_string();
    assert!(v["message"].as_str().unwrap().contains(&second), "{v}");
    let d = c
        .api
        .wait_terminal(&second, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    c.serves(&host, &page(RT_SECRET_2)).await.unwrap();

    // A rollback to the first release runs with its own secret value. Its containers are
    // removed first, so the rollback creates a new one from the release's (sealed) settings.
    sh(std::process::Command::new("sh").arg("-c").arg(format!(
        "docker ps -aq --filter label=berth.deployment={first} | xargs -r docker rm -f"
    )))
    .unwrap();
    let (s, v) = c
        .api
        .post(
            &format!("/api/v1/apps/{app}/rollback"),
            json!({"to": first}),
        )
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    let back = v["id"].as_str().unwrap().to_string();
    let d = c
        .api
        .wait_terminal(&back, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&back).await.unwrap()
    );
    c.serves(&host, &page(RT_SECRET_1)).await.unwrap();
    // Its output is masked too, though the app's current value is another one: the shipper
    // opens the values sealed in the rollback's record.
    let log = c.api.log(&back).await.unwrap();
    assert!(leaked(&log).is_none(), "{log}");
    let applog = app_log_with(&c, &app, &back).await;
    assert!(leaked(&applog).is_none(), "{applog}");

    // The CLI: a secret from stdin, another from a file, a plain one as an argument.
    let out = berth(
        &c,
        &[
            "env",
            "set",
            &app,
            "FROM_STDIN",
            "--secret",
            "--scope",
            "both",
        ],
        &format!("{CLI_STDIN_SECRET}\n"),
    )
    .unwrap();
    assert!(out.contains("FROM_STDIN set (secret, both)"), "{out}");
    assert!(out.contains("a redeploy applies it"), "{out}");
    let dir = TempDir::with_prefix("env-file").unwrap();
    let file = dir.path().join("value");
    std::fs::write(&file, format!("{CLI_FILE_SECRET}\n")).unwrap();
    let out = berth(
        &c,
        &[
            "env",
            "set",
            &app,
            "FROM_FILE",
            "--secret",
            "--from-file",
            file.to_str().unwrap(),
        ],
        "",
    )
    .unwrap();
    assert!(out.contains("FROM_FILE set (secret, runtime)"), "{out}");
    let out = berth(&c, &["env", "set", &app, "GREETING", "hello"], "").unwrap();
    assert!(out.contains("GREETING set (runtime)"), "{out}");
    let e = berth(&c, &["env", "set", &app, "ARGV", "--secret", "in-argv"], "").unwrap_err();
    assert!(e.contains("never taken from the command line"), "{e}");
    let out = berth(&c, &["env", "list", &app], "").unwrap();
    assert!(leaked(&out).is_none(), "{out}");
    for line in [
        "FROM_FILE    runtime yes    (secret)",
        "FROM_STDIN   both    yes    (secret)",
        "GREETING     runtime no     hello",
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().eq(line.split_whitespace())),
            "{line:?} not in\n{out}"
        );
    }
    let out = berth(&c, &["env", "unset", &app, "GREETING"], "").unwrap();
    assert!(out.contains("GREETING removed"), "{out}");
    let list = get_clean(&c, &format!("/api/v1/apps/{app}/env")).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|v| v["key"] != "GREETING"),
        "{list}"
    );
    // The CLI's values were stored as given (one trailing newline dropped): a deploy serves
    // them (upper-cased by the shell the app runs).
    let out = berth(
        &c,
        &[
            "--json",
            "env",
            "set",
            &app,
            "RT_SECRET",
            "--secret",
            "--deploy",
        ],
        CLI_STDIN_SECRET,
    )
    .unwrap();
    let change: Value = serde_json::from_str(&out).unwrap();
    assert!(
        change["message"]
            .as_str()
            .unwrap()
            .contains("is queued to apply it"),
        "{out}"
    );
    let id = change["deployment"]["id"].as_str().unwrap();
    let d = c
        .api
        .wait_terminal(id, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(id).await.unwrap()
    );
    c.serves(&host, &page(CLI_STDIN_SECRET)).await.unwrap();

    // No answer holds a secret value: the app, the list, its deployments, its releases, logs.
    let app_view = get_clean(&c, &format!("/api/v1/apps/{app}")).await;
    assert_eq!(
        app_view["env"]["secret"]["RT_SECRET"], "runtime",
        "{app_view}"
    );
    get_clean(&c, "/api/v1/apps").await;
    let ds = get_clean(&c, &format!("/api/v1/apps/{app}/deployments")).await;
    for d in ds.as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        get_clean(&c, &format!("/api/v1/deployments/{id}")).await;
        get_clean(&c, &format!("/api/v1/deployments/{id}/logs?format=json")).await;
    }
    assert!(ds.as_array().unwrap().len() >= 4, "{ds}");
    get_clean(&c, &format!("/api/v1/apps/{app}/releases")).await;
    get_clean(
        &c,
        &format!("/api/v1/apps/{app}/logs?format=json&tail=1000"),
    )
    .await;

    // No Redis value holds one: every key, whatever its type, read whole.
    let keys = c.redis_cli(&["--scan"]).unwrap();
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(
        keys.contains(&berth_protocol::keys::app_env_secrets(&app).as_str()),
        "{keys:?}"
    );
    for k in keys {
        let value = c
            .redis_cli(&["--raw", "EVAL", berth_tests::REDIS_DUMP_KEY, "1", k])
            .unwrap();
        if let Some(secret) = leaked(&value) {
            panic!("Redis key {k} holds {secret}");
        }
    }

    // Deleting the app deletes its sealed values.
    let (s, v) = c.api.delete(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!(s, 204, "{v}");
    let left = c
        .redis_cli(&["EXISTS", &berth_protocol::keys::app_env_secrets(&app)])
        .unwrap();
    assert_eq!(left, "0");
}
