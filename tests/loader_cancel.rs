//! Cancellation safety of the async single-flight loader: dropping the task
//! that leads a coalesced load at any point must leave no waiter hung or
//! failed; a waiter takes over the load, or, when the load was handed to a
//! spawner (`get_or_insert_with_spawned`), the load goes on detached.

use shardcache::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A small deterministic generator (xorshift64*), so a failing run can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A loader that yields to the scheduler `steps` times before producing the
/// key's value, counting each run.
async fn slow_load(key: u64, steps: u64, runs: Arc<AtomicU64>) -> u64 {
    runs.fetch_add(1, Ordering::Relaxed);
    for _ in 0..steps {
        tokio::task::yield_now().await;
    }
    key * 2
}

const ITERATIONS: u64 = 10_000;
const WAITERS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_leaders_never_hang_or_fail_waiters() {
    let cache: Cache<u64, u64> = Cache::new(1 << 16);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let runs = Arc::new(AtomicU64::new(0));
    let (mut hung, mut failed, mut cancelled) = (0u64, 0u64, 0u64);
    for key in 0..ITERATIONS {
        let leader = {
            let (cache, runs) = (cache.clone(), runs.clone());
            let steps = rng.below(8);
            tokio::spawn(async move {
                cache
                    .get_or_insert_with_async(key, slow_load(key, steps, runs))
                    .await
            })
        };
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let (cache, runs) = (cache.clone(), runs.clone());
                let steps = rng.below(4);
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with_async(key, slow_load(key, steps, runs))
                        .await
                })
            })
            .collect();
        // Cancel the leader after a random number of scheduler turns: before
        // it starts, while it waits, while it loads, or after it finished.
        for _ in 0..rng.below(6) {
            tokio::task::yield_now().await;
        }
        leader.abort();
        if matches!(leader.await, Err(e) if e.is_cancelled()) {
            cancelled += 1;
        }
        for w in waiters {
            match tokio::time::timeout(Duration::from_secs(10), w).await {
                Err(_) => hung += 1,
                Ok(Ok(v)) if v == key * 2 => {}
                Ok(_) => failed += 1,
            }
        }
        assert_eq!(cache.get(&key), Some(key * 2), "key {key} not cached");
    }
    assert_eq!((hung, failed), (0, 0), "hung and failed waiters");
    // The cancellations must have hit leaders at every stage, some of them
    // while loading, or the test proves nothing.
    assert!(
        cancelled > ITERATIONS / 10,
        "only {cancelled} leaders were cancelled"
    );
    assert!(runs.load(Ordering::Relaxed) >= ITERATIONS);
}

/// A leader dropped mid-load hands the load to a waiter at once: the waiter
/// runs its own loader and every caller gets its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_from_a_dropped_leader() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with_async(1, async move {
                    let _ = started_tx.send(());
                    std::future::pending::<u64>().await
                })
                .await
        })
    };
    started_rx.await.expect("leader started its load");
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_insert_with_async(1, async { 7 }).await })
    };
    tokio::task::yield_now().await;
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("waiter not hung")
        .expect("waiter did not panic");
    assert_eq!(got, 7);
    assert_eq!(cache.get(&1), Some(7));
}

fn spawn_on_tokio(f: shardcache::BoxFuture) {
    tokio::spawn(f);
}

/// Leaders that hand their load to the spawner, cancelled at random points
/// beside waiters of both kinds: no waiter hangs or fails, and since a
/// detached load survives its caller, each key is loaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_callers_of_detached_loads_never_hang_or_fail_waiters() {
    let cache: Cache<u64, u64> = Cache::new(1 << 16);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let runs = Arc::new(AtomicU64::new(0));
    let (mut hung, mut failed, mut cancelled) = (0u64, 0u64, 0u64);
    for key in 0..ITERATIONS {
        let spawned_caller = |steps: u64| {
            let (cache, runs) = (cache.clone(), runs.clone());
            tokio::spawn(async move {
                let load = || slow_load(key, steps, runs.clone());
                cache
                    .get_or_insert_with_spawned(key, load, spawn_on_tokio)
                    .await
            })
        };
        let leader = spawned_caller(rng.below(8));
        let waiters: Vec<_> = (0..WAITERS)
            .map(|i| {
                let steps = rng.below(4);
                if i % 2 == 0 {
                    spawned_caller(steps)
                } else {
                    let (cache, runs) = (cache.clone(), runs.clone());
                    tokio::spawn(async move {
                        cache
                            .get_or_insert_with_async(key, slow_load(key, steps, runs))
                            .await
                    })
                }
            })
            .collect();
        for _ in 0..rng.below(6) {
            tokio::task::yield_now().await;
        }
        leader.abort();
        if matches!(leader.await, Err(e) if e.is_cancelled()) {
            cancelled += 1;
        }
        for w in waiters {
            match tokio::time::timeout(Duration::from_secs(10), w).await {
                Err(_) => hung += 1,
                Ok(Ok(v)) if v == key * 2 => {}
                Ok(_) => failed += 1,
            }
        }
        assert_eq!(cache.get(&key), Some(key * 2), "key {key} not cached");
    }
    assert_eq!((hung, failed), (0, 0), "hung and failed waiters");
    assert!(
        cancelled > ITERATIONS / 10,
        "only {cancelled} leaders were cancelled"
    );
    // A plain async waiter may lead (and be the one loading) only when no
    // spawned caller got there first; a spawned load is never abandoned, so
    // no key is loaded twice.
    assert_eq!(
        runs.load(Ordering::Relaxed),
        ITERATIONS,
        "a key loaded twice"
    );
}

/// The caller of a detached load is dropped mid-load: the load completes on
/// the spawner, stores its value, and a later waiter gets it without
/// loading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_load_outlives_its_dropped_caller() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let channels = std::sync::Mutex::new(Some((started_tx, release_rx)));
    let caller = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let load = || {
                let taken = channels.lock().ok().and_then(|mut c| c.take());
                async move {
                    if let Some((started, release)) = taken {
                        let _ = started.send(());
                        let _ = release.await;
                    }
                    42
                }
            };
            cache
                .get_or_insert_with_spawned(1, load, spawn_on_tokio)
                .await
        })
    };
    started_rx.await.expect("the detached load started");
    caller.abort();
    assert!(caller.await.is_err_and(|e| e.is_cancelled()));
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with_async(1, async {
                    unreachable!("the detached load is in flight")
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    release_tx
        .send(())
        .expect("the detached load is still waiting");
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("waiter not hung")
        .expect("waiter did not panic");
    assert_eq!(got, 42);
    assert_eq!(cache.get(&1), Some(42));
}

/// A spawner that discards the load: the caller loads in its own task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_detached_load_is_run_by_its_caller() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let v = cache
        .get_or_insert_with_spawned(3, || async { 9 }, drop)
        .await;
    assert_eq!((v, cache.get(&3)), (9, Some(9)));
    let err = cache
        .try_get_or_insert_with_spawned(4, || async { Err::<u64, _>("down") }, spawn_on_tokio)
        .await;
    assert_eq!(err.map_err(|e| *e), Err("down"));
    assert_eq!(cache.get(&4), None);
}

/// A detached load that a write overtook (an insert, then a remove, while
/// it ran) does not store its older value; its caller loads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_load_overtaken_by_an_insert_and_a_remove_is_not_stored() {
    let cache: Cache<u64, &str> = Cache::new(100);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let channels = std::sync::Mutex::new(Some((started_tx, release_rx)));
    let caller = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let load = || {
                let taken = channels.lock().ok().and_then(|mut c| c.take());
                async move {
                    match taken {
                        Some((started, release)) => {
                            let _ = started.send(());
                            let _ = release.await;
                            "old"
                        }
                        None => "fresh",
                    }
                }
            };
            cache
                .get_or_insert_with_spawned(1, load, spawn_on_tokio)
                .await
        })
    };
    started_rx.await.expect("the detached load started");
    cache.insert(1, "new");
    assert_eq!(cache.remove(&1), Some("new"));
    release_tx.send(()).expect("the detached load is waiting");
    let got = tokio::time::timeout(Duration::from_secs(10), caller)
        .await
        .expect("caller not hung")
        .expect("caller did not panic");
    assert_eq!(got, "fresh");
    assert_eq!(cache.get(&1), Some("fresh"));
}
