//! The entry points of the fuzz targets in `fuzz/fuzz_targets/` (`envelope`, `sse`), here so that
//! the replay test (`tests/fuzz_seeds.rs`) runs the very same code over the committed seeds and
//! crash reproducers in `fuzz/seeds/<target>/`. Each function takes any bytes and panics only
//! on a bug: a panic in a parser, or a broken property that is asserted.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::{kind, Envelope, Header};
use crate::sse::SseParser;

/// Decodes `data` as an envelope of the kind its header names (or of every kind, when the
/// header does not decode) and re-encodes what decoded: encoding a decoded message succeeds,
/// and decoding and encoding that again gives the same bytes.
pub fn envelope(data: &[u8]) {
    fn one<T: Serialize + DeserializeOwned>(data: &[u8], kind: &str) {
        let Ok(first) = Envelope::<T>::decode(data, kind) else {
            return;
        };
        let bytes = first.encode().expect("a decoded envelope encodes");
        let again = Envelope::<T>::decode(&bytes, kind).expect("an encoded envelope decodes");
        assert_eq!(
            again.encode().expect("a decoded envelope encodes"),
            bytes,
            "re-encoding a decoded envelope changed it"
        );
    }
    let kinds: Vec<&str> = match rmp_serde::from_slice::<Header>(data) {
        Ok(h) => vec![match h.kind.as_str() {
            kind::JOB => kind::JOB,
            kind::EVENT => kind::EVENT,
            kind::APP => kind::APP,
            kind::DEPLOYMENT => kind::DEPLOYMENT,
            kind::NODE => kind::NODE,
            kind::CREDENTIAL => kind::CREDENTIAL,
            kind::ROUTE => kind::ROUTE,
            kind::SAMPLE => kind::SAMPLE,
            _ => return,
        }],
        Err(_) => vec![
            kind::JOB,
            kind::EVENT,
            kind::APP,
            kind::DEPLOYMENT,
            kind::NODE,
            kind::CREDENTIAL,
            kind::ROUTE,
            kind::SAMPLE,
        ],
    };
    for k in kinds {
        match k {
            kind::JOB => one::<crate::Job>(data, k),
            kind::EVENT => one::<crate::Event>(data, k),
            kind::APP => one::<crate::App>(data, k),
            kind::DEPLOYMENT => one::<crate::Deployment>(data, k),
            kind::NODE => one::<crate::NodeInfo>(data, k),
            kind::CREDENTIAL => one::<crate::secret::Sealed>(data, k),
            kind::ROUTE => one::<crate::Route>(data, k),
            _ => one::<crate::metrics::ContainerSample>(data, k),
        }
    }
}

/// Parses `data[1..]` as a `text/event-stream` twice: in one chunk, and in chunks of
/// `data[0] % 16 + 1` bytes (so chunk boundaries fall inside lines and UTF-8 characters). Both
/// give the same events; each event's JSON reading does not panic.
pub fn sse(data: &[u8]) {
    let Some((first, stream)) = data.split_first() else {
        return;
    };
    let whole = SseParser::default().push(stream);
    let mut parser = SseParser::default();
    let chunked: Vec<_> = stream
        .chunks(usize::from(*first) % 16 + 1)
        .flat_map(|c| parser.push(c))
        .collect();
    assert_eq!(whole, chunked, "chunk boundaries changed the events");
    for ev in &whole {
        let _ = ev.json::<serde_json::Value>();
    }
}

/// Runs every file of `fuzz/seeds/<target>/` (from the crate at `manifest_dir`), in name order,
/// through `run`: the replay tests of the fuzz targets' seeds and crash reproducers.
pub fn replay_seeds(manifest_dir: &str, target: &str, run: fn(&[u8])) {
    let dir = std::path::Path::new(manifest_dir)
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a seed's directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for f in files {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        eprintln!("replaying {}", f.display());
        run(&data);
    }
}
