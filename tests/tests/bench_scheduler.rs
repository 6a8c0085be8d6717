//! `berth bench scheduler --quick` (20 simulated nodes, 200 jobs against a real Redis and a child
//! coordinator) runs to the end: every job reaches a node and every deployment ends terminal.
//! No timing is asserted here; the figures are BENCHMARKS.md's, from a release build.

use std::process::Command;

use berth_tests::berth_bin;
use serde_json::Value;

#[test]
fn the_quick_scheduler_bench_dispatches_every_job_and_ends_every_deployment() {
    let out = Command::new(berth_bin())
        .args(["bench", "scheduler", "--quick", "--json"])
        .output()
        .expect("running berth bench scheduler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let load = report["load"].as_array().expect("load results");
    assert_eq!(load.len(), 1, "{report}");
    let l = &load[0];
    assert_eq!(l["nodes"], 20, "{report}");
    assert_eq!(l["jobs"], 200, "{report}");
    assert_eq!(l["api_errors"], 0, "{report}");
    assert_eq!(l["dispatched"], 200, "every job read by a node: {report}");
    assert_eq!(l["all_terminal"], true, "{report}");
    assert_eq!(l["statuses"]["succeeded"], 200, "{report}");
}
