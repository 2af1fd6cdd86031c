//! Arbitrary bytes as the admission summary beside a log never panic its
//! decoder; see `shardcache::fuzzing::admission_summary`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcache::fuzzing::admission_summary(data);
});
