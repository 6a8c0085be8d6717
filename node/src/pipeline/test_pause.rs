//! A test-only pause at a named point of the deploy steps, so the fault-injection suite
//! (`berth_tests::chaos`) can land a fault exactly there: with the `test_hooks` setting on
//! (`BERTH_TEST_HOOKS=true`), a value `<ms>` at `berth:test:pause:node:<node>:<point>` (taken once,
//! `GETDEL`) makes the next deployment that reaches `point` wait that long. Points: `switch`
//! (after the switch is claimed, before the route is written). Without the setting it reads
//! nothing.

use std::time::Duration;

use super::Services;

/// Waits as long as the suite asked for at `point`, if it did.
pub(super) async fn pause(svc: &Services, point: &str) {
    if !svc.test_hooks {
        return;
    }
    let key = format!("berth:test:pause:node:{}:{point}", svc.node);
    let mut c = svc.redis.clone();
    let ms: Option<u64> = redis::cmd("GETDEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .ok()
        .flatten();
    if let Some(ms) = ms {
        tracing::warn!(point, ms, "test hook: pausing");
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
}
