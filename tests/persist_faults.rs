//! Fault injection through the `Storage` seam, checked against a model.
//!
//! A fixed workload of inserts, removals, read-modify-writes and TTL changes
//! runs on a persistent cache while the storage fails one call (a full disk
//! or an I/O error, on a write or on an fsync, at every call index in turn,
//! once or for good), tears a write, or loses power after a failed fsync.
//! After each write the model holds what was acknowledged; then the process
//! "crashes" and the log is reloaded. The rules:
//!
//! - nothing acknowledged is lost, no acknowledged removal is undone;
//! - nothing refused is present, in memory at once or after the reload,
//!   unless the error said its outcome is unknown;
//! - the cache in memory always equals the model.

use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage, PersistError};
use shardcache::Cache;
use shardcache::{Decision, Ttl};
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::time::Duration;

const KEYS: u32 = 6;
const OPS: u32 = 48;

fn open(storage: &MemStorage, fsync: Fsync) -> Cache<u32, u64> {
    let log = FileLog::with_storage(storage.clone(), fsync).write_delay(Duration::ZERO);
    Cache::builder()
        .max_capacity(1_000)
        .build_persistent(log)
        .expect("the log loads")
        .0
}

/// Operation `i` of the workload, applied to the cache; its effect on the
/// model if acknowledged.
fn step(cache: &Cache<u32, u64>, i: u32, model: &BTreeMap<u32, u64>) -> (u32, Option<u64>) {
    let key = (i * 7) % KEYS;
    let value = u64::from(i) * 1000 + u64::from(key);
    match i % 5 {
        0 | 1 => {
            cache.insert(key, value);
            (key, Some(value))
        }
        2 => {
            cache.remove(&key);
            (key, None)
        }
        3 => {
            let next = model.get(&key).map_or(1, |v| v + 1);
            let _ = cache.compute(key, |cur| {
                let n = cur.map_or(1, |c| c.value + 1);
                (Decision::Put(n, Ttl::Keep), ())
            });
            (key, Some(next))
        }
        _ => {
            // A TTL far away: changes the record, not the value.
            cache.set_ttl(&key, Some(Duration::from_secs(3_600)));
            (key, model.get(&key).copied())
        }
    }
}

/// Runs the workload with `inject` applied before the first operation;
/// heals half-way and repairs. Returns the model and the keys whose last
/// refused write has an unknown outcome.
fn run(
    storage: &MemStorage,
    cache: &Cache<u32, u64>,
    heal_at: u32,
) -> (BTreeMap<u32, u64>, BTreeSet<u32>, u32) {
    let mut model = BTreeMap::new();
    let mut unknown = BTreeSet::new();
    let mut refused = 0;
    // What the statistics count: acknowledged inserts, updates, removals.
    let mut counted = (0, 0, 0);
    for i in 0..OPS {
        if i == heal_at {
            storage.heal();
            let _ = cache.sync();
            if cache.sync().is_ok() {
                // Repaired from the cache: the log now holds exactly it.
                unknown.clear();
            }
        }
        let (key, after) = match cache.durably(|| step(cache, i, &model)) {
            Ok(effect) => effect,
            Err(e) => {
                refused += 1;
                if e.to_string().contains("unknown") {
                    unknown.insert((i * 7) % KEYS);
                }
                assert_memory_matches(cache, &model, i);
                continue;
            }
        };
        let present = model.contains_key(&key);
        match (i % 5, present) {
            (0 | 1 | 3, false) => counted.0 += 1,
            (0 | 1 | 3, true) => counted.1 += 1,
            (2, true) => counted.2 += 1,
            _ => {}
        }
        match after {
            Some(v) => model.insert(key, v),
            None => model.remove(&key),
        };
        unknown.remove(&key);
        assert_memory_matches(cache, &model, i);
        let stats = cache.stats();
        assert_eq!(
            (stats.inserts, stats.updates, stats.removals),
            counted,
            "inserts, updates and removals acknowledged after op {i}"
        );
    }
    (model, unknown, refused)
}

fn assert_memory_matches(cache: &Cache<u32, u64>, model: &BTreeMap<u32, u64>, i: u32) {
    for k in 0..KEYS {
        assert_eq!(
            cache.get(&k),
            model.get(&k).copied(),
            "key {k} in memory after op {i}"
        );
    }
}

fn assert_reload_matches(
    storage: &MemStorage,
    model: &BTreeMap<u32, u64>,
    unknown: &BTreeSet<u32>,
    what: &str,
) {
    let cache = open(storage, Fsync::Always);
    for k in (0..KEYS).filter(|k| !unknown.contains(k)) {
        assert_eq!(
            cache.get(&k),
            model.get(&k).copied(),
            "key {k} after the reload ({what})"
        );
    }
}

/// Every fault, at every call index, once or for good, then a crash that
/// keeps none or all of the bytes not known durable.
#[test]
fn always_never_loses_an_acknowledged_write_nor_keeps_a_refused_one() {
    let mut refusals = 0;
    for on in [FaultOn::Append, FaultOn::Sync] {
        for kind in [ErrorKind::StorageFull, ErrorKind::Other] {
            for sticky in [false, true] {
                for at in 0..(OPS as u64 + 2) {
                    for keep in [0, usize::MAX] {
                        let storage = MemStorage::new();
                        let cache = open(&storage, Fsync::Always);
                        storage.inject(on, at, kind, sticky);
                        let (model, unknown, refused) = run(&storage, &cache, OPS * 3 / 4);
                        refusals += refused;
                        drop(cache);
                        storage.power_loss(keep);
                        let what = format!("{kind:?} on {on:?} at call {at}, sticky {sticky}");
                        assert_reload_matches(&storage, &model, &unknown, &what);
                    }
                }
            }
        }
    }
    assert!(refusals > 0, "the faults were hit");
}

/// A write cut short at every length, then a crash.
#[test]
fn a_torn_write_is_refused_and_never_reappears() {
    for keep_bytes in 0..24 {
        for at in [0, 5, 17] {
            let storage = MemStorage::new();
            let cache = open(&storage, Fsync::Always);
            let mut model = BTreeMap::new();
            for i in 0..at {
                let (k, v) = cache.durably(|| step(&cache, i, &model)).expect("healthy");
                match v {
                    Some(v) => model.insert(k, v),
                    None => model.remove(&k),
                };
            }
            storage.tear_next_append(keep_bytes);
            let result = cache.durably(|| step(&cache, at, &model));
            assert!(result.is_err() || at % 5 == 4, "a torn write is refused");
            assert_memory_matches(&cache, &model, at);
            drop(cache);
            storage.power_loss(usize::MAX);
            assert_reload_matches(&storage, &model, &BTreeSet::new(), "torn write");
        }
    }
}

/// Two threads write while the storage fails for good at some point: every
/// write either returned `Ok` (and is in the reloaded log) or an error (and
/// is not in memory nor in the log).
#[test]
fn concurrent_writers_see_every_failure_that_touches_them() {
    for at in [3, 10, 25, 60] {
        let storage = MemStorage::new();
        let cache = open(&storage, Fsync::Always);
        storage.inject(FaultOn::Sync, at, ErrorKind::Other, true);
        let outcomes: Vec<Vec<(u32, bool)>> = std::thread::scope(|s| {
            (0..2u32)
                .map(|t| {
                    let cache = cache.clone();
                    s.spawn(move || {
                        (0..40u32)
                            .map(|i| {
                                let key = t * 1000 + i;
                                let ok = cache.durably(|| cache.insert(key, 1)).is_ok();
                                (key, ok)
                            })
                            .collect()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .collect()
        });
        for &(key, ok) in outcomes.iter().flatten() {
            assert_eq!(cache.get(&key).is_some(), ok, "key {key} in memory");
        }
        drop(cache);
        storage.power_loss(usize::MAX);
        let cache = open(&storage, Fsync::Always);
        for &(key, ok) in outcomes.iter().flatten() {
            assert_eq!(cache.get(&key).is_some(), ok, "key {key} after reload");
        }
    }
}

/// `EverySecond` and `Never`: a background failure makes later writes fail
/// (not apply) until the log is repaired; acknowledged writes survive the
/// repair and a clean restart.
#[test]
fn buffered_logs_refuse_writes_after_a_failure_until_repaired() {
    for fsync in [Fsync::EverySecond, Fsync::Never] {
        let storage = MemStorage::new();
        let cache = open(&storage, fsync);
        cache.insert(1, 1);
        storage.inject(FaultOn::Append, 0, ErrorKind::StorageFull, true);
        // With no write delay this write's own record is the one that
        // failed: not acknowledged, but applied, so it stays in memory and
        // the repair logs it.
        let failed = cache.durably(|| cache.insert(2, 2));
        assert!(failed.is_err(), "{fsync:?}: {failed:?}");
        assert!(
            failed.is_err_and(|e| e.to_string().contains("stay in memory")),
            "the error says what became of the write"
        );
        assert_eq!(cache.get(&2), Some(2));
        let refused = cache.durably(|| cache.insert(3, 3));
        assert!(
            matches!(refused, Err(PersistError::Refused { .. })),
            "{refused:?}"
        );
        assert_eq!(cache.get(&3), None, "a refused write is not applied");
        assert_eq!(cache.get(&1), Some(1), "reads go on");
        assert!(cache.sync().is_err(), "the disk is still full");
        storage.heal();
        let _ = cache.sync();
        cache.sync().expect("repaired");
        cache.durably(|| cache.insert(4, 4)).expect("writes resume");
        let in_memory: BTreeMap<u32, u64> = cache.iter().collect();
        // A process crash: what was handed to the OS stays.
        drop(cache);
        storage.power_loss(usize::MAX);
        let reloaded: BTreeMap<u32, u64> = open(&storage, fsync).iter().collect();
        assert_eq!(reloaded, in_memory, "{fsync:?}");
        assert!(!reloaded.contains_key(&3));
    }
}

/// A failed fsync is never retried: the records it covered are cut (their
/// writes refused), so a crash that kept the page cache's bytes after all
/// still does not bring them back.
#[test]
fn a_failed_fsync_is_not_retried_and_its_records_are_cut() {
    let storage = MemStorage::new();
    let cache = open(&storage, Fsync::Always);
    cache.durably(|| cache.insert(1, 1)).expect("healthy");
    let before = storage.synced_len();
    storage.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
    assert!(cache.durably(|| cache.insert(2, 2)).is_err());
    assert_eq!(storage.len(), before, "the unsynced record was cut");
    // The next sync would succeed, but the log does not trust it: refused
    // until repaired.
    assert!(matches!(
        cache.durably(|| cache.insert(3, 3)),
        Err(PersistError::Refused { .. })
    ));
    drop(cache);
    storage.power_loss(usize::MAX);
    let cache = open(&storage, Fsync::Always);
    assert_eq!(
        (cache.get(&1), cache.get(&2), cache.get(&3)),
        (Some(1), None, None)
    );
}

/// The `PersistentCache` handle: each write's own result says whether it was
/// kept, at every failure point.
#[test]
fn persistent_cache_writes_return_their_own_failure() {
    use shardcache::{PersistentCache, WriteError};
    let open = |storage: &MemStorage| -> PersistentCache<u32, u64> {
        let log = FileLog::with_storage(storage.clone(), Fsync::Always);
        Cache::builder()
            .max_capacity(100)
            .open_persistent(log)
            .expect("loads")
            .0
    };
    for on in [FaultOn::Append, FaultOn::Sync] {
        for at in 0..30 {
            let storage = MemStorage::new();
            let cache = open(&storage);
            storage.inject(on, at, ErrorKind::StorageFull, true);
            let mut model = BTreeMap::new();
            for i in 0..30u32 {
                let key = i % 7;
                if i % 3 == 2 {
                    match cache.remove(&key) {
                        Ok(_) => {
                            model.remove(&key);
                        }
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                } else {
                    match cache.insert(key, u64::from(i)) {
                        Ok(()) => {
                            model.insert(key, u64::from(i));
                        }
                        Err(WriteError::Log(_)) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
                assert_memory_matches(cache.cache(), &model, i);
            }
            drop(cache);
            storage.power_loss(usize::MAX);
            let reloaded = open(&storage);
            for k in 0..7 {
                assert_eq!(
                    reloaded.get(&k),
                    model.get(&k).copied(),
                    "{on:?} at {at}: key {k}"
                );
            }
        }
    }
}

/// The statistics count what stands: an insert, update or `compute` that
/// the log refused and the cache undid counts as none of them, and the undo
/// counts as no removal.
#[test]
fn undone_writes_count_in_no_statistic() {
    use shardcache::CacheStats;
    type Write = fn(&Cache<u32, u64>);
    let writes: [(&str, Write); 4] = [
        ("insert of a new key", |c| c.insert(2, 20)),
        ("insert over a key", |c| c.insert(1, 11)),
        ("compute of a new key", |c| {
            let _ = c.compute(2, |_| (Decision::Put(20, Ttl::Keep), ()));
        }),
        ("compute over a key", |c| {
            let _ = c.compute(1, |_| (Decision::Put(11, Ttl::Keep), ()));
        }),
    ];
    let counted = |s: &CacheStats| (s.inserts, s.updates, s.removals, s.evictions);
    for on in [FaultOn::Append, FaultOn::Sync] {
        for (what, write) in writes {
            let storage = MemStorage::new();
            let cache = open(&storage, Fsync::Always);
            cache.insert(1, 10);
            assert!(cache.sync().is_ok());
            let before = cache.stats();
            storage.inject(on, 0, ErrorKind::StorageFull, true);
            write(&cache);
            assert!(cache.sync().is_err(), "{on:?}, {what}: reported");
            assert_eq!(
                (cache.get(&1), cache.get(&2)),
                (Some(10), None),
                "{on:?}, {what}"
            );
            assert_eq!(counted(&cache.stats()), counted(&before), "{on:?}, {what}");
        }
    }
}
