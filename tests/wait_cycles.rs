//! Cycles of waits that run through more than one kind of wait: a load's
//! flight, a shard held in a `compute` closure, a log's rollback, the log's
//! one-repair-at-a-time lock, and loads led by async tasks. In each, the
//! wait that closes the cycle is refused (a panic with the cache's message,
//! or `PersistError::InCallback` from `sync`) and every other thread
//! finishes. Every scenario runs under a watchdog, so a deadlock fails the
//! test instead of hanging it.
//!
//! Where a scenario needs a thread to be blocked before the next one
//! moves, it gives it a moment ([`SETTLE`]); if that thread is late, the
//! cycle closes at another of its waits, which the assertions accept.

use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage, PersistError};
use shardcache::{Cache, Decision, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, OnceLock};
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

/// A `compute` closure holds shard A and waits for a load whose loader
/// reads shard A: one of the two waits panics, and the other finishes.
#[test]
fn a_compute_closure_and_a_loader_reading_its_shard_panic_in_one() {
    let cache: C = Cache::builder()
        .max_capacity(100)
        .shards(4)
        .build()
        .expect("valid");
    let keys = keys_on_distinct_shards(&cache, 2);
    let (a, b) = (keys[0], keys[1]);
    cache.insert(a, 1);
    let outcomes = bounded(20, move || {
        let (leading_tx, leading_rx) = mpsc::channel::<()>();
        let (go_load_tx, go_load_rx) = mpsc::channel::<()>();
        let c = cache.clone();
        let loader = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(b, || {
                    let _ = leading_tx.send(());
                    let _ = go_load_rx.recv_timeout(GIVE_UP);
                    c.get(&a).unwrap_or(0) + 10
                })
            }))
            .map_err(|p| message(&*p))
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
                    let v = c.get_or_insert_with(b, || 20);
                    (Decision::Put(v, Ttl::Keep), v)
                })
            }))
            .map(|r| r.expect("no capacity error"))
            .map_err(|p| message(&*p))
        });
        holding_rx.recv().expect("the closure runs");
        go_load_tx.send(()).expect("the loader waits");
        std::thread::sleep(SETTLE); // the loader waits for shard A
        go_compute_tx.send(()).expect("the closure waits");
        [
            computer.join().expect("caught"),
            loader.join().expect("caught"),
        ]
    })
    .expect("a compute closure and a loader waiting for each other hung");
    let panics: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(panics.len(), 1, "{outcomes:?}");
    assert!(panics[0].contains(CYCLE), "{}", panics[0]);
}

/// An async task leads key 1, and its loader blocks (a sync call inside
/// the poll) on key 2, whose loader on another thread blocks on key 1.
#[test]
fn an_async_leader_blocking_on_a_key_whose_loader_waits_back_panics_in_one() {
    let cache: C = Cache::new(100);
    let outcomes = bounded(20, move || {
        let both = Arc::new(Barrier::new(2));
        let (c, b) = (cache.clone(), both.clone());
        let task = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                futures::executor::block_on(c.get_or_insert_with_async(1, async {
                    b.wait();
                    c.get_or_insert_with(2, || 20) + 1
                }))
            }))
            .map_err(|p| message(&*p))
        });
        let (c, b) = (cache.clone(), both);
        let blocking = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(2, || {
                    b.wait();
                    c.get_or_insert_with(1, || 10) + 2
                })
            }))
            .map_err(|p| message(&*p))
        });
        [
            task.join().expect("caught"),
            blocking.join().expect("caught"),
        ]
    })
    .expect("an async leader and a blocking loader waiting for each other hung");
    let panics: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(panics.len(), 1, "{outcomes:?}");
    assert!(panics[0].contains("wait for each other"), "{}", panics[0]);
}

/// A detached load (run by the caller's spawner on a thread of its own)
/// whose loader blocks on a key whose loader on another thread blocks on
/// the detached load's key. If the detached load is the one given up, its
/// caller loads again in its own task, which closes the cycle once more:
/// every panic says why, and no thread hangs.
#[test]
fn a_detached_loader_blocking_on_a_key_whose_loader_waits_back_panics() {
    let cache: C = Cache::new(100);
    let outcomes = bounded(20, move || {
        let both = Arc::new(Barrier::new(2));
        let first = Arc::new(AtomicBool::new(true));
        let (c, b) = (cache.clone(), both.clone());
        let (ran_tx, ran_rx) = mpsc::channel();
        let task = std::thread::spawn(move || {
            let load = || {
                let (c, b, first) = (c.clone(), b.clone(), first.clone());
                async move {
                    if first.swap(false, Ordering::AcqRel) {
                        b.wait();
                    }
                    c.get_or_insert_with(2, || 20) + 1
                }
            };
            let spawn = move |f: shardcache::BoxFuture| {
                std::thread::spawn(move || {
                    let r = catch_unwind(AssertUnwindSafe(|| futures::executor::block_on(f)));
                    let _ = ran_tx.send(r.map(|()| 0).map_err(|p| message(&*p)));
                });
            };
            catch_unwind(AssertUnwindSafe(|| {
                futures::executor::block_on(c.get_or_insert_with_spawned(1, load, spawn))
            }))
            .map_err(|p| message(&*p))
        });
        let (c, b) = (cache.clone(), both);
        let blocking = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(2, || {
                    b.wait();
                    c.get_or_insert_with(1, || 10) + 2
                })
            }))
            .map_err(|p| message(&*p))
        });
        let detached = ran_rx.recv_timeout(GIVE_UP).expect("the detached load ran");
        [
            detached,
            task.join().expect("caught"),
            blocking.join().expect("caught"),
        ]
    })
    .expect("a detached loader and a blocking loader waiting for each other hung");
    let panics: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(!panics.is_empty(), "{outcomes:?}");
    for panic in panics {
        assert!(panic.contains("wait for each other"), "{panic}");
    }
}

/// An async leader whose loader blocks on its own key would wait for
/// itself: it panics.
#[test]
fn an_async_leader_blocking_on_its_own_key_panics() {
    let cache: C = Cache::new(100);
    let outcome = bounded(20, move || {
        catch_unwind(AssertUnwindSafe(|| {
            futures::executor::block_on(
                cache.get_or_insert_with_async(1, async { cache.get_or_insert_with(1, || 5) }),
            )
        }))
        .map_err(|p| message(&*p))
    })
    .expect("an async loader waiting for its own key hung");
    match outcome {
        Err(panic) if panic.contains("wait for itself") => {}
        other => panic!("{other:?}"),
    }
}

/// An async leader that awaits another key under a timeout, while that
/// key's loader blocks on the async leader's key: not a cycle for good
/// (the timeout ends the task's wait), so nothing panics and both finish.
/// This is why waits by `.await` are not followed.
#[test]
fn an_async_wait_under_a_timeout_is_not_taken_for_a_cycle() {
    let cache: C = Cache::new(100);
    let outcomes = bounded(20, move || {
        let both = Arc::new(Barrier::new(2));
        let (c, b) = (cache.clone(), both.clone());
        let task = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a runtime");
            catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(c.get_or_insert_with_async(1, async {
                    b.wait();
                    let other = c.get_or_insert_with_async(2, async { 20 });
                    tokio::time::timeout(SETTLE, other).await.unwrap_or(0) + 1
                }))
            }))
            .map_err(|p| message(&*p))
        });
        let (c, b) = (cache.clone(), both);
        let blocking = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(2, || {
                    b.wait();
                    c.get_or_insert_with(1, || 10) + 2
                })
            }))
            .map_err(|p| message(&*p))
        });
        [
            task.join().expect("caught"),
            blocking.join().expect("caught"),
        ]
    })
    .expect("hung");
    assert_eq!(outcomes, [Ok(1), Ok(3)]);
}

/// A background reload of key 1 (on the refresher's pool) whose loader
/// blocks on key 2, whose loader on another thread blocks on key 1 once it
/// has expired (so it waits for the reload's flight).
#[test]
fn a_reload_blocking_on_a_key_whose_loader_waits_for_the_reload_panics_in_one() {
    type Gate = Mutex<Option<mpsc::Receiver<()>>>;
    let clock = shardcache::MockClock::new();
    let handle: Arc<OnceLock<C>> = Arc::new(OnceLock::new());
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started, go): (Mutex<_>, Gate) = (Mutex::new(started_tx), Mutex::new(Some(go_rx)));
    let h = handle.clone();
    let cache: C = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(Duration::from_secs(300))
        .refresh_after(Duration::from_secs(240))
        .refresh_loader(move |&k: &u64| {
            if let Some(go) = go.lock().expect("not poisoned").take() {
                let _ = started.lock().expect("not poisoned").send(());
                let _ = go.recv_timeout(GIVE_UP);
            }
            let c = h.get().expect("set");
            Ok::<_, std::convert::Infallible>(c.get_or_insert_with(k + 1, || 20) + 1)
        })
        .build()
        .expect("valid");
    let _ = handle.set(cache.clone());
    cache.insert(1, 1);
    clock.advance(Duration::from_secs(250));
    assert_eq!(cache.get(&1), Some(1), "served while it reloads");
    started_rx.recv_timeout(GIVE_UP).expect("the reload runs");
    clock.advance(Duration::from_secs(100)); // key 1 expires meanwhile
    let outcome = bounded(20, move || {
        let (leading_tx, leading_rx) = mpsc::channel::<()>();
        let (go2_tx, go2_rx) = mpsc::channel::<()>();
        let c = cache.clone();
        let blocking = std::thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(2, || {
                    let _ = leading_tx.send(());
                    let _ = go2_rx.recv_timeout(GIVE_UP);
                    c.get_or_insert_with(1, || 10) + 2
                })
            }))
            .map_err(|p| message(&*p))
        });
        leading_rx.recv().expect("the loader of 2 runs");
        go_tx.send(()).expect("the reload waits");
        std::thread::sleep(SETTLE); // the reload waits for the load of 2
        go2_tx.send(()).expect("the loader of 2 waits");
        blocking.join().expect("caught")
    })
    .expect("a reload and a loader waiting for each other hung");
    match outcome {
        Err(panic) if panic.contains("wait for each other") => {}
        other => panic!("{other:?}"),
    }
}
