//! Reading a request body: its size checked on the `Content-Length` header before a byte is read,
//! and the read itself bounded in time.
//!
//! hyper bounds how long a request's head may take ([`crate::server`]) but not its body: a client
//! that declares 1 MiB and sends a byte every few seconds would hold the connection as long as it
//! likes. The deadline here covers the whole body, whatever the pace.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::{Filter, Rejection};

/// The body is larger than the route accepts (413); `.0` is the limit in bytes.
#[derive(Debug)]
pub struct TooLarge(pub u64);

impl warp::reject::Reject for TooLarge {}

/// The body did not arrive in time (408); `.0` is the deadline.
#[derive(Debug)]
pub struct TooSlow(pub Duration);

impl warp::reject::Reject for TooSlow {}

/// The client broke off while sending the body (400).
#[derive(Debug)]
pub struct Broken;

impl warp::reject::Reject for Broken {}

/// The whole body of a request with a `Content-Length` of at most `limit` bytes, read within
/// `timeout`. Without `Content-Length` the request is refused (411) rather than read.
pub fn read(
    limit: u64,
    timeout: Duration,
) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-length")
        .and_then(move |len: Option<String>| async move {
            match len {
                None => Err(warp::reject::custom(LengthRequired)),
                Some(len) => match len.trim().parse::<u64>() {
                    Ok(n) if n <= limit => Ok(n),
                    Ok(_) => Err(warp::reject::custom(TooLarge(limit))),
                    Err(_) => Err(warp::reject::custom(BadLength)),
                },
            }
        })
        .and(warp::body::stream())
        .and_then(move |len: u64, body| async move {
            match tokio::time::timeout(timeout, collect(body, len)).await {
                Ok(r) => r,
                Err(_) => Err(warp::reject::custom(TooSlow(timeout))),
            }
        })
}

/// The request has no `Content-Length` header (411).
#[derive(Debug)]
pub struct LengthRequired;

impl warp::reject::Reject for LengthRequired {}

/// The `Content-Length` header is not a number (400).
#[derive(Debug)]
pub struct BadLength;

impl warp::reject::Reject for BadLength {}

async fn collect<S, B, E>(body: S, len: u64) -> Result<Bytes, Rejection>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    // hyper stops the body at its declared length, so `len` bounds what is buffered.
    let mut out = BytesMut::with_capacity(len.min(64 * 1024) as usize);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(Broken))?;
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}
