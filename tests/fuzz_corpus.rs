//! Replays every file of the fuzz corpora as a regular test, so inputs the
//! fuzzer found (and the seeds) keep passing without cargo-fuzz installed.
#![cfg(feature = "fuzzing")]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        run(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
}

#[test]
fn cache_ops_corpus() {
    replay("cache_ops", shardcache::fuzzing::cache_ops);
}

#[test]
fn log_bytes_corpus() {
    replay("log_bytes", shardcache::fuzzing::log_bytes);
}

#[test]
fn kv_log_bytes_corpus() {
    replay("kv_log_bytes", shardcache::fuzzing::kv_log_bytes);
}

#[test]
fn admission_summary_corpus() {
    replay("admission_summary", shardcache::fuzzing::admission_summary);
}
