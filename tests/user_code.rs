//! User code that misbehaves inside the cache's calls. One that panics (a
//! `compute` closure, a weigher, an `expire_after` rule, an eviction
//! listener): the panic reaches the caller, and the cache stays whole: no
//! shard stays locked, the weighed size still adds up, and every value read
//! is one written for its key. A weigher whose answer changes while an entry
//! is cached: the entry counts what it was written with.

use shardcache::{Cache, Decision, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

/// The value written for `k`: what every read must return if anything.
fn value_of(k: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// Weight of a value: 1 + its low three bits; the weigher panics on a
/// value of 0 (never written by [`use_after`]).
fn weight(v: u64) -> u32 {
    assert_ne!(v, 0, "weigher refuses 0");
    1 + (v & 7) as u32
}

/// Runs `f` on another thread and fails if it does not finish within a
/// few seconds (a shard left locked would hang it).
fn within_seconds<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the cache hung after a panic in user code")
}

/// [`use_after`] on a clone of `cache`, failing if it hangs.
fn still_whole(cache: &Cache<u64, u64>) {
    let c = cache.clone();
    within_seconds(move || use_after(&c));
}

/// The next of a xorshift sequence (the tests' keys).
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Exercises every shard from two threads after a panic; checks that reads
/// see only written values, that the capacity holds, and that the weighed
/// size equals the sum of the entries' weights.
fn use_after(cache: &Cache<u64, u64>) {
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut x = t + 7;
                for i in 0..20_000u64 {
                    let k = next(&mut x) % 3_000;
                    if i % 3 == 0 {
                        cache.insert(k, value_of(k));
                    } else if let Some(v) = cache.get(&k) {
                        assert_eq!(v, value_of(k), "a value never written for key {k}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a worker panicked");
    }
    assert!(cache.weighted_size() <= cache.max_capacity());
    let summed: u64 = cache.iter().map(|(_, v)| u64::from(weight(v))).sum();
    assert_eq!(cache.weighted_size(), summed, "weighed size drifted");
    assert_eq!(cache.iter().count(), cache.len());
}

fn weighted(capacity: u64) -> Cache<u64, u64> {
    Cache::builder()
        .max_capacity(capacity)
        .shards(4)
        .weigher(|_, v: &u64| weight(*v))
        .build()
        .expect("valid")
}

#[test]
fn a_panicking_compute_closure_leaves_the_cache_whole() {
    let cache = weighted(2_000);
    for k in 0..100 {
        cache.insert(k, value_of(k));
    }
    for k in [5u64, 1_000_000] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = cache.compute(k, |_| -> (Decision<u64>, ()) { panic!("closure fails") });
        }));
        assert!(r.is_err());
    }
    assert_eq!(cache.get(&5), Some(value_of(5)));
    still_whole(&cache);
}

#[test]
fn a_panicking_compute_closure_after_an_expired_entry_leaves_the_cache_whole() {
    let clock = shardcache::MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(2_000)
        .shards(4)
        .weigher(|_, v: &u64| weight(*v))
        .clock(clock.clone())
        .build()
        .expect("valid");
    cache.insert_with_ttl(9, value_of(9), Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _ = cache.compute(9, |cur| -> (Decision<u64>, ()) {
            assert!(cur.is_none(), "an expired entry is not current");
            panic!("closure fails")
        });
    }));
    assert!(r.is_err());
    assert_eq!(cache.get(&9), None);
    let n = cache
        .compute(9, |_| (Decision::Put(value_of(9), Ttl::Keep), 1))
        .expect("fits");
    assert_eq!(n, 1);
    still_whole(&cache);
}

#[test]
fn a_panicking_weigher_leaves_the_cache_whole() {
    let cache = weighted(2_000);
    for k in 0..3_000 {
        cache.insert(k, value_of(k));
    }
    // A new key, and a replacement of a present one: both weigh 0 and panic.
    for k in [1_000_000u64, 2_999] {
        let r = catch_unwind(AssertUnwindSafe(|| cache.insert(k, 0)));
        assert!(r.is_err(), "the weigher's panic reaches the caller");
    }
    still_whole(&cache);
}

#[test]
fn a_panicking_expiry_rule_leaves_the_cache_whole() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(2_000)
        .shards(4)
        .weigher(|_, v: &u64| weight(*v))
        .expire_after(|k: &u64, _| {
            assert_ne!(*k, u64::MAX, "rule refuses the key");
            Some(Duration::from_secs(3600))
        })
        .build()
        .expect("valid");
    for k in 0..3_000 {
        cache.insert(k, value_of(k));
    }
    let r = catch_unwind(AssertUnwindSafe(|| cache.insert(u64::MAX, 1)));
    assert!(r.is_err());
    still_whole(&cache);
}

#[test]
fn a_panicking_eviction_listener_leaves_the_cache_whole() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(500)
        .shards(4)
        .weigher(|_, v: &u64| weight(*v))
        .eviction_listener(|k: u64, _, _| assert_ne!(k % 97, 0, "listener fails"))
        .build()
        .expect("valid");
    let mut panics = 0;
    for k in 0..5_000u64 {
        if catch_unwind(AssertUnwindSafe(|| cache.insert(k, value_of(k)))).is_err() {
            panics += 1;
        }
    }
    assert!(panics > 0, "the listener never failed: nothing was tested");
    let c = cache.clone();
    within_seconds(move || {
        // The workers' own evictions may hit the failing listener too.
        let r = catch_unwind(AssertUnwindSafe(|| use_after(&c)));
        drop(r);
        for k in 0..3_000u64 {
            let _ = catch_unwind(AssertUnwindSafe(|| c.insert(k, value_of(k))));
        }
        assert!(c.weighted_size() <= 500);
        let summed: u64 = c.iter().map(|(_, v)| u64::from(weight(v))).sum();
        assert_eq!(c.weighted_size(), summed, "weighed size drifted");
    });
}

#[test]
fn an_entry_counts_the_weight_it_was_written_with() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    // A weigher whose answer changes while entries are cached: a value
    // with interior mutability, or a setting read at each call.
    let scale = Arc::new(AtomicU32::new(1));
    let s = scale.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .shards(2)
        .weigher(move |_, _| s.load(Ordering::Relaxed))
        .build()
        .expect("valid");
    for k in 0..100 {
        cache.insert(k, k);
    }
    assert_eq!(cache.weighted_size(), 100);
    scale.store(3, Ordering::Relaxed);
    for k in 0..50 {
        cache.remove(&k);
    }
    assert_eq!(cache.weighted_size(), 50, "each removal gives back 1");
    cache.insert(50, 50);
    assert_eq!(
        cache.weighted_size(),
        52,
        "a replacement counts its new weight"
    );
    scale.store(0, Ordering::Relaxed);
    for k in 50..100 {
        cache.remove(&k);
    }
    assert_eq!(cache.weighted_size(), 0);
    assert!(cache.is_empty());
    scale.store(1, Ordering::Relaxed);
    for k in 1_000..3_000 {
        cache.insert(k, k);
    }
    assert_eq!(cache.weighted_size(), 1_000);
    assert_eq!(cache.len(), 1_000, "the cache still fills to its capacity");
}

#[test]
fn a_call_back_into_the_cache_from_compute_panics_instead_of_hanging() {
    // One shard: every key is in the shard the closure holds.
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .build()
        .expect("valid");
    cache.insert(1, 1);
    let c = cache.clone();
    let outcomes = within_seconds(move || {
        (0..3)
            .map(|which| {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    c.compute(1, |cur| {
                        match which {
                            0 => assert_eq!(c.get(&2), None),
                            1 => c.insert(2, 2),
                            _ => {
                                let _ = c.compute(3, |_| (Decision::<u64>::Nothing, ()));
                            }
                        }
                        (
                            Decision::Put(cur.map_or(0, |e| *e.value) + 1, Ttl::Keep),
                            (),
                        )
                    })
                }));
                r.err()
                    .and_then(|e| e.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    });
    for message in outcomes {
        assert!(message.contains("would wait for itself"), "{message:?}");
    }
    // Nothing was applied, and the cache works on.
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&2), None);
    let c = cache.clone();
    within_seconds(move || {
        for k in 0..1_000 {
            c.insert(k, k);
        }
        assert_eq!(c.len(), 100);
    });
}

#[test]
fn panics_in_user_code_leave_the_log_in_step_with_the_cache() {
    use shardcache::persist::{FileLog, Fsync, MemStorage};
    use std::collections::BTreeMap;
    // Room for every key, so that the reload's contents are the log's.
    let open = |storage: &MemStorage, failing: bool| -> Cache<u64, u64> {
        let mut b = Cache::builder().max_capacity(10_000).shards(4);
        if failing {
            b = b.eviction_listener(|k: u64, _, _| assert_ne!(k % 13, 0, "listener fails"));
        }
        b.weigher(|_, v: &u64| weight(*v))
            .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
            .expect("load")
            .0
    };
    let storage = MemStorage::new();
    let before: BTreeMap<u64, u64> = {
        let c = open(&storage, true);
        let mut x = 1u64;
        let mut panics = 0;
        for i in 0..5_000u64 {
            let k = next(&mut x) % 600;
            let r = catch_unwind(AssertUnwindSafe(|| match i % 5 {
                // The weigher refuses 0.
                0 => c.insert(k, 0),
                1 => {
                    let _ = c.compute(k, |cur| {
                        assert_ne!(k % 3, 0, "closure fails");
                        (
                            Decision::Put(cur.map_or(1, |e| *e.value) + 2, Ttl::Keep),
                            (),
                        )
                    });
                }
                // The listener fails on some removals.
                2 => drop(c.remove(&k)),
                _ => c.insert(k, value_of(k)),
            }));
            panics += usize::from(r.is_err());
        }
        assert!(panics > 500, "only {panics} panics: little was tested");
        c.sync().expect("the log kept every write");
        c.iter().collect()
    };
    let after: BTreeMap<u64, u64> = open(&storage, false).iter().collect();
    assert_eq!(before, after);
}

#[test]
fn a_panicking_retain_predicate_leaves_the_cache_whole() {
    // Room for all 1,000 (at most 8 each).
    let cache = weighted(10_000);
    for k in 0..1_000 {
        cache.insert(k, value_of(k));
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.retain(|k, _| {
            assert_ne!(*k, 500, "predicate fails");
            k % 2 == 0
        });
    }));
    assert!(r.is_err());
    // The sweep stops at the panic (odd keys of shards not swept yet stay);
    // every key it was to keep is there.
    for k in (0..1_000).step_by(2) {
        assert_eq!(cache.get(&k), Some(value_of(k)));
    }
    still_whole(&cache);
}

#[test]
fn a_listener_told_of_an_undone_write_may_call_sync_and_is_told_to_wait() {
    use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage, PersistError};
    use shardcache::RemovalCause;
    use std::sync::{Arc, Mutex, OnceLock};
    type Handle = shardcache::PersistentCache<u64, u64>;
    let handle: Arc<OnceLock<Handle>> = Arc::new(OnceLock::new());
    let answers = Arc::new(Mutex::new(Vec::new()));
    let (h, a) = (handle.clone(), answers.clone());
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    let (cache, _) = Cache::<u64, u64>::builder()
        .max_capacity(100)
        .eviction_listener(move |k, v, cause| {
            if let Some(c) = h.get() {
                // What a write undone after a failed fsync gives back.
                a.lock()
                    .expect("not poisoned")
                    .push(((k, v, cause), c.sync(), c.rewrite_log()));
            }
        })
        .open_persistent(log)
        .expect("load");
    let _ = handle.set(cache.clone());
    cache.insert(1, 10).expect("healthy");
    storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
    let c = cache.clone();
    let refused = within_seconds(move || c.insert(1, 11).is_err());
    assert!(refused, "the fsync failed");
    assert_eq!(cache.get(&1), Some(10), "the write is undone");
    let answers = std::mem::take(&mut *answers.lock().expect("not poisoned"));
    // The undo's notice comes first.
    let ((k, v, cause), sync, rewrite) = &answers[0];
    assert_eq!((*k, *v, *cause), (1, 11, RemovalCause::Replaced));
    assert!(
        matches!(sync, Err(PersistError::InCallback { call: "sync", .. })),
        "{sync:?}"
    );
    assert!(
        matches!(
            rewrite,
            Err(PersistError::InCallback {
                call: "rewrite_log",
                ..
            })
        ),
        "{rewrite:?}"
    );
    // Once the listener has returned, the same calls work.
    storage.heal();
    let _ = cache.sync();
    cache.sync().expect("repaired");
    cache.insert(1, 12).expect("writes resume");
    assert_eq!(cache.get(&1), Some(12));
}

#[test]
fn a_write_the_log_failed_to_keep_notifies_only_what_left() {
    use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage};
    use shardcache::RemovalCause;
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    let (cache, _) = Cache::<u64, u64>::builder()
        .max_capacity(100)
        .eviction_listener(move |k, v, cause| s.lock().expect("not poisoned").push((k, v, cause)))
        .open_persistent(log)
        .expect("load");
    cache.insert(1, 10).expect("healthy");
    cache.insert(2, 20).expect("healthy");
    let take = || std::mem::take(&mut *seen.lock().expect("not poisoned"));
    type Write = Box<dyn Fn(&shardcache::PersistentCache<u64, u64>) -> bool>;
    type Notices = Vec<(u64, u64, RemovalCause)>;
    let writes: [(&str, Write, Notices); 3] = [
        // 11 replaced 10, and the undo replaced 11 by 10 again: only 11 left.
        (
            "insert",
            Box::new(|c| c.insert(1, 11).is_err()),
            vec![(1, 11, RemovalCause::Replaced)],
        ),
        (
            "compute put",
            Box::new(|c| {
                c.compute(1, |_| (Decision::Put(12, Ttl::Keep), ()))
                    .is_err()
            }),
            vec![(1, 12, RemovalCause::Replaced)],
        ),
        // The undo puts 20 back: nothing left.
        (
            "compute remove",
            Box::new(|c| c.compute(2, |_| (Decision::<u64>::Remove, ())).is_err()),
            vec![],
        ),
    ];
    for (what, write, expected) in writes {
        storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
        assert!(write(&cache), "{what}: the fsync failed");
        assert_eq!(cache.get(&1), Some(10), "{what}: undone");
        assert_eq!(cache.get(&2), Some(20), "{what}: undone");
        assert_eq!(take(), expected, "{what}");
        storage.heal();
        let _ = cache.sync();
        cache.sync().expect("repaired");
        assert_eq!(take(), vec![], "{what}: the repair notifies nothing");
    }
}
