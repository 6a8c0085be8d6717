//! The build context a node sends to Docker (issue 13, item 8): what `.dockerignore` leaves out
//! is not in the image, and a context past `node.build_context_max_mb` fails the deployment with
//! a message naming the cap. Real git, Docker (`FROM busybox`) and Caddy.

use std::time::Duration;

use berth_tests::{repo_root, unique, version_marker, Cluster, GitRepo, TempDir};
use serde_json::json;

const DEPLOY: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerignored_files_stay_out_of_the_image_and_a_huge_context_fails_the_deployment() {
    let mut c = Cluster::up_with(&[("BERTH_NODE__BUILD_CONTEXT_MAX_MB", "2")])
        .await
        .unwrap();
    let src = TempDir::with_prefix("ctx-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    // examples/hello serves www/ as it is: a file left out of the context is a 404.
    repo.write("www/secret.txt", "do not ship me\n").unwrap();
    repo.write("www/kept.txt", "ship me\n").unwrap();
    repo.write("www/drafts/a.txt", "draft\n").unwrap();
    repo.write("www/drafts/keep.txt", "kept draft\n").unwrap();
    repo.write(
        ".dockerignore",
        "# what the image must not hold\n/www/secret.txt\nwww/drafts\n!www/drafts/keep.txt\n",
    )
    .unwrap();
    repo.commit("Leave secrets out of the image").unwrap();
    let app = unique("ctx");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&id).await.unwrap()
    );
    let host = format!("{app}.localhost");
    c.serves(&host, &version_marker("1")).await.unwrap();
    let http = berth_tests::http_client().build().expect("an HTTP client");
    let get = |path: &'static str| {
        let req = http
            .get(format!("http://127.0.0.1:{}{path}", c.ingress))
            .header("host", &host);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/kept.txt").await, 200, "a file not ignored is served");
    assert_eq!(get("/drafts/keep.txt").await, 200, "an exception is served");
    assert_eq!(
        get("/secret.txt").await,
        404,
        "an ignored file is in the image"
    );
    assert_eq!(
        get("/drafts/a.txt").await,
        404,
        "an ignored directory is in the image"
    );

    // 3 MiB of data that does not compress away, past the 2 MiB cap.
    let noise: String = (0..3 * 1024 * 1024 / 32)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    repo.write("www/big.bin", &noise).unwrap();
    repo.commit("A large file").unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("larger than 2 MiB") && error.contains("node.build_context_max_mb"),
        "{error}\n{}",
        c.api.log(&id).await.unwrap()
    );
    // The live release is untouched.
    c.serves(&host, &version_marker("1")).await.unwrap();
}
