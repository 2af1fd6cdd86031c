//! Randomized checks of the refresh machinery against the shard invariants.

use super::BoxFuture;
use crate::cache::Cache;
use crate::sync::{Arc, Mutex};
use crate::MockClock;
use std::time::Duration;

/// Random reads, writes, removals, clock steps and reload completions in
/// any order: the shard invariants hold, and no read returns a value for
/// a key that was removed and not written since.
#[test]
fn invariants_hold_under_random_operations_with_reloads() {
    let clock = MockClock::new();
    let spawned: Arc<Mutex<Vec<BoxFuture>>> = Arc::default();
    let s = spawned.clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(30)
        .shards(2)
        .clock(clock.clone())
        .time_to_live(Duration::from_millis(100))
        .refresh_after(Duration::from_millis(60))
        .serve_stale_for(Duration::from_millis(20))
        .stale_if_error_for(Duration::from_millis(50))
        .refresh_loader_async(
            |k: u32| async move {
                if k.is_multiple_of(5) {
                    Err("unavailable")
                } else {
                    Ok(k + 1000)
                }
            },
            move |f| s.lock().push(f),
        )
        .build()
        .expect("valid settings");
    let mut removed = std::collections::HashSet::new();
    let mut x = 0x2545_F491_u32;
    for step in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let k = x % 47;
        match x % 9 {
            0..=2 => {
                cache.insert(k, step);
                removed.remove(&k);
            }
            3..=5 => {
                if let Some(v) = cache.get(&k) {
                    assert!(!removed.contains(&k), "removed key {k} read as {v}");
                }
            }
            6 => {
                cache.remove(&k);
                removed.insert(k);
            }
            7 => clock.advance(Duration::from_millis(u64::from(x % 13))),
            _ => {
                let jobs: Vec<_> = std::mem::take(&mut *spawned.lock());
                // Complete some, drop the others unrun.
                for (i, job) in jobs.into_iter().enumerate() {
                    if !(i as u32 + step).is_multiple_of(3) {
                        run_ready(job);
                    }
                }
            }
        }
        cache.validate();
    }
    let stats = cache.refresh_stats();
    assert!(stats.started > 0 && stats.succeeded > 0 && stats.failed > 0);
    assert!(stats.stale_served > 0);
}

/// Polls a future that never waits (the test's reloads are ready at once).
fn run_ready(mut f: BoxFuture) {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(f.as_mut().poll(&mut cx).is_ready());
}
