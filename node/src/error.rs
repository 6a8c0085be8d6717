//! The node's error type: every failure a deployment or the daemon can hit, worded so that the
//! text shown in a deployment's `error` field tells a person what went wrong and where to look.

/// Everything that can go wrong on a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("caddy admin API: {0}")]
    Caddy(String),
    #[error("message encoding: {0}")]
    Envelope(#[from] berth_protocol::EnvelopeError),
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// A git step failed; the text starts with the step (e.g. "git fetch failed: ...").
    #[error("{0}")]
    Git(String),
    #[error("docker build failed: {0}")]
    Build(String),
    /// Creating, starting or inspecting the new container failed.
    #[error("starting the container failed: {0}")]
    Run(String),
    #[error("health check failed: {0}")]
    Health(String),
    /// Something the job asked for is not acceptable (bad path, ref, name).
    #[error("{0}")]
    Invalid(String),
    #[error("deadline exceeded while {0}")]
    Deadline(String),
    /// The coordinator cancelled the deployment (superseded, or asked for).
    #[error("cancelled {0}")]
    Cancelled(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// A service the node depends on broke off or did not answer: its Docker engine (a
    /// connection refused or cut mid-stream, as when `dockerd` restarts) or the image registry.
    #[error("{0}")]
    Unavailable(String),
    /// A write that must survive a failover of Redis (a claim) reached its primary but not the
    /// replicas `redis.min_replicas_acked` asks for, in time: waited out like Redis being away.
    #[error("{0}")]
    Unreplicated(#[from] berth_bus::Unreplicated),
}

impl Error {
    /// Whether the failure is the infrastructure's, not the app's: the one classification of
    /// a failed attempt. An infrastructure fault before the switch (Redis, the Docker engine
    /// or the registry unavailable, Caddy's admin API, the node's disk, its configuration, a
    /// crashed task) makes the coordinator run the deployment again, up to its last attempt;
    /// the app's own faults (git, the build, the container refused or crashing, the health
    /// check, a bad setting) fail it. A deadline or a cancel ends it whatever caused it.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            Error::Redis(_)
            | Error::Docker(_)
            | Error::Caddy(_)
            | Error::Envelope(_)
            | Error::Config(_)
            | Error::Io { .. }
            | Error::Internal(_)
            | Error::Unavailable(_)
            | Error::Unreplicated(_) => true,
            Error::Git(_)
            | Error::Build(_)
            | Error::Run(_)
            | Error::Health(_)
            | Error::Invalid(_)
            | Error::Deadline(_)
            | Error::Cancelled(_) => false,
        }
    }

    /// A Docker call `what` that failed with `e`: the engine's answer (it refused: the app's
    /// fault, e.g. a command that does not exist) is [`Error::Run`]; no answer at all (the
    /// engine is down, restarting, or cut the connection) is [`Error::Unavailable`]. An answer
    /// the engine gave as it shut down looks like the first: the deploy steps have their
    /// failures judged again by [`crate::engine_watch::EngineWatch::judge`].
    pub fn docker(what: impl std::fmt::Display, e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        let text = crate::image_build::docker_error_text(&e);
        match e {
            E::DockerResponseServerError { .. } | E::DockerStreamError { .. } => {
                Error::Run(format!("{what}: {text}"))
            }
            _ => Error::Unavailable(format!("the Docker engine did not answer ({what}): {text}")),
        }
    }
}

impl Error {
    /// Whether this failed because Redis cannot be reached (see `berth_bus::conn`): transient,
    /// worth waiting out, and logged once by the node's connection rather than by each loop.
    pub fn is_redis_away(&self) -> bool {
        matches!(self, Error::Redis(e) if berth_bus::is_unavailable(e))
            || matches!(self, Error::Unreplicated(_))
    }

    /// Wraps an I/O error with what the node was doing.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<actix::MailboxError> for Error {
    fn from(e: actix::MailboxError) -> Self {
        Error::Internal(format!("node actor unavailable: {e}"))
    }
}

/// Result with the node's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_s_faults_fail_and_the_infrastructure_s_are_retried() {
        let infra = [
            Error::Caddy("connection refused".into()),
            Error::Config("no secret key".into()),
            Error::io("writing the checkout", std::io::Error::other("disk full")),
            Error::Internal("the deploy task crashed".into()),
            Error::Unavailable("the Docker engine did not answer".into()),
            Error::docker(
                "create",
                bollard::errors::Error::IOError {
                    err: std::io::Error::other("connection reset"),
                },
            ),
        ];
        for e in &infra {
            assert!(e.is_infrastructure(), "{e}");
        }
        let app = [
            Error::Git("git fetch failed: no such branch".into()),
            Error::Build("The command '/bin/sh -c false' returned a non-zero code: 1".into()),
            Error::Health("container exited with code 1".into()),
            Error::Invalid("bad path".into()),
            Error::Deadline("building the image".into()),
            Error::Cancelled("before it started".into()),
            Error::docker(
                "start",
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 400,
                    message: "exec: \"nope\": executable file not found".into(),
                },
            ),
        ];
        for e in &app {
            assert!(!e.is_infrastructure(), "{e}");
        }
    }
}
