//! Cycles of waits that run through a log's rollback, its
//! one-repair-at-a-time lock or its one-rewrite-at-a-time lock, a load's
//! flight and a shard held in a `compute` closure. In each, the wait that
//! closes the cycle is refused (`PersistError::InCallback` from `sync` or
//! `rewrite_log`, or a panic with the cache's message) and every other
//! thread finishes. Every scenario runs under a watchdog, so a deadlock
//! fails the test instead of hanging it.
//!
//! Where a scenario needs a thread to be blocked before the next one
//! moves, it gives it a moment ([`SETTLE`]); if that thread is late, the
//! cycle closes at another of its waits, which the assertions accept.

use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage, PersistError};
use shardcache::{Cache, Decision, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

#[path = "support/watchdog.rs"]
mod watchdog;
use watchdog::{bounded, message};
#[allow(dead_code)] // not every part of the gate is used here
#[path = "support/gated_storage.rs"]
mod gated_storage;
use gated_storage::{Gate, GatedStorage, ReleaseOnDrop, Step};
#[path = "support/shard_keys.rs"]
mod shard_keys;
use shard_keys::{keys_on_distinct_shards, same_shard};

type C = Cache<u64, u64>;

/// What the cache's cycle messages (shard and load) both say.
const CYCLE: &str = "cycle";

/// How long a scenario lets a thread reach its wait before the next step.
const SETTLE: Duration = Duration::from_millis(300);

/// How long a thread waits for the test's signal before going on anyway.
const GIVE_UP: Duration = Duration::from_secs(20);

/// A cache of `shards` shards on a log that fsyncs every write, with
/// `listener` if given; and the log's storage.
fn persistent(shards: usize, listener: Option<Box<dyn Fn(u64) + Send + Sync>>) -> (C, MemStorage) {
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always).write_delay(Duration::ZERO);
    let mut builder = Cache::builder().max_capacity(100).shards(shards);
    if let Some(listener) = listener {
        builder = builder.eviction_listener(move |k, _, _| listener(k));
    }
    let cache = builder.build_persistent(log).expect("the log loads").0;
    (cache, storage)
}

/// Fails `c`'s log with a write whose fsync fails (the write is undone on
/// this thread), then heals the disk: the log stays failed until a repair.
fn fail_log(c: &C, storage: &MemStorage, key: u64) {
    storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
    assert!(c.durably(|| c.insert(key, 1)).is_err(), "the fsync failed");
    storage.heal();
}

/// Whether `outcome` is a cycle refusal: a panic saying so, or `sync`'s
/// `InCallback`.
fn refused(outcome: &Result<Result<(), PersistError>, String>) -> bool {
    match outcome {
        Err(panic) => panic.contains(CYCLE),
        Ok(Err(PersistError::InCallback { call: "sync", .. })) => true,
        Ok(_) => false,
    }
}

/// A rollback's listener waits for a load; the load's loader syncs, and
/// waits for the repair lock; the repair holding it waits for the
/// rollback. The loader's `sync` closes the cycle and is refused.
#[test]
fn a_loader_syncing_while_the_repair_waits_for_a_rollback_waiting_for_its_load() {
    let handle: Arc<OnceLock<C>> = Arc::new(OnceLock::new());
    let (told_tx, told_rx) = mpsc::channel::<()>();
    let told_tx = Mutex::new(Some(told_tx));
    let heard: Arc<Mutex<Option<Result<u64, String>>>> = Arc::new(Mutex::new(None));
    let (h, seen) = (handle.clone(), heard.clone());
    let (cache, storage) = persistent(
        4,
        Some(Box::new(move |_| {
            // Once, on the undo: tells the test, then waits for the load.
            let Some(tx) = told_tx.lock().expect("not poisoned").take() else {
                return;
            };
            let _ = tx.send(());
            let c = h.get().expect("set");
            let r = catch_unwind(AssertUnwindSafe(|| c.get_or_insert_with(99, || 0)));
            *seen.lock().expect("not poisoned") = Some(r.map_err(|p| message(&*p)));
        })),
    );
    let _ = handle.set(cache.clone());
    cache.insert(1, 1);
    let outcome = bounded(30, move || {
        let (leading_tx, leading_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let c = cache.clone();
        let loader = std::thread::spawn(move || {
            let mut synced = None;
            let v = c.get_or_insert_with(99, || {
                let _ = leading_tx.send(());
                let _ = go_rx.recv_timeout(GIVE_UP);
                synced = Some(c.sync());
                5
            });
            (v, synced)
        });
        leading_rx.recv().expect("the loader runs");
        storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
        let c = cache.clone();
        let writer = std::thread::spawn(move || c.durably(|| c.insert(1, 11)).is_err());
        told_rx
            .recv_timeout(GIVE_UP)
            .expect("the rollback told the listener");
        let c = cache.clone();
        let repairer = std::thread::spawn(move || c.sync());
        std::thread::sleep(SETTLE); // the repair waits for the rollback
        go_tx.send(()).expect("the loader waits");
        let undone = writer.join().expect("the writer's thread");
        let (v, synced) = loader.join().expect("the loader's thread");
        let repaired = repairer.join().expect("the repairer's thread");
        (cache, storage, undone, v, synced, repaired)
    })
    .expect("a loader, a rollback and a repair waiting for each other hung");
    let (cache, storage, undone, v, synced, repaired) = outcome;
    assert!(undone, "the fsync failed");
    assert_eq!(v, 5);
    match &synced {
        Some(Err(PersistError::InCallback { call: "sync", .. })) => {}
        other => panic!("the loader's sync: {other:?}"),
    }
    assert!(
        !matches!(repaired, Err(PersistError::InCallback { .. })),
        "{repaired:?}"
    );
    let heard = heard.lock().expect("not poisoned").take();
    assert!(matches!(heard, Some(Ok(5))), "{heard:?}");
    assert_eq!(cache.get(&1), Some(1), "the write is undone");
    storage.heal();
    let _ = cache.sync();
    cache.sync().expect("repaired");
    cache.insert(1, 12);
    assert_eq!(cache.get(&1), Some(12));
}

/// A `compute` closure holds shard A and waits for a load; the load's
/// loader syncs, and waits for the repair lock; the repair holding it
/// reads shard A. Exactly one of the three waits is refused.
#[test]
fn a_compute_closure_waiting_for_a_loader_that_syncs_while_the_repair_reads_its_shard() {
    let (cache, storage) = persistent(2, None);
    let keys = keys_on_distinct_shards(&cache, 2);
    let (a, b) = (keys[0], keys[1]);
    let other_b = (0..10_000)
        .find(|&k| k != b && same_shard(&cache, b, k))
        .expect("a second key on b's shard");
    cache.insert(a, 1);
    let outcome = bounded(30, move || {
        let (leading_tx, leading_rx) = mpsc::channel::<()>();
        let (go_load_tx, go_load_rx) = mpsc::channel::<()>();
        let c = cache.clone();
        let loader = std::thread::spawn(move || {
            let mut synced = Ok(());
            let v = catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(b, || {
                    let _ = leading_tx.send(());
                    let _ = go_load_rx.recv_timeout(GIVE_UP);
                    synced = c.sync();
                    5
                })
            }));
            v.map(|_| synced).map_err(|p| message(&*p))
        });
        leading_rx.recv().expect("the loader runs");
        let (holding_tx, holding_rx) = mpsc::channel::<()>();
        let (go_compute_tx, go_compute_rx) = mpsc::channel::<()>();
        let c = cache.clone();
        let computer = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.compute(a, |_| {
                    let _ = holding_tx.send(());
                    let _ = go_compute_rx.recv_timeout(GIVE_UP);
                    let v = c.get_or_insert_with(b, || 0);
                    (Decision::Put(v, Ttl::Keep), ())
                })
            }))
            .map(|_| Ok(()))
            .map_err(|p| message(&*p))
        });
        holding_rx.recv().expect("the closure runs");
        fail_log(&cache, &storage, other_b);
        let c = cache.clone();
        let repairer = std::thread::spawn(move || Ok::<_, String>(c.sync()));
        std::thread::sleep(SETTLE); // the repair reads shard A
        go_load_tx.send(()).expect("the loader waits");
        std::thread::sleep(SETTLE); // the loader waits for the repair lock
        go_compute_tx.send(()).expect("the closure waits");
        let outcomes = [
            computer.join().expect("caught"),
            loader.join().expect("caught"),
            repairer.join().expect("the repairer's thread"),
        ];
        (cache, outcomes)
    })
    .expect("a compute closure, a loader and a repair waiting for each other hung");
    let (cache, outcomes) = outcome;
    let refusals = outcomes.iter().filter(|o| refused(o)).count();
    let others_fine = outcomes
        .iter()
        .all(|o| refused(o) || matches!(o, Ok(Ok(()))));
    assert!(refusals == 1 && others_fine, "{outcomes:?}");
    cache.sync().expect("repaired");
    cache.insert(a, 7);
    assert_eq!(cache.get(&a), Some(7));
}

/// A loader compacts the log, and its snapshot stops (at a gate) before it
/// reads shard A; a `compute` closure holds shard A and waits for that
/// load; then the snapshot reads shard A. That read closes the cycle:
/// `rewrite_log` returns `InCallback`, and both finish.
#[test]
fn a_loader_compacting_the_log_while_a_closure_holding_a_shard_waits_for_its_load() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let gate = Arc::new(Gate::default());
    let storage = GatedStorage::open(&dir.path().join("c.log"), gate.clone()).expect("open");
    let log = FileLog::with_storage(storage, Fsync::Always).write_delay(Duration::ZERO);
    let cache: C = Cache::builder()
        .max_capacity(100)
        .shards(2)
        .build_persistent(log)
        .expect("the log loads")
        .0;
    let keys = keys_on_distinct_shards(&cache, 2);
    let (a, b) = (keys[0], keys[1]);
    cache.insert(a, 1);
    gate.arm(Step::Begin);
    let _release = ReleaseOnDrop(gate.clone());
    let outcomes = bounded(30, move || {
        let (leading_tx, leading_rx) = mpsc::channel::<()>();
        let c = cache.clone();
        let loader = std::thread::spawn(move || {
            let mut rewrote = Ok(());
            let v = c.get_or_insert_with(b, || {
                let _ = leading_tx.send(());
                rewrote = c.rewrite_log();
                5
            });
            (v, rewrote)
        });
        leading_rx.recv().expect("the loader runs");
        assert!(
            gate.wait_reached(GIVE_UP),
            "the compaction stops at its gate"
        );
        let (holding_tx, holding_rx) = mpsc::channel::<()>();
        let c = cache.clone();
        let computer = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.compute(a, |_| {
                    let _ = holding_tx.send(());
                    let v = c.get_or_insert_with(b, || 0);
                    (Decision::Put(v, Ttl::Keep), v)
                })
            }))
            .map(|r| r.expect("no capacity error"))
            .map_err(|p| message(&*p))
        });
        holding_rx.recv().expect("the closure runs");
        std::thread::sleep(SETTLE); // the closure waits for the load
        gate.release();
        (
            loader.join().expect("the loader's thread"),
            computer.join().expect("caught"),
        )
    })
    .expect("a compaction's read and a compute closure waiting for each other hung");
    match outcomes {
        (
            (
                5,
                Err(PersistError::InCallback {
                    call: "rewrite_log",
                    ..
                }),
            ),
            Ok(5),
        ) => {}
        other => panic!("{other:?}"),
    }
}

/// Two loaders compact the log: the first stops (at a gate) before its
/// snapshot, holding the one-rewrite-at-a-time lock, and the second waits
/// for that lock; a `compute` closure holds shard A and waits for the
/// second's load; then the first's snapshot reads shard A. Each
/// `rewrite_log` whose wait closes the cycle returns `InCallback`, and
/// every thread finishes.
#[test]
fn a_compaction_waiting_for_another_whose_read_waits_for_its_load() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let gate = Arc::new(Gate::default());
    let storage = GatedStorage::open(&dir.path().join("c.log"), gate.clone()).expect("open");
    let log = FileLog::with_storage(storage, Fsync::Always).write_delay(Duration::ZERO);
    let cache: C = Cache::builder()
        .max_capacity(100)
        .shards(4)
        .build_persistent(log)
        .expect("the log loads")
        .0;
    let keys = keys_on_distinct_shards(&cache, 3);
    let (a, b, c) = (keys[0], keys[1], keys[2]);
    cache.insert(a, 1);
    gate.arm(Step::Begin);
    let _release = ReleaseOnDrop(gate.clone());
    let outcomes = bounded(30, move || {
        // Leads the load of `key` and compacts the log from its loader.
        let compacting = |key: u64| {
            let (leading_tx, leading_rx) = mpsc::channel::<()>();
            let cache = cache.clone();
            let t = std::thread::spawn(move || {
                let mut rewrote = Ok(());
                let v = cache.get_or_insert_with(key, || {
                    let _ = leading_tx.send(());
                    rewrote = cache.rewrite_log();
                    5
                });
                (v, rewrote)
            });
            leading_rx.recv().expect("the loader runs");
            t
        };
        let first = compacting(b);
        assert!(
            gate.wait_reached(GIVE_UP),
            "the compaction stops at its gate"
        );
        let second = compacting(c);
        std::thread::sleep(SETTLE); // the second waits for the first
        let (holding_tx, holding_rx) = mpsc::channel::<()>();
        let k = cache.clone();
        let computer = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                k.compute(a, |_| {
                    let _ = holding_tx.send(());
                    let v = k.get_or_insert_with(c, || 0);
                    (Decision::Put(v, Ttl::Keep), v)
                })
            }))
            .map(|r| r.expect("no capacity error"))
            .map_err(|p| message(&*p))
        });
        holding_rx.recv().expect("the closure runs");
        std::thread::sleep(SETTLE); // the closure waits for the second load
        gate.release();
        (
            first.join().expect("the first loader's thread"),
            second.join().expect("the second loader's thread"),
            computer.join().expect("caught"),
        )
    })
    .expect("two compactions and a compute closure waiting for each other hung");
    let refused = |r: &Result<(), PersistError>| {
        matches!(
            r,
            Err(PersistError::InCallback {
                call: "rewrite_log",
                ..
            })
        )
    };
    match &outcomes {
        ((5, first), (5, second), Ok(5)) if refused(first) && refused(second) => {}
        other => panic!("{other:?}"),
    }
}
