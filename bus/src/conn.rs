//! Redis connections: a multiplexed one for ordinary commands and a dedicated one per blocking
//! reader.
//!
//! redis-rs 1.x gives async connections a 500 ms response timeout by default, which breaks
//! `XREADGROUP … BLOCK` and poisons the next command; and a blocking command stalls every other
//! command on a shared multiplexed connection. So ordinary commands share a
//! [`ConnectionManager`] with a generous timeout, and each blocking reader opens its own
//! connection without one.

use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};

/// The multiplexed, reconnecting connection for ordinary (non-blocking) commands.
pub async fn connect(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(3);
    client.get_connection_manager_with_config(cfg).await
}

/// A connection of its own for one blocking reader: no response timeout (the command's `BLOCK`
/// bounds each read), and nothing else shares it.
pub async fn connect_blocking(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}
