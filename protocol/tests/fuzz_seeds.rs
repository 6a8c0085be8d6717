//! Replays the committed seeds and crash reproducers of the `envelope` and `sse` fuzz targets
//! (`fuzz/seeds/<target>/`) through the functions the targets call: what the fuzzer once found
//! stays fixed, without cargo-fuzz or a nightly compiler.

fn replay(target: &str, run: fn(&[u8])) {
    berth_protocol::fuzzing::replay_seeds(env!("CARGO_MANIFEST_DIR"), target, run);
}

#[test]
fn envelope_seeds_replay() {
    replay("envelope", berth_protocol::fuzzing::envelope);
}

#[test]
fn sse_seeds_replay() {
    replay("sse", berth_protocol::fuzzing::sse);
}
