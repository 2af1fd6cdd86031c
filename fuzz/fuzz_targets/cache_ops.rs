//! Random operation sequences against a reference model; see
//! `shardcache::fuzzing::cache_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcache::fuzzing::cache_ops(data);
});
