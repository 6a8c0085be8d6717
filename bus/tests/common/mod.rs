//! What the bus's tests against a real Redis share.

use berth_bus::Redis;
use berth_tests::{free_port, start_redis, Proc, TempDir};

/// A Redis of its own (no persistence) in a new temporary directory, and a connection to it.
/// Keep the directory and the process for as long as the test uses it.
pub async fn redis(prefix: &str) -> (TempDir, Proc, Redis) {
    let dir = TempDir::with_prefix(prefix).unwrap();
    let port = free_port();
    let server = start_redis(dir.path(), port, &[]).await.unwrap();
    let redis = Redis::connect(&format!("redis://127.0.0.1:{port}/"), "test")
        .await
        .unwrap();
    (dir, server, redis)
}
