//! Expiry with the mock clock: TTL, TTI, per-entry TTL, and reclaiming memory.

use shardcache::{Cache, MockClock, RemovalCause};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn time_to_idle_slides_on_reads() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_idle(secs(10))
        .clock(clock.clone())
        .build()
        .expect("valid");
    cache.insert(1, 1);
    for _ in 0..5 {
        clock.advance(secs(9));
        assert_eq!(cache.get(&1), Some(1));
    }
    clock.advance(secs(10));
    assert_eq!(cache.get(&1), None);
}

#[test]
fn ttl_caps_idle_extension() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(20))
        .time_to_idle(secs(10))
        .clock(clock.clone())
        .build()
        .expect("valid");
    cache.insert(1, 1);
    clock.advance(secs(9));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(secs(9));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(secs(2));
    assert_eq!(cache.get(&1), None, "the TTL wins over a fresh read");
}

#[test]
fn per_entry_ttl_overrides_default_and_set_ttl_changes_it() {
    let clock = MockClock::new();
    let cache: Cache<&str, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(100))
        .clock(clock.clone())
        .build()
        .expect("valid");
    cache.insert_with_ttl("short", 1, secs(1));
    cache.insert("default", 2);
    assert_eq!(cache.ttl("default"), Some(Some(secs(100))));
    assert!(cache.set_ttl("default", None));
    assert_eq!(cache.ttl("default"), Some(None));
    clock.advance(secs(1));
    assert_eq!(cache.get("short"), None);
    assert_eq!(cache.ttl("short"), None);
    assert!(
        !cache.set_ttl("short", Some(secs(5))),
        "an expired key cannot be revived"
    );
    clock.advance(secs(1000));
    assert_eq!(cache.get("default"), Some(2));
}

#[test]
fn expired_memory_is_reclaimed_by_writes_without_reads() {
    let clock = MockClock::new();
    let expired = Arc::new(Mutex::new(0));
    let seen = expired.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100_000)
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |_, _, cause| {
            if cause == RemovalCause::Expired {
                *seen.lock().expect("lock") += 1;
            }
        })
        .build()
        .expect("valid");
    for k in 0..10_000 {
        cache.insert_with_ttl(k, k, secs(1));
    }
    clock.advance(secs(2));
    // Writes of other, non-expiring keys sample and reclaim the expired ones.
    for k in 10_000..12_000 {
        cache.insert(k, k);
    }
    let reclaimed = *expired.lock().expect("lock");
    assert!(
        reclaimed > 5_000,
        "only {reclaimed} of 10000 expired entries reclaimed"
    );
    cache.purge_expired();
    assert_eq!(cache.len(), 2_000);
    assert_eq!(cache.stats().expirations, 10_000);
}

/// A cache on `clock` with `tti` (if any) whose listener logs to the vector.
fn logged(clock: &MockClock, tti: Option<Duration>) -> (Cache<u32, u32>, Removals) {
    let heard: Removals = Arc::default();
    let h = heard.clone();
    let mut builder = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .eviction_listener(move |k, v, cause| h.lock().expect("log").push((k, v, cause)));
    if let Some(tti) = tti {
        builder = builder.time_to_idle(tti);
    }
    (builder.build().expect("valid"), heard)
}

type Removals = Arc<Mutex<Vec<(u32, u32, RemovalCause)>>>;

/// Writing over an entry whose time ran out before it was reclaimed: the
/// old value left because it expired, not because it was replaced.
#[test]
fn a_write_over_an_expired_entry_reports_it_expired() {
    use shardcache::{Decision, Ttl};
    let clock = MockClock::new();
    let (cache, heard) = logged(&clock, None);
    cache.insert_with_ttl(1, 10, secs(1));
    cache.insert(2, 20);
    cache.insert_with_ttl(3, 30, secs(1));
    clock.advance(secs(2));
    cache.insert(1, 11);
    cache.insert(2, 21);
    let put = cache.compute(3, |cur| (Decision::Put(31, Ttl::Keep), cur.is_some()));
    assert_eq!(put, Ok(false), "compute sees no live entry");
    // (A write may also reclaim other expired entries: sorted by key.)
    heard.lock().expect("log").sort_by_key(|&(k, _, _)| k);
    assert_eq!(
        *heard.lock().expect("log"),
        [
            (1, 10, RemovalCause::Expired),
            (2, 20, RemovalCause::Replaced),
            (3, 30, RemovalCause::Expired),
        ]
    );
    let s = cache.stats();
    assert_eq!((s.expirations, s.updates, s.removals), (2, 1, 0));
    assert_eq!(
        s.inserts, 5,
        "a write over an expired key counts as an insert"
    );

    // Past its time to idle, likewise.
    let (cache, heard) = logged(&clock, Some(secs(60)));
    cache.insert(1, 10);
    clock.advance(secs(60));
    cache.insert(1, 11);
    assert_eq!(
        *heard.lock().expect("log"),
        [(1, 10, RemovalCause::Expired)]
    );
    let s = cache.stats();
    assert_eq!((s.expirations, s.updates, s.inserts), (1, 0, 2));
}
