//! PermissionCache: single-flight loads (threads and async tasks), per-subject
//! and per-resource invalidation through the secondary index, invalidation
//! racing with loads, index bounds, negative TTLs and stats.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::PermissionCache;
use shardcache::adapters::PermissionKey;
use shardcache::MockClock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// The writer side of the invalidation races: `rounds` times, change the
/// "database" (a new version), invalidate subject "hot", then publish the
/// version as invalidated.
fn change_and_invalidate(
    perms: &PermissionCache<u64>,
    db_version: &AtomicU64,
    invalidated: &AtomicU64,
    rounds: usize,
) {
    for _ in 0..rounds {
        let v = db_version.fetch_add(1, Ordering::SeqCst) + 1;
        perms.invalidate_subject("hot");
        invalidated.store(v, Ordering::SeqCst);
        thread::yield_now();
    }
}

fn key(user: &str, doc: u32, action: &str) -> PermissionKey {
    PermissionKey::new(user, "doc", doc.to_string(), action)
}

#[test]
fn hundred_threads_missing_one_key_run_one_load() {
    let perms: PermissionCache<bool> = PermissionCache::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (perms, loads, barrier) = (perms.clone(), loads.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                perms.check(&key("u1", 1, "read"), || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(50));
                    true
                })
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let stats = perms.stats();
    assert_eq!(stats.loads, 1);
    assert!(stats.total_load_time >= Duration::from_millis(50));
    assert!(stats.mean_load_time() >= Duration::from_millis(50));
}

#[test]
fn hundred_async_tasks_missing_one_key_run_one_load() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let perms: PermissionCache<bool> = PermissionCache::new();
    let loads = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (perms, loads) = (perms.clone(), loads.clone());
                tokio::spawn(async move {
                    perms
                        .check_async(&key("u1", 1, "read"), async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            true
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
    });
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[test]
fn errors_are_shared_and_not_cached() {
    let perms: PermissionCache<bool> = PermissionCache::new();
    let k = key("u1", 1, "read");
    assert_eq!(
        *perms.try_check(&k, || Err::<bool, _>("down")).unwrap_err(),
        "down"
    );
    assert_eq!(perms.get(&k), None);
    assert_eq!(perms.try_check(&k, || Ok::<_, &str>(true)), Ok(true));
    let stats = perms.stats();
    assert_eq!((stats.loads, stats.load_errors), (2, 1));
}

#[test]
fn invalidation_by_subject_and_resource_drops_exactly_the_matching_entries() {
    let perms: PermissionCache<bool> = PermissionCache::new();
    for user in ["ann", "bob", "cid"] {
        for doc in 0..10 {
            for action in ["read", "edit"] {
                perms.check(&key(user, doc, action), || true);
            }
        }
    }
    assert_eq!(perms.len(), 60);
    assert_eq!(perms.invalidate_subject("bob"), 20);
    assert_eq!(perms.len(), 40);
    assert_eq!(perms.invalidate_subject("bob"), 0);
    assert_eq!(perms.invalidate_resource("doc", "3"), 4); // ann and cid, read and edit
    assert_eq!(perms.len(), 36);
    assert!(perms.get(&key("ann", 3, "read")).is_none());
    assert!(perms.get(&key("ann", 4, "read")).is_some());
    assert!(perms.get(&key("bob", 4, "read")).is_none());
    assert!(perms.invalidate(&key("cid", 9, "edit")));
    assert!(!perms.invalidate(&key("cid", 9, "edit")));
    perms.validate_index().unwrap();
    perms.invalidate_all();
    assert!(perms.is_empty());
    assert_eq!(perms.stats().indexed_subjects, 0);
    perms.validate_index().unwrap();
}

/// A load that read the database before a revoke must not be cached by an
/// invalidation that ran while it was loading, and a caller waiting on that
/// load must load again.
#[test]
fn a_load_overlapping_an_invalidation_is_not_cached_and_waiters_reload() {
    let perms: PermissionCache<&'static str> = PermissionCache::new();
    let k = key("u1", 1, "read");
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let leader = {
        let (perms, k) = (perms.clone(), k.clone());
        thread::spawn(move || {
            perms.check(&k, move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                "stale allow"
            })
        })
    };
    started_rx.recv().unwrap();
    let waiter = {
        let (perms, k) = (perms.clone(), k.clone());
        thread::spawn(move || perms.check(&k, || "fresh deny"))
    };
    thread::sleep(Duration::from_millis(50)); // let the waiter join the flight
    assert_eq!(perms.invalidate_subject("u1"), 0); // nothing cached yet
    release_tx.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), "stale allow"); // its request began before the revoke
    assert_eq!(waiter.join().unwrap(), "fresh deny");
    assert_eq!(perms.get(&k), Some("fresh deny"));
    assert_eq!(perms.stats().loads, 2);
}

/// The linearizability claim, hammered: once `invalidate_subject` returns,
/// no check starting afterwards sees a decision loaded before it.
#[test]
fn no_check_sees_a_decision_older_than_a_completed_invalidation() {
    let perms: PermissionCache<u64> = PermissionCache::builder().max_capacity(64).build().unwrap();
    let db_version = Arc::new(AtomicU64::new(0));
    let invalidated = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let (perms, db, inv, stop) = (
                perms.clone(),
                db_version.clone(),
                invalidated.clone(),
                stop.clone(),
            );
            thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    // Few hot keys, so that checks often join a load in flight.
                    let (user, doc) = if i % 2 == 0 {
                        ("hot", i % 3)
                    } else {
                        ("other", i % 40)
                    };
                    let floor = inv.load(Ordering::SeqCst);
                    let seen = perms.check(&key(user, doc as u32, "read"), || {
                        let v = db.load(Ordering::SeqCst);
                        thread::yield_now();
                        v
                    });
                    if user == "hot" {
                        assert!(
                            seen >= floor,
                            "saw version {seen} after invalidation {floor}"
                        );
                    }
                }
            })
        })
        .collect();
    change_and_invalidate(&perms, &db_version, &invalidated, 5_000);
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    perms.validate_index().unwrap();
}

#[test]
fn the_index_follows_evictions_and_expiry() {
    let clock = MockClock::new();
    let perms: PermissionCache<bool> = PermissionCache::builder()
        .max_capacity(100)
        .ttl(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    for user in 0..500 {
        perms.check(&key(&format!("user{user}"), 1, "read"), || true);
    }
    perms.validate_index().unwrap();
    assert!(perms.len() <= 100);
    assert!(perms.stats().indexed_subjects <= 100);
    clock.advance(Duration::from_secs(61));
    assert_eq!(perms.get(&key("user499", 1, "read")), None);
    perms.check(&key("late", 1, "read"), || true);
    perms.invalidate_subject("nobody"); // drains removal reports
    let stats = perms.stats();
    assert!(stats.indexed_subjects <= 101, "{stats:?}");
    perms.validate_index().unwrap();
}

#[test]
fn negative_decisions_use_their_own_ttl() {
    let clock = MockClock::new();
    let perms: PermissionCache<bool> = PermissionCache::builder()
        .negative_ttl(Duration::from_secs(5), |allowed| !allowed)
        .clock(clock.clone())
        .build()
        .unwrap();
    perms.check(&key("u", 1, "read"), || true);
    perms.check(&key("u", 2, "read"), || false);
    clock.advance(Duration::from_secs(5));
    assert_eq!(perms.get(&key("u", 1, "read")), Some(true));
    assert_eq!(perms.get(&key("u", 2, "read")), None);
    clock.advance(Duration::from_secs(295));
    assert_eq!(perms.get(&key("u", 1, "read")), None);
}

#[test]
fn bad_settings_are_errors() {
    use shardcache::BuildError;
    let zero = PermissionCache::<bool>::builder().max_capacity(0).build();
    assert_eq!(zero.err(), Some(BuildError::ZeroCapacity));
    let ttl = PermissionCache::<bool>::builder()
        .ttl(Duration::ZERO)
        .build();
    assert_eq!(ttl.err(), Some(BuildError::ZeroDuration("time_to_live")));
    let neg = PermissionCache::<bool>::builder()
        .negative_ttl(Duration::ZERO, |d| !d)
        .build();
    assert_eq!(neg.err(), Some(BuildError::ZeroDuration("negative_ttl")));
}

#[test]
fn stats_count_hits_and_misses() {
    let perms: PermissionCache<bool> = PermissionCache::new();
    let k = key("u", 1, "read");
    perms.check(&k, || true);
    for _ in 0..9 {
        perms.check(&k, || unreachable!());
    }
    let s = perms.stats();
    assert_eq!((s.hits, s.misses, s.loads), (9, 1, 1));
    assert!((s.hit_ratio() - 0.9).abs() < 1e-9);
}

#[test]
fn async_errors_are_shared_and_not_cached() {
    let perms: PermissionCache<bool> = PermissionCache::new();
    let k = key("u1", 1, "read");
    futures::executor::block_on(async {
        let err = perms
            .try_check_async(&k, async { Err::<bool, _>("down") })
            .await
            .unwrap_err();
        assert_eq!(*err, "down");
        assert_eq!(perms.get(&k), None);
        let ok = perms
            .try_check_async(&k, async { Ok::<_, &str>(true) })
            .await;
        assert_eq!(ok, Ok(true));
        assert_eq!(perms.get(&k), Some(true));
    });
}

/// A panicking `negative_ttl` predicate reaches the loading caller, and
/// neither wedges the key nor the index: the next check loads again.
#[test]
fn a_panic_while_storing_does_not_wedge_the_key() {
    let perms: PermissionCache<u8> = PermissionCache::builder()
        .negative_ttl(Duration::from_secs(1), |d| {
            assert!(*d != 13, "unlucky decision");
            false
        })
        .build()
        .unwrap();
    let k = key("u", 1, "read");
    let p = perms.clone();
    let k2 = k.clone();
    assert!(thread::spawn(move || p.check(&k2, || 13)).join().is_err());
    assert_eq!(perms.check(&k, || 1), 1);
    perms.validate_index().unwrap();
}

#[test]
fn keys_compare_by_their_parts_not_their_concatenation() {
    let a = PermissionKey::new("ab", "c", "1", "read");
    let b = PermissionKey::new("a", "bc", "1", "read");
    assert_ne!(a, b);
    assert_eq!(a, PermissionKey::new(String::from("ab"), "c", "1", "read"));
    assert_eq!(
        (b.subject(), b.resource(), b.action()),
        ("a", ("bc", "1"), "read")
    );
    let empty = PermissionKey::new("", "", "", "");
    assert_eq!(
        (empty.subject(), empty.resource(), empty.action()),
        ("", ("", ""), "")
    );
    assert_eq!(format!("{a:?}"), "perm:c:1:ab:read");
    let perms: PermissionCache<u8> = PermissionCache::new();
    perms.check(&a, || 1);
    perms.check(&b, || 2);
    assert_eq!(perms.invalidate_subject("a"), 1);
    assert_eq!(perms.get(&a), Some(1));
}

/// The same claim for async checks: tasks on a 2-thread runtime, loads
/// that yield mid-way, invalidations from another thread.
#[test]
fn async_checks_never_see_a_decision_older_than_a_completed_invalidation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let perms: PermissionCache<u64> = PermissionCache::new();
    let db_version = Arc::new(AtomicU64::new(0));
    let invalidated = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8u32)
        .map(|t| {
            let (perms, db, inv, stop) = (
                perms.clone(),
                db_version.clone(),
                invalidated.clone(),
                stop.clone(),
            );
            rt.spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let floor = inv.load(Ordering::SeqCst);
                    let seen = perms
                        .check_async(&key("hot", i % 3, "read"), async {
                            let v = db.load(Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            v
                        })
                        .await;
                    assert!(
                        seen >= floor,
                        "saw version {seen} after invalidation {floor}"
                    );
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    change_and_invalidate(&perms, &db_version, &invalidated, 2_000);
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    perms.validate_index().unwrap();
}

/// A load whose answer is not cached (more invalidations than the ring
/// remembers ran meanwhile) still retires an allow kept past its freshness:
/// the source answered "deny" after it, so an outage right after must not
/// serve the old allow.
#[test]
fn an_uncached_answer_retires_a_kept_stale_allow() {
    let clock = MockClock::new();
    let perms = PermissionCache::<bool>::builder()
        .ttl(Duration::from_secs(60))
        .stale_allow_if_error(Duration::from_secs(30), |a| *a)
        .clock(clock.clone())
        .build()
        .unwrap();
    let k = PermissionKey::new("u", "doc", "1", "read");
    assert!(perms.check(&k, || true));
    clock.advance(Duration::from_secs(61));
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (p2, k2) = (perms.clone(), k.clone());
    let h = thread::spawn(move || {
        p2.try_check(&k2, || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            Ok::<bool, &str>(false)
        })
    });
    started_rx.recv().unwrap();
    for i in 0..1100 {
        perms.invalidate_subject(&format!("other{i}"));
    }
    go_tx.send(()).unwrap();
    assert_eq!(h.join().unwrap(), Ok(false));
    assert!(perms.try_check(&k, || Err::<bool, _>("down")).is_err());
}

/// `insert` of a decision while a load of the key is running: the load,
/// which asked the source before the decision, is not cached over it.
#[test]
fn insert_is_not_overwritten_by_a_load_that_began_before_it() {
    let perms = PermissionCache::<bool>::new();
    let k = PermissionKey::new("u", "doc", "1", "read");
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (p2, k2) = (perms.clone(), k.clone());
    let h = thread::spawn(move || {
        p2.check(&k2, || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            true
        })
    });
    started_rx.recv().unwrap();
    perms.insert(k.clone(), false);
    go_tx.send(()).unwrap();
    let _ = h.join().unwrap();
    assert_eq!(perms.get(&k), Some(false));
}
