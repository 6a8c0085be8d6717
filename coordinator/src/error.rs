//! The coordinator's error type: client mistakes (mapped to 4xx by web/) kept apart from internal
//! and distributed failures.

use berth_protocol::EnvelopeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// It exists already, or conflicts with something that does (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or asks for something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but cannot be carried out as asked, e.g. an app's repository
    /// or branch that cannot be reached (422).
    #[error("{0}")]
    Unprocessable(String),
    /// Redis cannot be reached (or is loading its data): "Redis is unreachable at <addr>:
    /// <cause>". Nobody's fault and temporary: web/ answers 503 with it.
    #[error("{0}")]
    Unavailable(String),
    /// A write that must survive a failover of Redis reached its primary, but not the replicas
    /// `redis.min_replicas_acked` asks for, in time: what was written, that it could be lost,
    /// and what to check before trying again. web/ answers 503 with it — never as a success.
    #[error("{0}")]
    Unreplicated(String),
    /// Redis refused a command.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    /// A stored record or message could not be decoded.
    #[error("protocol: {0}")]
    Protocol(#[from] EnvelopeError),
    /// A stored record exists but cannot be read (corrupted, or written by a newer version):
    /// which one, and why.
    #[error("{0}")]
    Unreadable(String),
    /// Something that should settle did not (a record kept changing under an edit).
    #[error("{0}")]
    Internal(String),
    /// A write of a leader whose epoch is no longer current: another coordinator leads now.
    #[error("{0}")]
    Fenced(String),
    /// An actor of the coordinator is gone (it stopped or its mailbox closed).
    #[error("coordinator actor unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if berth_bus::is_unavailable(&e) {
            Error::Unavailable(e.to_string())
        } else {
            Error::Redis(e)
        }
    }
}

impl Error {
    /// Whether the caller (not Berth) is at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::NotFound(_)
                | Error::Conflict(_)
                | Error::BadRequest(_)
                | Error::Unprocessable(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
