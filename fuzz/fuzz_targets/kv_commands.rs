//! Random command sequences on `KvStore`: `execute` and the typed methods
//! must agree with each other and with a reference model, and nothing panics;
//! then arbitrary argument lists that reach the size limits (long keys, big
//! values, long patterns, a small `max_memory`).
//! The decoding and checks live in `shardcache::kv::fuzzing`, shared with
//! `tests/fuzz_corpus_kv.rs`, which replays `fuzz/corpus/kv_commands/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shardcache::kv::fuzzing::run(data);
    shardcache::kv::fuzzing::run_edges(data);
});
