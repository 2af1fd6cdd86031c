//! Cycles of waits that run through more than one kind of wait: a load's
//! flight, a shard held in a `compute` closure, a load led by an async
//! task or run detached, a background reload. In each, the wait that
//! closes the cycle panics with the cache's message and every other thread
//! finishes. Every scenario runs under a watchdog, so a deadlock fails the
//! test instead of hanging it. Cycles through a log's rollback, repair
//! and rewrites are in `wait_cycles_log.rs`.
//!
//! Where a scenario needs a thread to be blocked before the next one
//! moves, it gives it a moment ([`SETTLE`]); if that thread is late, the
//! cycle closes at another of its waits, which the assertions accept.

use shardcache::{Cache, Decision, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

#[path = "support/watchdog.rs"]
mod watchdog;
use watchdog::{bounded, message};
#[path = "support/shard_keys.rs"]
mod shard_keys;
use shard_keys::keys_on_distinct_shards;

type C = Cache<u64, u64>;

/// What the cache's cycle messages (shard and load) both say.
const CYCLE: &str = "cycle";

/// How long a scenario lets a thread reach its wait before the next step.
const SETTLE: Duration = Duration::from_millis(300);

/// How long a thread waits for the test's signal before going on anyway.
const GIVE_UP: Duration = Duration::from_secs(20);

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
