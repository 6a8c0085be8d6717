//! The fault-injection suite's short version (issue 12): every scenario of `berth_tests::chaos`
//! with a few trials (1 by default; `BERTH_CHAOS_TRIALS=N` for more) on one single-node cluster
//! and one two-node fleet. It fails on any trial that lost something, got stuck, failed by
//! infrastructure, or left a request through Caddy without an answer. `BERTH_CHAOS_SCENARIOS=a,b-` runs
//! only the scenarios named (or starting with) those.
//! `cargo bench -p berth-tests --bench chaos` runs the long version.

use berth_tests::chaos::{select, table, Suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_leaves_every_deployment_terminal_and_nothing_lost() {
    let trials: u32 = std::env::var("BERTH_CHAOS_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut suite = Suite::default();
    let mut rows = Vec::new();
    // `BERTH_CHAOS_SCENARIOS=name,prefix-…` runs only those (while working on one).
    let only: Vec<String> = std::env::var("BERTH_CHAOS_SCENARIOS")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    for s in select(&only).expect("known scenarios") {
        rows.push(suite.run(&s, trials).await);
    }
    drop(suite);
    eprintln!("{}", table(&rows));
    let problems: Vec<String> = rows.iter().flat_map(|r| r.problems()).collect();
    assert!(
        problems.is_empty(),
        "{}\n{}",
        table(&rows),
        problems.join("\n\n")
    );
}
