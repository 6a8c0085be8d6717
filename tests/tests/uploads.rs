//! Deploying a working directory (issue 14): `berth deploy <app> --dir DIR` packs a directory
//! that is not a git repository (leaving out what `.gitignore` leaves out), uploads it, and the
//! node builds and serves it — for an app with no repository at all. Also `--no-cache`, the
//! upload size limit, and an archive the API refuses. Real Docker, Redis, Caddy.

use std::process::Output;

use berth_tests::{hello_page, ingress_get_path, unique, Cluster, TempDir};
use serde_json::{json, Value};

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let f = dir.join(path);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(f, text).unwrap();
}

/// A directory (no `.git`) with the example app's Dockerfile, a page, a file `.gitignore`
/// leaves out, and one `.dockerignore` leaves out.
fn site(version: &str) -> TempDir {
    let d = TempDir::with_prefix("upload-site").unwrap();
    write(
        d.path(),
        "Dockerfile",
        "FROM busybox\nCOPY www /www\nEXPOSE 8080\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    );
    write(d.path(), "www/index.html", &hello_page(version));
    write(d.path(), "www/private.txt", "not for the image\n");
    write(d.path(), ".gitignore", "private.txt\n");
    write(d.path(), "www/draft.html", "a draft\n");
    write(d.path(), ".dockerignore", "www/draft.html\n");
    d
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn deployments(c: &Cluster, app: &str) -> Vec<Value> {
    let (s, v) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_with_no_git_deploys_to_an_app_with_no_repository() {
    let mut c = Cluster::up_with(&[("BERTH_API__UPLOAD_MAX_MB", "1")])
        .await
        .unwrap();
    let app = unique("upload");
    // No repository: the app deploys uploads only.
    let created = c
        .create_app(json!({"name": app, "port": 8080}))
        .await
        .unwrap();
    assert_eq!(created["repo"], "", "{created}");
    let (s, v) = c
        .api
        .post(&format!("/api/v1/apps/{app}/deployments"), json!({}))
        .await
        .unwrap();
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("has no repository"),
        "{v}"
    );

    let dir = site("u1");
    let out = c
        .berth()
        .args(["deploy", &app, "--dir"])
        .arg(dir.path())
        .arg("--wait")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let host = format!("{app}.localhost");
    c.serves(&host, "<span id=\"version\">u1</span>")
        .await
        .unwrap();
    // What .gitignore leaves out never left this machine; what .dockerignore leaves out is
    // not in the image either (a file of the image is served: the check can tell).
    let (status, _) = ingress_get_path(c.ingress, &host, "/index.html")
        .await
        .unwrap();
    assert_eq!(status, 200);
    for gone in ["/private.txt", "/draft.html"] {
        let (status, _) = ingress_get_path(c.ingress, &host, gone).await.unwrap();
        assert_eq!(status, 404, "{gone}");
    }
    let ds = deployments(&c, &app).await;
    let first = &ds[0];
    assert_eq!(first["status"], "succeeded", "{first}");
    let sha = first["upload"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64, "{first}");
    assert!(first["upload"]["size"].as_u64().unwrap() > 0, "{first}");
    assert!(first["commit"].is_null(), "{first}");
    let id1 = first["id"].as_str().unwrap().to_string();
    let log1 = c.api.log(&id1).await.unwrap();
    assert!(log1.contains(&format!("sha256:{sha}")), "{log1}");

    // The same directory again: the same archive (same name), and the layer cache answers.
    let out = c
        .berth()
        .args(["deploy", &app, "--wait", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ds = deployments(&c, &app).await;
    assert_eq!(ds[0]["upload"]["sha256"], sha.as_str(), "{}", ds[0]);
    let log2 = c.api.log(ds[0]["id"].as_str().unwrap()).await.unwrap();
    assert!(log2.contains("Using cache"), "{log2}");

    // --no-cache: every step built again.
    let out = c
        .berth()
        .args(["deploy", &app, "--wait", "--no-cache", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ds = deployments(&c, &app).await;
    assert_eq!(ds[0]["no_cache"], true, "{}", ds[0]);
    let log3 = c.api.log(ds[0]["id"].as_str().unwrap()).await.unwrap();
    assert!(log3.contains("with no cached layer"), "{log3}");
    assert!(!log3.contains("Using cache"), "{log3}");
    let shown = c
        .berth()
        .args(["deployment", ds[0]["id"].as_str().unwrap()])
        .output()
        .unwrap();
    let shown = text(&shown);
    assert!(
        shown.contains(&format!("uploaded directory sha256:{sha}")),
        "{shown}"
    );

    // Past api.upload_max_mb (1 MiB here): a clear refusal, and no deployment.
    let before = deployments(&c, &app).await.len();
    let big: String = (0..1_200_000u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 28) as u8))
        .collect();
    write(dir.path(), "www/big.txt", &big);
    let out = c
        .berth()
        .args(["deploy", &app, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("more than the API accepts (api.upload_max_mb)"),
        "{}",
        text(&out)
    );
    assert_eq!(deployments(&c, &app).await.len(), before);

    // Something that is not a tar archive: 400 with a sentence, nothing queued.
    let r = c
        .api
        .http
        .post(format!("{}/api/v1/apps/{app}/uploads", c.api.base))
        .bearer_auth(&c.api.token)
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("tar archive"),
        "{body}"
    );
    assert_eq!(deployments(&c, &app).await.len(), before);

    // A variable with deploy=true has nothing to build again from: refused, nothing changed.
    let (s, v) = c
        .api
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/apps/{app}/env/GREETING?deploy=true"),
            Some(json!({"value": "hi"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--dir DIR"), "{v}");
    let (_, env) = c.api.get(&format!("/api/v1/apps/{app}/env")).await.unwrap();
    assert_eq!(env, json!([]), "{env}");
    assert_eq!(deployments(&c, &app).await.len(), before);

    // Deleting the app deletes its uploads.
    let pattern = format!("berth:upload:{app}:*");
    let kept = c.redis_cli(&["--scan", "--pattern", &pattern]).unwrap();
    assert!(kept.contains(&sha), "{kept}");
    let (s, v) = c.api.delete(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert!(s == 204 || s == 200, "{s} {v}");
    let kept = c.redis_cli(&["--scan", "--pattern", &pattern]).unwrap();
    assert_eq!(kept, "", "uploads left after the app was deleted");
}
