//! The fault-injection suite (issue 12) as a benchmark: every scenario of
//! `berth_tests::chaos` run `--trials N` times (default 20), then a table — per scenario: trials,
//! succeeded, failed by the app, failed by infrastructure, stuck, lost, requests that got
//! nothing, the most attempts a deployment took, median and max time to terminal.
//!
//! `cargo build --release --bins && cargo bench -p berth-tests --bench chaos -- --trials 20
//! [--scenario NAME-OR-PREFIX]...`

use berth_tests::chaos::{select, table, Suite};

fn main() -> anyhow::Result<()> {
    let mut trials = 20u32;
    let mut filter = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--trials" => {
                trials = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow::anyhow!("--trials takes a number of at least 1"))?;
            }
            "--scenario" => filter.push(
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("--scenario takes a scenario name"))?,
            ),
            // What `cargo bench` adds (`--bench`) and anything else is not ours.
            _ => {}
        }
    }
    let scenarios = select(&filter)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rows = rt.block_on(async {
        let mut suite = Suite::default();
        let mut rows = Vec::new();
        for s in &scenarios {
            rows.push(suite.run(s, trials).await);
            // The table so far, so a long run shows its progress.
            eprintln!("{}", table(&rows));
        }
        rows
    });
    println!("{}", table(&rows));
    for r in &rows {
        for p in r.problems() {
            println!("- {p}");
        }
    }
    Ok(())
}
