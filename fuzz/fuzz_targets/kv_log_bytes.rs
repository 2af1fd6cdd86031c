//! Arbitrary bytes as a `KvStore` log (whose records include partial
//! writes) never panic the loader; see `shardcache::fuzzing::kv_log_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcache::fuzzing::kv_log_bytes(data);
});
