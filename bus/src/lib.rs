//! The plumbing both daemons share: Redis connections with the right timeouts and one view of
//! whether Redis is there ([`conn::Redis`]: while it is away, commands fail at once saying so,
//! and the outage is logged once), the one stream consumer (consumer groups, redelivery, dead
//! letters), the one retry policy, the one shutdown pattern ([`shutdown::Shutdown`]: a
//! cancellation token and a task tracker) and the one supervision of actors
//! ([`supervise::Tree`], [`supervise::Live`]).
//!
//! The coordinator reads `berth:events` and a node reads `berth:jobs:<node>` through the same
//! [`consumer::StreamConsumer`], so group creation, pending-then-new reads, acknowledgement after
//! handling, delivery counts and dead letters are written once. protocol/ stays free of any
//! runtime; this crate is where the runtime meets the wire.

pub mod conn;
pub mod consumer;
pub mod durable;
pub mod replication;
pub mod retry;
pub mod shutdown;
pub mod supervise;
pub mod tls;

pub use conn::{is_unavailable, redacted, Redis, Sentinels};
pub use consumer::{ConsumerConfig, Delivery, Mode, Outcome, StreamConsumer};
pub use durable::{Durability, Replicas, Unreplicated};
pub use retry::{Backoff, Failing};
pub use shutdown::Shutdown;
pub use supervise::{Live, Tree};
