//! A policy from outside the crate: SIEVE, plugged in with `Policy::custom`
//! and checked by the conformance suite every built-in passes.
//!
//! ```text
//! cargo run --example sieve --features conformance
//! ```

mod policy;

use policy::Sieve;
use shardcache::{conformance, Cache, Policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    conformance::check("sieve", |_| Sieve::default())?;
    println!("SIEVE passes the conformance suite");

    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .policy(Policy::custom("sieve", |_| Sieve::default()))
        .build()?;
    // A hot set read again and again, then a scan of one-off keys.
    for round in 0..10 {
        for k in 0..500 {
            if cache.get(&k).is_none() {
                cache.insert(k, round);
            }
        }
    }
    for k in 10_000..20_000 {
        cache.insert(k, 0);
    }
    let kept = (0..500).filter(|k| cache.contains_key(k)).count();
    println!("after a 10,000-key scan, {kept} of 500 hot keys are still cached");
    Ok(())
}
