//! A batch the log refuses under `Fsync::Always` is undone as the same
//! writes made one at a time are: values, expiries, statistics and the
//! listener's notices all end the same.

use super::BatchWrite;
use crate::listener::RemovalCause;
use crate::persist::{FaultOn, FileLog, Fsync, MemStorage};
use crate::sync::{Arc, Mutex};
use crate::{Cache, CacheStats, MockClock, Ttl};
use std::time::Duration;

type Notices = Arc<Mutex<Vec<(String, u32, RemovalCause)>>>;

/// A persistent cache over `storage` whose listener writes to the result.
fn cache(storage: &MemStorage, clock: &MockClock) -> (Cache<String, u32>, Notices) {
    let seen: Notices = Arc::default();
    let log = seen.clone();
    let (cache, _) = Cache::<String, u32>::builder()
        .max_capacity(1_000)
        .shards(8)
        .clock(clock.clone())
        .eviction_listener(move |k, v, cause| log.lock().push((k, v, cause)))
        .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
        .expect("open");
    (cache, seen)
}

/// The state a test compares: each key's value and TTL, the statistics and
/// the notices (sorted: a batch reports them in its own order).
type Outcome = (
    Vec<(Option<u32>, Option<Option<Duration>>)>,
    CacheStats,
    Vec<(String, u32, RemovalCause)>,
);

/// `writes` names the keys written: a write to one key may also reclaim
/// another's expired entry in its shard (sampled at random), so the expired
/// d's notice, and its count, are kept only when d is written.
fn outcome(cache: &Cache<String, u32>, seen: &Notices, writes: &[W]) -> Outcome {
    let keys = ["a", "b", "c", "d"];
    let values = keys
        .iter()
        .map(|k| (cache.peek_value(*k), cache.ttl(*k)))
        .collect();
    let writes_d = writes.iter().any(|w| matches!(w, W::D));
    let mut notices: Vec<_> = seen
        .lock()
        .iter()
        .filter(|n| writes_d || n.2 != RemovalCause::Expired)
        .cloned()
        .collect();
    notices.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    let mut stats = cache.stats();
    stats.expirations = notices
        .iter()
        .filter(|n| n.2 == RemovalCause::Expired)
        .count() as u64;
    (values, stats, notices)
}

/// Before: a=1 (TTL 100 s), b=2, d=4 expired. The writes: a=10 (no TTL),
/// remove b, c=30, d=40.
fn prepare(cache: &Cache<String, u32>, clock: &MockClock) {
    cache.insert_with_ttl("a".into(), 1, Duration::from_secs(100));
    cache.insert("b".into(), 2);
    cache.insert_with_ttl("d".into(), 4, Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
}

/// One of the test's writes, as a batch answer and as a single write.
#[derive(Clone, Copy)]
enum W {
    /// a = 10, no TTL (it had 100 s).
    A,
    /// Remove b.
    B,
    /// c = 30 (new), keeping its (absent) TTL.
    C,
    /// d = 40 for 5 s (d had expired).
    D,
}

impl W {
    fn batch(self) -> BatchWrite<u32> {
        match self {
            W::A => BatchWrite::Put(10, Ttl::Never),
            W::B => BatchWrite::Remove,
            W::C => BatchWrite::Put(30, Ttl::Keep),
            W::D => BatchWrite::Put(40, Ttl::After(Duration::from_secs(5))),
        }
    }

    fn key(self) -> String {
        ["a", "b", "c", "d"][self as usize].to_string()
    }

    fn single(self, c: &Cache<String, u32>) {
        match self {
            W::A => c.insert("a".into(), 10),
            W::B => drop(c.remove("b")),
            W::C => c.insert("c".into(), 30),
            W::D => c.insert_with_ttl("d".into(), 40, Duration::from_secs(5)),
        }
    }
}

/// Runs `writes` as one batch on a fresh cache whose log fails at its next
/// storage call of kind `on`; the outcome.
fn refused_batch(writes: &[W], on: FaultOn) -> Outcome {
    let (storage, clock) = (MemStorage::new(), MockClock::new());
    let (c, seen) = cache(&storage, &clock);
    prepare(&c, &clock);
    storage.inject(on, 0, std::io::ErrorKind::Other, true);
    let keys: Vec<String> = writes.iter().map(|w| w.key()).collect();
    let r = c.durably(|| {
        c.write_batch(&keys, None, |_| {
            (writes.iter().map(|w| w.batch()).collect(), ())
        })
    });
    assert!(r.is_err(), "not refused: {r:?}");
    outcome(&c, &seen, writes)
}

/// Runs `w` as a single write on a fresh cache whose log fails likewise.
fn refused_single(w: W, on: FaultOn) -> Outcome {
    let (storage, clock) = (MemStorage::new(), MockClock::new());
    let (c, seen) = cache(&storage, &clock);
    prepare(&c, &clock);
    storage.inject(on, 0, std::io::ErrorKind::Other, true);
    assert!(c.durably(|| w.single(&c)).is_err());
    outcome(&c, &seen, &[w])
}

#[test]
fn a_refused_batch_is_undone_as_single_writes_are() {
    let all = [W::A, W::B, W::C, W::D];
    for on in [FaultOn::Sync, FaultOn::Append] {
        let (before_storage, clock) = (MemStorage::new(), MockClock::new());
        let (c, seen) = cache(&before_storage, &clock);
        prepare(&c, &clock);
        let before = outcome(&c, &seen, &[]);
        // Each write alone: as a batch of one, as a single write.
        let mut notices = Vec::new();
        let mut stats = before.1;
        for w in all {
            let (one, single) = (refused_batch(&[w], on), refused_single(w, on));
            assert_eq!(one.0, single.0, "{on:?}: values and TTLs");
            assert_eq!(one.1, single.1, "{on:?} {}: statistics", w as usize);
            assert_eq!(one.2, single.2, "{on:?} {}: notices", w as usize);
            assert_eq!(one.0, before.0, "{on:?}: undone");
            notices.extend(one.2.into_iter().filter(|n| !before.2.contains(n)));
            stats.evictions += one.1.evictions - before.1.evictions;
            stats.expirations += one.1.expirations - before.1.expirations;
            stats.removals += one.1.removals - before.1.removals;
            stats.inserts += one.1.inserts - before.1.inserts;
            stats.updates += one.1.updates - before.1.updates;
        }
        // All four as one batch: every key back as it was, and what the
        // statistics and the listener heard is the sum of the four.
        let whole = refused_batch(&all, on);
        assert_eq!(whole.0, before.0, "{on:?}: undone");
        assert_eq!(whole.0[0], (Some(1), Some(Some(Duration::from_secs(98)))));
        assert_eq!(whole.1, stats, "{on:?}: statistics");
        notices.extend(before.2);
        notices.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
        assert_eq!(whole.2, notices, "{on:?}: notices");
    }
}

/// Under a policy that never evicts, a batch whose third insert finds no
/// room is rolled back: every key is as before (a replaced value back, new
/// keys gone), the weight is as before, the listener hears nothing, and
/// the statistics count one rejection, as a single insert that does not
/// fit counts it.
#[test]
fn a_batch_refused_midway_is_rolled_back_unseen() {
    let seen: Notices = Arc::default();
    let log = seen.clone();
    let cache = Cache::<String, u32>::builder()
        .max_capacity(100)
        .shards(4)
        .shared_capacity()
        .weigher(|_, v: &u32| *v)
        .policy(crate::Policy::redis_noeviction())
        .eviction_listener(move |k, v, cause| log.lock().push((k, v, cause)))
        .build()
        .expect("cache");
    cache.insert("a".into(), 10);
    cache.insert("b".into(), 20);
    let (weight, stats) = (cache.weighted_size(), cache.stats());
    let keys: Vec<String> = ["a", "c", "b", "d"].iter().map(|k| k.to_string()).collect();
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
        let keys: Vec<String> = order.iter().map(|&i| keys[i].clone()).collect();
        // a: 10 -> 30, c: new 30, b: removed, d: new 45 (does not fit).
        let r = cache.write_batch(&keys, None, |_| {
            let writes = keys
                .iter()
                .map(|k| match k.as_str() {
                    "a" => BatchWrite::Put(30, Ttl::Never),
                    "c" => BatchWrite::Put(30, Ttl::Never),
                    "b" => BatchWrite::Remove,
                    _ => BatchWrite::Put(45, Ttl::Never),
                })
                .collect();
            (writes, ())
        });
        assert_eq!(r, Err(super::BatchFull), "{order:?}");
        assert_eq!(cache.peek_value("a"), Some(10), "{order:?}");
        assert_eq!(cache.peek_value("b"), Some(20), "{order:?}");
        assert_eq!((cache.peek_value("c"), cache.peek_value("d")), (None, None));
        assert_eq!(cache.weighted_size(), weight, "{order:?}");
        assert!(seen.lock().is_empty(), "{order:?}: {:?}", seen.lock());
        cache.validate();
    }
    let after = cache.stats();
    assert_eq!(after.rejections, stats.rejections + 3);
    assert_eq!(
        (
            after.inserts,
            after.updates,
            after.removals,
            after.evictions
        ),
        (
            stats.inserts,
            stats.updates,
            stats.removals,
            stats.evictions
        )
    );
    // What fits is written whole.
    let keys: Vec<String> = vec!["a".into(), "c".into()];
    let r = cache.write_batch(&keys, None, |_| {
        let writes = vec![
            BatchWrite::Put(40, Ttl::Never),
            BatchWrite::Put(40, Ttl::Never),
        ];
        (writes, ())
    });
    assert_eq!(r, Ok(()));
    assert_eq!(
        (cache.peek_value("a"), cache.peek_value("c")),
        (Some(40), Some(40))
    );
    assert_eq!(
        *seen.lock(),
        vec![("a".to_string(), 10, RemovalCause::Replaced)]
    );
}

/// Random batches (puts with and without TTLs, removals, moves, keeps)
/// mixed with single writes and time passing, on small caches with every
/// kind of capacity (per shard, shared, weighted, a policy that never
/// evicts): every internal invariant holds after each step, the weight
/// stays within the capacity, and the shared budget counts exactly what
/// the shards hold.
#[test]
fn invariants_hold_under_random_batches() {
    let mut full = 0;
    for (policy, weighted, shared) in [
        (crate::Policy::tiny_lfu(), false, false),
        (crate::Policy::lru(), true, false),
        (crate::Policy::tiny_lfu(), true, true),
        (crate::Policy::redis_noeviction(), true, true),
        (crate::Policy::redis_allkeys_lru(), true, true),
    ] {
        let clock = MockClock::new();
        let mut b = Cache::<u32, u32>::builder()
            .max_capacity(60)
            .shards(4)
            .policy(policy)
            .clock(clock.clone());
        if weighted {
            b = b.weigher(|_: &u32, v: &u32| v % 7);
        }
        if shared {
            b = b.shared_capacity();
        }
        let cache = b.build().expect("valid");
        let mut x = 0x9E37_79B9_u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for step in 0..5_000u32 {
            match next() % 4 {
                0 => cache.insert(next() % 50, step),
                1 => clock.advance(Duration::from_millis(u64::from(next() % 20))),
                _ => {
                    let mut keys: Vec<u32> = (0..1 + next() % 5).map(|_| next() % 50).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let n = keys.len();
                    let writes: Vec<BatchWrite<u32>> = (0..n)
                        .map(|_| match next() % 5 {
                            0 => BatchWrite::Keep,
                            1 => BatchWrite::Remove,
                            2 => BatchWrite::Move((next() as usize) % n),
                            3 => {
                                BatchWrite::Put(next() % 40, Ttl::After(Duration::from_millis(30)))
                            }
                            _ => BatchWrite::Put(next() % 40, Ttl::Keep),
                        })
                        .collect();
                    if cache.write_batch(&keys, None, |_| (writes, ())).is_err() {
                        full += 1;
                    }
                }
            }
            cache.validate();
            assert!(cache.weighted_size() <= 60, "{step}");
            if let Some(budget) = cache.budget() {
                assert_eq!(budget.available(), 60 - cache.weighted_size(), "{step}");
            }
        }
    }
    assert!(full > 0, "no batch was refused: the rollback went untested");
}

/// On a full cache under every evicting policy, shared capacity or a
/// capacity per shard, 1 or 2 shards: batches of three new keys are never
/// refused (their room is made from other keys, never their own), and each
/// one's keys are all there after it.
#[test]
fn batches_on_a_full_cache_evict_other_keys() {
    use crate::{Policy, RedisPolicy};
    let policies = [
        Policy::tiny_lfu(),
        Policy::lru(),
        Policy::redis(RedisPolicy::AllKeysLru),
        Policy::redis(RedisPolicy::AllKeysLfu),
        Policy::redis(RedisPolicy::VolatileLru),
        Policy::redis(RedisPolicy::VolatileTtl),
    ];
    for policy in policies {
        for (shards, shared) in [(1, false), (1, true), (2, false), (2, true)] {
            let mut b = Cache::<u32, u32>::builder()
                .max_capacity(24)
                .shards(shards)
                .policy(policy.clone());
            if shared {
                b = b.shared_capacity();
            }
            let cache = b.build().expect("valid");
            for k in 0..100 {
                cache.insert(k, k);
            }
            for round in 0..200u32 {
                let keys: Vec<u32> = (0..3).map(|j| 1_000 + round * 3 + j).collect();
                let r = cache.write_batch(&keys, None, |_| {
                    let writes = keys.iter().map(|&k| BatchWrite::Put(k, Ttl::Never));
                    (writes.collect(), ())
                });
                assert_eq!(r, Ok(()), "{policy} {shards} {shared} round {round}");
                for k in &keys {
                    assert!(cache.contains_key(k), "{policy} {shards} {shared} {k}");
                }
                cache.validate();
                assert!(cache.weighted_size() <= 24, "{policy} {shards} {shared}");
            }
        }
    }
}
