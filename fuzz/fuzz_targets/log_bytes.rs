//! Arbitrary bytes as a log file never panic the loader; see
//! `shardcache::fuzzing::log_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcache::fuzzing::log_bytes(data);
});
