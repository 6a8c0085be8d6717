//! The work of one job: the deploy pipeline (fetch → build → run → probe → switch → drain) and
//! app removal.
//!
//! - [`deploy`](deploy()): the deploy steps, to the deployment's terminal event (`deploy.rs`);
//! - [`claim`] and the fate of a deployment, switched or cancelled (`fate.rs`);
//! - waiting for an image's Docker HEALTHCHECK (`healthcheck.rs`);
//! - draining, stopping and pruning the previous release after a switch (`drain.rs`);
//! - [`remove_app`] (`removal.rs`); [`fail`](fail()), [`interrupted`] and [`resume`] (`fail.rs`:
//!   a crashed task, an infrastructure fault that the coordinator retries, a job a restart
//!   interrupted);
//! - [`Services`], what every step uses of the node (`services.rs`).

mod deploy;
mod drain;
mod fail;
mod fate;
mod healthcheck;
mod removal;
mod replica;
pub mod retire;
mod services;
mod test_pause;

pub use deploy::deploy;
pub use fail::{fail, interrupted, resume};
pub use fate::{claim, superseded, Claim};
pub use removal::{remove_app, stop_app};
pub use services::Services;

/// What a deploy job claims: its deployment, or one replica of its rollout.
pub fn claim_id(job: &berth_protocol::DeployJob) -> String {
    let id = match job.slot {
        Some(slot) => format!("{}:r{slot}", job.deployment_id),
        None => job.deployment_id.clone(),
    };
    match job.attempt {
        0 => id,
        n => format!("{id}@{n}"),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
