//! A policy written outside the crate (the `sieve` example's SIEVE) passes
//! the conformance suite every built-in passes, and works in a cache.

#[path = "../examples/sieve/policy.rs"]
mod sieve;

use shardcache::{conformance, Cache, Policy};
use sieve::Sieve;

#[test]
fn sieve_passes_the_conformance_suite() -> Result<(), conformance::Violation> {
    conformance::check("sieve", |_| Sieve::default())
}

#[test]
fn sieve_keeps_a_hot_set_through_a_scan() -> Result<(), shardcache::BuildError> {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .policy(Policy::custom("sieve", |_| Sieve::default()))
        .build()?;
    for k in 0..50 {
        cache.insert(k, k);
    }
    for k in 0..50 {
        assert_eq!(cache.get(&k), Some(k));
    }
    for k in 1_000..2_000 {
        cache.insert(k, k);
    }
    assert_eq!(cache.len(), 100);
    // Read once after insertion, the hot keys were visited: the hand passes
    // over them once and then evicts only the scan's one-off keys.
    assert!((0..50).all(|k| cache.contains_key(&k)));
    assert_eq!(
        Policy::custom("sieve", |_| Sieve::default()).name(),
        "sieve"
    );
    Ok(())
}
