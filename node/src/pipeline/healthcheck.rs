//! Waiting for an image's own Docker HEALTHCHECK, after the HTTP probe passed.

use std::time::Duration;

use berth_protocol::DeployJob;

use super::Services;
use crate::containers;
use crate::error::{Error, Result};
use crate::log_sink::LogSink;

/// If the image defines a Docker HEALTHCHECK, waits for Docker to call the container healthy
/// too (within the health check's deadline).
pub(super) async fn wait_docker_healthcheck(
    svc: &Services,
    cid: &str,
    job: &DeployJob,
    log: &LogSink,
) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(job.app.health_check.deadline_s);
    let mut said = false;
    loop {
        match containers::docker_health(&svc.docker, cid).await? {
            None => return Ok(()),
            Some(s) if s == "healthy" => {
                if said {
                    log.system("Docker HEALTHCHECK: healthy").await;
                }
                return Ok(());
            }
            Some(s) if s == "unhealthy" => {
                return Err(Error::Health(
                    "the image's Docker HEALTHCHECK reports unhealthy".into(),
                ))
            }
            Some(_) => {
                if !said {
                    log.system("waiting for the image's Docker HEALTHCHECK")
                        .await;
                    said = true;
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Health(format!(
                "the image's Docker HEALTHCHECK did not report healthy within {} s",
                job.app.health_check.deadline_s
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
