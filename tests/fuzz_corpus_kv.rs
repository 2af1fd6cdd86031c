//! Replays the `kv_commands` fuzz corpus (fuzz/corpus/kv_commands/) through
//! the fuzz target's driver, plus a few thousand pseudo-random inputs, so the
//! model checks run on every `cargo test`.
#![cfg(feature = "fuzzing")]

use shardcache::kv::fuzzing;
use std::path::Path;
#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;

#[test]
fn corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/kv_commands");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).expect("a corpus file");
        fuzzing::run(&data);
        fuzzing::run_edges(&data);
        replayed += 1;
    }
    assert!(replayed >= 5, "expected seed inputs in {}", dir.display());
}

#[test]
fn pseudo_random_inputs_pass_the_model() {
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    for len in 0..3000usize {
        let data: Vec<u8> = (0..len % 300).map(|_| rng.next() as u8).collect();
        fuzzing::run(&data);
        fuzzing::run_edges(&data);
    }
}
