//! Berth's wire types: what crosses Redis (stream entries, stored records) and the HTTP API.
//!
//! Both the coordinator and the node depend on this crate and on nothing of each other. It holds no
//! runtime: no tokio, no actix, no Redis client — only serde types, the MessagePack envelope and the
//! names of streams and keys. Everything here is a compatibility promise: add fields with
//! `#[serde(default)]`, never repurpose one, and bump [`PROTOCOL_VERSION`] when a change is breaking.

pub mod api;
pub mod duration;
pub mod envelope;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod repo_url;
pub mod secret;
pub mod sse;
pub mod validate;

pub use envelope::{Envelope, EnvelopeError, PROTOCOL_VERSION};
pub use messages::{
    is_stream_id, stream_id_order, DeployJob, DeploymentUpdate, Event, Job, LogEntry, LogLine,
    LogStream, EVENT_KIND, JOB_KIND,
};
pub use model::*;

/// Milliseconds since the Unix epoch, the one time unit of every record and message.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
