//! Faults found in the first wave, each through the real cluster (Docker, Redis, Caddy, git).
//! Every test here failed on the commit before its fix.

use std::process::Command;
use std::time::Duration;

use berth_protocol::{keys, App};
use berth_tests::github::{deliver_push, push_body, queued_one, webhook_secret};
use berth_tests::{
    eventually, hello_page, repo_root, sh, unique, version_marker, Cluster, GitRepo, TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);
const SECRET: &str = "It's a Secret to Everybody";

fn hello_repo(dir: &TempDir) -> GitRepo {
    GitRepo::from_dir(dir.path(), &repo_root().join("examples/hello")).unwrap()
}

/// Polls a deployment until `pred` holds for it.
async fn wait_for(c: &Cluster, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(what, DEPLOY, || async {
        let (_, d) = c.api.get(&format!("/api/v1/deployments/{id}")).await.ok()?;
        pred(&d).then_some(d)
    })
    .await
    .unwrap()
}

/// The lines of a deployment's log stream as Redis holds them (`berth:logs:<id>`).
fn raw_log(c: &Cluster, id: &str) -> String {
    c.redis_cli(&["XRANGE", &keys::deployment_log(id), "-", "+"])
        .unwrap()
}

/// Sum of the calls of every command Redis has served so far.
fn redis_calls(c: &Cluster) -> u64 {
    c.redis_cli(&["INFO", "commandstats"])
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_deployment_record_holds_up_no_other_deployment() {
    let mut c = Cluster::up().await.unwrap();
    let (src_a, src_b) = (
        TempDir::with_prefix("unr-a").unwrap(),
        TempDir::with_prefix("unr-b").unwrap(),
    );
    let repo_a = hello_repo(&src_a);
    repo_a
        .write(
            "Dockerfile",
            "FROM busybox\nRUN sleep 4\nCOPY www /www\nCMD [\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]\n",
        )
        .unwrap();
    repo_a.commit("slow build").unwrap();
    let repo_b = hello_repo(&src_b);
    let (a, b) = (unique("unra"), unique("unrb"));
    for (app, repo) in [(&a, &repo_a), (&b, &repo_b)] {
        c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
            .await
            .unwrap();
    }
    let id_a = c.api.deploy(&a, None).await.unwrap();
    // Its last event before the build ends is the fetched commit: junk written after it is
    // not overwritten by a write that read the record before.
    wait_for(&c, &id_a, "a building its commit", |d| {
        d["status"] == "building" && d["commit"].is_string()
    })
    .await;
    // Its record is overwritten with junk while it builds: every event it sends from now on
    // cannot be applied. The first of them (`deploying`, right after `built`) is on the stream
    // before anything of b's.
    c.redis_cli(&["SET", &keys::deployment(&id_a), "junk"])
        .unwrap();
    // The API names the broken record instead of a generic error.
    let (s, v) = c
        .api
        .get(&format!("/api/v1/deployments/{id_a}"))
        .await
        .unwrap();
    assert_eq!(s, 500, "{v}");
    assert!(v.to_string().contains("cannot be read"), "{v}");
    eventually("a built", DEPLOY, || async {
        raw_log(&c, &id_a).contains("built berth/").then_some(())
    })
    .await
    .unwrap();

    let (_, d) = c.api.deploy_and_wait(&b, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    c.serves(&format!("{b}.localhost"), &version_marker("1"))
        .await
        .unwrap();

    // The unapplied events of a are dead letters, counted and reported in a's log.
    let dead = eventually("a dead letter", DEPLOY, || async {
        let n: u64 = c
            .redis_cli(&["XLEN", &keys::dead_letters(keys::EVENTS)])
            .ok()?
            .parse()
            .ok()?;
        (n >= 1).then_some(n)
    })
    .await
    .unwrap();
    let entries = c
        .redis_cli(&["XRANGE", &keys::dead_letters(keys::EVENTS), "-", "+"])
        .unwrap();
    assert!(entries.contains(&id_a), "{entries}");
    assert!(raw_log(&c, &id_a).contains("could not be applied"));
    let metrics = berth_tests::http_client()
        .build()
        .expect("an HTTP client")
        .get(format!("{}/metrics", c.api.base))
        .bearer_auth(&c.api.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("berth_dead_letters_total{{stream=\"berth:events\"}} {dead}");
    assert!(metrics.contains(&line), "{line} in\n{metrics}");

    // It still ends: once its record has been unreadable for `node_wait` (30 s), a `failed`
    // record that says why replaces it, and the junk is kept beside it.
    let d = eventually(
        "a replaced by a failed record",
        Duration::from_secs(90),
        || async {
            let (s, v) = c
                .api
                .get(&format!("/api/v1/deployments/{id_a}"))
                .await
                .ok()?;
            (s == 200).then_some(v)
        },
    )
    .await
    .unwrap();
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["app"], a.as_str(), "{d}");
    assert!(
        d["error"].as_str().unwrap().contains("could not be read"),
        "{d}"
    );
    let kept = c.redis_cli(&["GET", &keys::deployment_unreadable(&id_a)]);
    assert_eq!(kept.unwrap().trim(), "junk");
    let active = c
        .redis_cli(&["SMEMBERS", keys::ACTIVE_DEPLOYMENTS])
        .unwrap();
    assert!(!active.contains(&id_a), "{active}");
    let (_, v) = c
        .api
        .get(&format!("/api/v1/apps/{a}/deployments"))
        .await
        .unwrap();
    assert!(v.to_string().contains(&id_a), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_that_failed_is_deployed_when_redelivered() {
    let mut c = Cluster::up_with(&webhook_secret(SECRET)).await.unwrap();
    let src = TempDir::with_prefix("redeliver").unwrap();
    let repo = hello_repo(&src);
    let app = unique("redeliver");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let before = repo.git(&["rev-parse", "HEAD"]).unwrap();
    repo.write("www/index.html", &hello_page("pushed")).unwrap();
    let sha = repo.commit("pushed").unwrap();
    let body = push_body(&repo, "refs/heads/main", &before, &sha, "pushed");
    let delivery = unique("delivery");
    let push = || async {
        deliver_push(&c.api.base, SECRET, &delivery, &body)
            .await
            .unwrap()
    };

    // Redis refuses the app list (keys of the wrong type) after the delivery was claimed: the
    // full read's set and the change log a cached list is patched from; the counter moves, so
    // the coordinator's copy is stale and one of them is read.
    let broken = [keys::APPS, keys::APPS_CHANGES];
    for key in broken {
        c.redis_cli(&["RENAME", key, &format!("{key}:aside")])
            .unwrap();
        c.redis_cli(&["SET", key, "not a set"]).unwrap();
    }
    c.redis_cli(&["INCR", keys::APPS_VERSION]).unwrap();
    let (s, v) = push().await;
    assert_eq!(s, 500, "{v}");
    for key in broken {
        c.redis_cli(&["RENAME", &format!("{key}:aside"), key])
            .unwrap();
    }

    // GitHub's redelivery of the same delivery does the work.
    let (s, v) = push().await;
    assert_eq!(s, 202, "{v}");
    let d = c.api.wait_terminal(&queued_one(&v), DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    assert_eq!(d["commit"], sha.as_str(), "{d}");
    // And a third delivery of it is a no-op again.
    let (s, v) = push().await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["deployments"], json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_app_before_its_switch_routes_nothing_and_leaves_nothing() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("del-src").unwrap();
    let repo = hello_repo(&src);
    // Healthy over HTTP at once, but Docker calls it healthy only after 4 s: the deployment
    // waits between its probe and its switch.
    repo.write(
        "Dockerfile",
        "FROM busybox\nCOPY www /www\nHEALTHCHECK --interval=1s --timeout=1s --retries=30 CMD test -f /tmp/ready\nCMD [\"sh\",\"-c\",\"(sleep 4; touch /tmp/ready) & exec httpd -f -p 8080 -h /www\"]\n",
    )
    .unwrap();
    repo.commit("slow to be healthy").unwrap();
    let app = unique("del");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let id = c.api.deploy(&app, None).await.unwrap();
    eventually("waiting for the HEALTHCHECK", DEPLOY, || async {
        let log = c.api.log(&id).await.ok()?;
        log.contains("waiting for the image's Docker HEALTHCHECK")
            .then_some(())
    })
    .await
    .unwrap();
    let (s, v) = c.api.delete(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert!(s == 204 || s == 200, "{s} {v}");

    // The node ends the deployment cancelled without routing it, and removes the app's
    // containers and images.
    let log = eventually("the node's last word", DEPLOY, || async {
        let log = raw_log(&c, &id);
        (log.contains("deployment cancelled") || log.contains("deployment succeeded"))
            .then_some(log)
    })
    .await
    .unwrap();
    assert!(
        !log.contains("routed"),
        "a deleted app took traffic:\n{log}"
    );
    assert!(log.contains("deployment cancelled"), "{log}");
    eventually("no container, no image", DEPLOY, || async {
        let containers = sh(Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.app={app}"),
        ]))
        .ok()?;
        let images =
            sh(Command::new("docker").args(["images", "-q", &format!("berth/{app}")])).ok()?;
        (containers.is_empty() && images.is_empty()).then_some(())
    })
    .await
    .unwrap();
    let (status, _) = berth_tests::ingress_get(c.ingress, &format!("{app}.localhost"))
        .await
        .unwrap();
    assert_ne!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_the_container_is_created_leaks_no_container() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("cxc-src").unwrap();
    let repo = hello_repo(&src);
    let app = unique("cxc");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 0}))
        .await
        .unwrap();
    let mut cancelled_while_deploying = 0;
    // The node creates the container right after it reports `deploying`, and notices a cancel
    // within 200 ms: cancelling as soon as `deploying` shows lands in the create often.
    for delay_ms in [0u64, 0, 0, 0, 20, 40, 60, 80] {
        let id = c.api.deploy(&app, None).await.unwrap();
        loop {
            let (_, d) = c
                .api
                .get(&format!("/api/v1/deployments/{id}"))
                .await
                .unwrap();
            if d["status"] == "deploying" || d["status"] == "failed" || d["status"] == "succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let (s, _) = c.api.cancel(&id).await.unwrap();
        let d = c.api.wait_terminal(&id, DEPLOY).await.unwrap();
        if s == 200 && d["status"] == "cancelled" {
            cancelled_while_deploying += 1;
            // Whatever step it was in, nothing of it is left on the engine.
            let left = eventually(
                "the cancelled deployment's container gone",
                Duration::from_secs(20),
                || async {
                    let out = sh(Command::new("docker").args([
                        "ps",
                        "-aq",
                        "--filter",
                        &format!("label=berth.deployment={id}"),
                    ]))
                    .ok()?;
                    out.is_empty().then_some(())
                },
            )
            .await;
            assert!(
                left.is_ok(),
                "deployment {id} cancelled {delay_ms} ms into deploying left a container:\n{}",
                raw_log(&c, &id)
            );
        }
    }
    assert!(
        cancelled_while_deploying > 0,
        "no cancel landed before a switch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_and_forth_keeps_every_release() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("toggle-src").unwrap();
    let repo = hello_repo(&src);
    let app = unique("toggle");
    let host = format!("{app}.localhost");
    c.create_app(
        json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 0, "keep_releases": 3}),
    )
    .await
    .unwrap();
    let mut firsts = Vec::new();
    for v in ["t1", "t2"] {
        repo.write("www/index.html", &hello_page(v)).unwrap();
        repo.commit(v).unwrap();
        let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
        assert_eq!(d["status"], "succeeded", "{d}");
        firsts.push(id);
    }
    // Four toggles: t1, t2, t1, t2. Each re-activates a release; none takes a new slot.
    let mut toggles = Vec::new();
    for _ in 0..4 {
        let (s, d) = c
            .api
            .post(&format!("/api/v1/apps/{app}/rollback"), json!({}))
            .await
            .unwrap();
        assert_eq!(s, 202, "{d}");
        let id = d["id"].as_str().unwrap().to_string();
        let d = c.api.wait_terminal(&id, DEPLOY).await.unwrap();
        assert_eq!(d["status"], "succeeded", "{d}\n{}", raw_log(&c, &id));
        toggles.push(id);
    }
    c.serves(&host, &version_marker("t2")).await.unwrap();
    let (_, rels) = c
        .api
        .get(&format!("/api/v1/apps/{app}/releases"))
        .await
        .unwrap();
    let rels = rels.as_array().unwrap().clone();
    assert_eq!(rels.len(), 2, "each image once: {rels:?}");
    assert_eq!(rels[0]["deployment"], firsts[1].as_str());
    assert_eq!(rels[0]["current"], true);
    assert_eq!(
        rels[0]["deployments"],
        json!([toggles[3], toggles[1], firsts[1]])
    );
    assert_eq!(
        rels[1]["deployments"],
        json!([toggles[2], toggles[0], firsts[0]])
    );
    // The very first deployment can still be rolled back to, and serves.
    let (s, d) = c
        .api
        .post(
            &format!("/api/v1/apps/{app}/rollback"),
            json!({"to": firsts[0]}),
        )
        .await
        .unwrap();
    assert_eq!(s, 202, "{d}");
    let d = c
        .api
        .wait_terminal(d["id"].as_str().unwrap(), DEPLOY)
        .await
        .unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    c.serves(&host, &version_marker("t1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_apps_and_deployments_is_a_fixed_number_of_redis_commands() {
    let mut c = Cluster::up().await.unwrap();
    let app = unique("many");
    // Never deployed, but its repository must be reachable to be created.
    let src = TempDir::with_prefix("many-src").unwrap();
    let repo = hello_repo(&src);
    let created = c
        .create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let template: App = serde_json::from_value(created).unwrap();
    // 150 more apps and 150 deployments of `app`, written as the coordinator writes them.
    c.seed_apps(&template, &app, 150).unwrap();
    c.seed_deployments(&app, 150).unwrap();

    for (path, expect) in [
        ("/api/v1/apps".to_string(), 151usize),
        (format!("/api/v1/apps/{app}/deployments"), 100),
    ] {
        // The fewest commands seen over a few tries (heartbeats and deadline ticks run beside).
        let mut fewest = u64::MAX;
        for _ in 0..3 {
            let before = redis_calls(&c);
            let (s, v) = c.api.get(&path).await.unwrap();
            let after = redis_calls(&c);
            assert_eq!(s, 200, "{v}");
            assert_eq!(v.as_array().unwrap().len(), expect, "{path}");
            // INFO itself is one command.
            fewest = fewest.min(after - before - 1);
        }
        assert!(
            fewest <= 10,
            "{path}: {fewest} Redis commands for one listing of {expect} records"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_app_list_follows_every_change() {
    let mut c = Cluster::up().await.unwrap();
    let app = unique("cache");
    // Never deployed, but their repository must be reachable to be created.
    let src = TempDir::with_prefix("cache-src").unwrap();
    let repo = hello_repo(&src);
    let created = c
        .create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let template: App = serde_json::from_value(created).unwrap();
    let seeded = c.seed_apps(&template, &app, 20).unwrap();
    assert_eq!(listed_apps(&c).await.0.len(), 21);

    // Through the API: one app created, one changed, one deleted; then listed from the cache
    // patched with the changed records only.
    let added = format!("{app}-new");
    c.create_app(json!({"name": added, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (s, v) = c
        .api
        .patch(&format!("/api/v1/apps/{app}"), json!({"port": 9090}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .api
        .delete(&format!("/api/v1/apps/{}", seeded[3]))
        .await
        .unwrap();
    assert!(s < 300, "{s} {v}");
    let (got, v) = listed_apps(&c).await;
    assert_eq!(got.len(), 21, "{got:?}");
    assert!(got.contains(&added) && !got.contains(&seeded[3]), "{got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "not sorted: {got:?}");
    let changed = v.as_array().unwrap().iter().find(|a| a["name"] == app);
    assert_eq!(changed.unwrap()["port"], 9090, "{v}");

    // A write behind the change log's back with its floor raised: the list is read in full.
    c.redis_cli(&["DEL", &keys::app(&seeded[5])]).unwrap();
    c.redis_cli(&["INCR", keys::APPS_VERSION]).unwrap();
    c.redis_cli(&["SET", keys::APPS_CHANGES_FLOOR, "1000000"])
        .unwrap();
    let (got, _) = listed_apps(&c).await;
    assert_eq!(got.len(), 20, "{got:?}");
    assert!(!got.contains(&seeded[5]), "{got:?}");
}

/// `GET /apps`: the names in order, and the whole answer.
async fn listed_apps(c: &Cluster) -> (Vec<String>, Value) {
    let (s, v) = c.api.get("/api/v1/apps").await.unwrap();
    assert_eq!(s, 200, "{v}");
    let names = v.as_array().unwrap().iter();
    let names = names.map(|a| a["name"].as_str().unwrap().to_string());
    (names.collect(), v)
}
