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
}

impl Error {
    /// Whether this failed because Redis cannot be reached (see `berth_bus::conn`): transient,
    /// worth waiting out, and logged once by the node's connection rather than by each loop.
    pub fn is_redis_away(&self) -> bool {
        matches!(self, Error::Redis(e) if berth_bus::is_unavailable(e))
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
