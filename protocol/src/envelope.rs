//! The versioned MessagePack envelope every stream entry and stored record travels in.
//!
//! Encoded with `rmp_serde::to_vec_named` (maps with field names, not positional arrays) so that a
//! reader of another version can skip fields it does not know and default the ones it lacks.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version this build writes. Readers accept any envelope whose `v` is at most this.
pub const PROTOCOL_VERSION: u16 = 1;

/// The field name under which an envelope is stored in a Redis stream entry.
pub const STREAM_FIELD: &str = "m";

/// The `kind` of every envelope Berth writes, one per body type, so reader and writer cannot
/// disagree on the name.
pub mod kind {
    /// [`crate::Job`] on `berth:jobs:<node>`.
    pub const JOB: &str = "job";
    /// [`crate::Event`] on `berth:events`.
    pub const EVENT: &str = "event";
    /// [`crate::App`] at `berth:app:<name>`.
    pub const APP: &str = "app";
    /// [`crate::Deployment`] at `berth:deployment:<id>`.
    pub const DEPLOYMENT: &str = "deployment";
    /// [`crate::NodeInfo`] at `berth:node:<name>` (the heartbeat).
    pub const NODE: &str = "node";
    /// [`crate::secret::Sealed`] git credential at `berth:app:<name>:credential`.
    pub const CREDENTIAL: &str = "credential";
    /// [`crate::Route`] in the `berth:routes` hash.
    pub const ROUTE: &str = "route";
    /// [`crate::metrics::ContainerSample`] on `berth:metrics:<app>`.
    pub const SAMPLE: &str = "container_sample";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Protocol version of the writer.
    pub v: u16,
    /// Unique id of this message (for idempotence and tracing).
    pub id: String,
    /// What `body` is, e.g. `job`, `event`, `app`, `deployment`.
    pub kind: String,
    pub body: T,
}

/// The envelope without its body: enough to route or reject a message before decoding the rest.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub v: u16,
    pub id: String,
    pub kind: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("cannot encode {kind}: {source}")]
    Encode {
        kind: String,
        source: rmp_serde::encode::Error,
    },
    #[error("cannot decode message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error(
        "message has protocol version {found}, this build understands up to {PROTOCOL_VERSION}"
    )]
    TooNew { found: u16 },
    #[error("expected a message of kind {expected}, got {found}")]
    WrongKind { expected: String, found: String },
}

impl<T: Serialize + DeserializeOwned> Envelope<T> {
    pub fn new(id: impl Into<String>, kind: impl Into<String>, body: T) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            id: id.into(),
            kind: kind.into(),
            body,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        rmp_serde::to_vec_named(self).map_err(|source| EnvelopeError::Encode {
            kind: self.kind.clone(),
            source,
        })
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Decodes an envelope of the given kind. A message of a newer version or of another kind is
    /// refused as such ([`EnvelopeError::TooNew`], [`EnvelopeError::WrongKind`]), whether or not
    /// its body would decode as `T`.
    ///
    /// One pass over the bytes when they decode: the whole envelope, then its header checked.
    /// Only a message that does not decode is read again, for its header alone, so that a newer
    /// or other kind of message is reported as that and not as a body that does not fit.
    pub fn decode(bytes: &[u8], kind: &str) -> Result<Self, EnvelopeError> {
        match rmp_serde::from_slice::<Self>(bytes) {
            Ok(env) => {
                check_header(env.v, &env.kind, kind)?;
                Ok(env)
            }
            Err(body) => {
                let header: Header = rmp_serde::from_slice(bytes)?;
                check_header(header.v, &header.kind, kind)?;
                Err(body.into())
            }
        }
    }
}

/// A header's version and kind, as a reader expecting `expected` takes them.
fn check_header(v: u16, found: &str, expected: &str) -> Result<(), EnvelopeError> {
    if v > PROTOCOL_VERSION {
        return Err(EnvelopeError::TooNew { found: v });
    }
    if found != expected {
        return Err(EnvelopeError::WrongKind {
            expected: expected.to_string(),
            found: found.to_string(),
        });
    }
    Ok(())
}

/// Encodes a body in a fresh envelope (its id is `id`).
pub fn encode<T: Serialize + DeserializeOwned>(
    kind: &str,
    id: &str,
    body: &T,
) -> Result<Vec<u8>, EnvelopeError> {
    #[derive(Serialize)]
    struct Borrowed<'a, T> {
        v: u16,
        id: &'a str,
        kind: &'a str,
        body: &'a T,
    }
    rmp_serde::to_vec_named(&Borrowed {
        v: PROTOCOL_VERSION,
        id,
        kind,
        body,
    })
    .map_err(|source| EnvelopeError::Encode {
        kind: kind.to_string(),
        source,
    })
}

/// Decodes the body of an envelope of the given kind.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], kind: &str) -> Result<T, EnvelopeError> {
    Envelope::<T>::decode(bytes, kind).map(|e| e.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        a: u32,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn round_trip() {
        let bytes = encode("t", "1", &V1 { a: 7 }).unwrap();
        assert_eq!(decode::<V1>(&bytes, "t").unwrap(), V1 { a: 7 });
    }

    #[test]
    fn mixed_versions_decode() {
        let new = encode(
            "t",
            "1",
            &V2 {
                a: 1,
                b: Some("x".into()),
            },
        )
        .unwrap();
        assert_eq!(decode::<V1>(&new, "t").unwrap(), V1 { a: 1 });
        let old = encode("t", "1", &V1 { a: 2 }).unwrap();
        assert_eq!(decode::<V2>(&old, "t").unwrap(), V2 { a: 2, b: None });
    }

    #[test]
    fn rejects_wrong_kind_and_future_version() {
        let bytes = encode("t", "1", &V1 { a: 7 }).unwrap();
        assert!(matches!(
            decode::<V1>(&bytes, "u"),
            Err(EnvelopeError::WrongKind { .. })
        ));
        let future = rmp_serde::to_vec_named(&Envelope {
            v: PROTOCOL_VERSION + 1,
            id: "x".into(),
            kind: "t".into(),
            body: V1 { a: 1 },
        })
        .unwrap();
        assert!(matches!(
            decode::<V1>(&future, "t"),
            Err(EnvelopeError::TooNew { .. })
        ));
    }

    /// A body that does not fit `T` is reported as the header's fault when the header is at
    /// fault (decode reads the header again only then), else as a body that does not decode.
    #[test]
    fn a_body_that_does_not_fit_is_refused_for_the_header_first() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Other {
            z: String,
        }
        let other = |v: u16, kind: &str| {
            rmp_serde::to_vec_named(&Envelope {
                v,
                id: "x".into(),
                kind: kind.into(),
                body: Other { z: "no a".into() },
            })
            .unwrap()
        };
        assert!(matches!(
            decode::<V1>(&other(PROTOCOL_VERSION, "u"), "t"),
            Err(EnvelopeError::WrongKind { .. })
        ));
        assert!(matches!(
            decode::<V1>(&other(PROTOCOL_VERSION + 1, "t"), "t"),
            Err(EnvelopeError::TooNew { .. })
        ));
        assert!(matches!(
            decode::<V1>(&other(PROTOCOL_VERSION, "t"), "t"),
            Err(EnvelopeError::Decode(_))
        ));
        assert!(matches!(
            decode::<V1>(b"not msgpack at all", "t"),
            Err(EnvelopeError::Decode(_))
        ));
    }
}
