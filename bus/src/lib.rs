//! The Redis plumbing both daemons share: connections with the right timeouts, the one stream
//! consumer (consumer groups, redelivery, dead letters) and the one retry policy.
//!
//! The coordinator reads `berth:events` and a node reads `berth:jobs:<node>` through the same
//! [`consumer::StreamConsumer`], so group creation, pending-then-new reads, acknowledgement after
//! handling, delivery counts and dead letters are written once. protocol/ stays free of any
//! runtime; this crate is where the runtime meets the wire.

pub mod conn;
pub mod consumer;
pub mod retry;

pub use consumer::{ConsumerConfig, Delivery, Mode, Outcome, StreamConsumer};
pub use retry::Backoff;
