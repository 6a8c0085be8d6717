//! `berth bench …`: measurements of a running Berth that need no Docker, run from the one binary.

pub mod scheduler;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// The scheduler against simulated nodes: jobs/s, dispatch latency, coordinator CPU and RSS.
    Scheduler(scheduler::SchedulerArgs),
}

/// Runs a benchmark; with `json`, its results are one JSON object on stdout.
pub fn run(cmd: BenchCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Scheduler(args) => scheduler::run(args, json),
    }
}
