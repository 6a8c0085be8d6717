//! Replays the committed seeds and crash reproducers of the `webhook` and `app_spec` fuzz targets
//! (`fuzz/seeds/<target>/`) through the functions the targets call: what the fuzzer once found
//! stays fixed, without cargo-fuzz or a nightly compiler.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for f in files {
        let data = std::fs::read(&f).unwrap();
        eprintln!("replaying {}", f.display());
        run(&data);
    }
}

#[test]
fn webhook_seeds_replay() {
    replay("webhook", berth_coordinator::fuzzing::webhook);
}

#[test]
fn app_spec_seeds_replay() {
    replay("app_spec", berth_coordinator::fuzzing::app_spec);
}
