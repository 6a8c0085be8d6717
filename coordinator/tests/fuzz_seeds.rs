//! Replays the committed seeds and crash reproducers of the `webhook` and `app_spec` fuzz targets
//! (`fuzz/seeds/<target>/`) through the functions the targets call: what the fuzzer once found
//! stays fixed, without cargo-fuzz or a nightly compiler.

fn replay(target: &str, run: fn(&[u8])) {
    berth_protocol::fuzzing::replay_seeds(env!("CARGO_MANIFEST_DIR"), target, run);
}

#[test]
fn webhook_seeds_replay() {
    replay("webhook", berth_coordinator::fuzzing::webhook);
}

#[test]
fn app_spec_seeds_replay() {
    replay("app_spec", berth_coordinator::fuzzing::app_spec);
}
