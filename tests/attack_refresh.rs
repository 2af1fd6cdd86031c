#![allow(clippy::unwrap_used)]
//! Attacks on refresh-ahead, compute and weighted capacity with inputs,
//! clocks and interleavings the other tests do not use: error listeners
//! that load the failed key, reloads the cache refuses, panics while a
//! reload stores its value, windows at their millisecond edges.

use shardcache::{BoxFuture, Cache, Decision, Freshness, MockClock, Policy, RemovalCause, Ttl};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Futures handed to a spawner, run when the test says so.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<Vec<BoxFuture>>>);

impl Queue {
    fn push(&self, f: BoxFuture) {
        self.0.lock().unwrap().push(f);
    }
    fn take(&self) -> Vec<BoxFuture> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Runs `f` on a thread; `Err` if it has not returned within `secs`.
fn within<R: Send + 'static>(
    secs: u64,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(_)) => Err("panicked".into()),
        Err(_) => Err(format!("hung for {secs} s")),
    }
}

// ---------------------------------------------------------------------------
// 1. The refresh error listener calling back into the cache
// ---------------------------------------------------------------------------

// A refresh_error_listener that loads the key whose reload just failed (a
// natural "fall back on error" pattern): the reload's load lands before the
// listener runs, and the key is cooling down. It used to wait forever: the
// listener ran while the reload's flight was still open.
#[test]
fn an_error_listener_may_load_the_failed_key_async() {
    let clock = MockClock::new();
    let queue = Queue::default();
    let q = queue.clone();
    let handle: Arc<OnceLock<Cache<u64, u64>>> = Arc::new(OnceLock::new());
    let h = handle.clone();
    let (tx, rx) = mpsc::channel::<u64>();
    let tx = Mutex::new(tx);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .refresh_after(ms(5_000))
        .refresh_loader_async(
            |_k: u64| async { Err::<u64, _>("source down") },
            move |f| q.push(f),
        )
        .refresh_error_listener(move |k: &u64, _e| {
            let cache = h.get().unwrap();
            // Fall back: read the key through the cache.
            let v = cache.get_or_insert_with(*k, || 42);
            let _ = tx.lock().unwrap().send(v);
        })
        .build()
        .unwrap();
    handle.set(cache.clone()).unwrap();
    cache.insert(1, 1);
    clock.advance(ms(6_000));
    assert_eq!(cache.get(&1), Some(1)); // starts the reload (queued)
    cache.remove(&1); // invalidated while the reload runs
    let jobs = queue.take();
    assert_eq!(jobs.len(), 1);
    let ran = within(5, move || {
        for j in jobs {
            futures::executor::block_on(j);
        }
    });
    let heard = rx.recv_timeout(Duration::from_secs(1)).ok();
    eprintln!("reload future: {ran:?}; listener's load answered {heard:?}");
    assert!(
        ran.is_ok(),
        "the failed reload's error listener hung: {ran:?}"
    );
    assert_eq!(heard, Some(42));
}

// The same with the sync pool and an entry that expired (inside the refresh
// grace window) while its reload ran: it used to hang the pool thread and
// every later caller of get_or_insert_with on that key.
#[test]
fn an_error_listener_may_load_the_failed_key_on_the_pool() {
    let clock = MockClock::new();
    let handle: Arc<OnceLock<Cache<u64, u64>>> = Arc::new(OnceLock::new());
    let h = handle.clone();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let (tx, rx) = mpsc::channel::<u64>();
    let tx = Mutex::new(tx);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .refresh_after(ms(5_000))
        .refresh_loader(move |_k: &u64| {
            let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
            Err::<u64, _>("source down")
        })
        .refresh_error_listener(move |k: &u64, _e| {
            let cache = h.get().unwrap();
            let v = cache.get_or_insert_with(*k, || 42);
            let _ = tx.lock().unwrap().send(v);
        })
        .build()
        .unwrap();
    handle.set(cache.clone()).unwrap();
    cache.insert(1, 1);
    clock.advance(ms(6_000));
    assert_eq!(cache.get(&1), Some(1)); // starts the reload on the pool
    clock.advance(ms(5_000)); // past the TTL, inside the grace window
    go_tx.send(()).unwrap();
    let heard = rx.recv_timeout(Duration::from_secs(5)).ok();
    // A foreground caller of the same key also waits for the stuck flight.
    let c = cache.clone();
    let fg = within(3, move || c.get_or_insert_with(1, || 7));
    eprintln!("listener's load answered {heard:?}; foreground load: {fg:?}");
    assert_eq!(heard, Some(42), "the error listener's load of its key hung");
    assert!(fg.is_ok(), "a foreground load of the key hung: {fg:?}");
}

// ---------------------------------------------------------------------------
// 2. A reload whose value cannot be stored is retried on every read
// ---------------------------------------------------------------------------

fn weighed_refresh(
    loads: Arc<AtomicUsize>,
    policy: Option<Policy>,
) -> (Cache<u64, u64>, MockClock) {
    let clock = MockClock::new();
    let mut b = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .weigher(|_k: &u64, v: &u64| *v as u32)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .refresh_after(ms(5_000))
        .refresh_loader_async(
            move |_k: u64| {
                loads.fetch_add(1, Ordering::SeqCst);
                // The source's value grew past what the cache can hold.
                async { Ok::<u64, std::io::Error>(1_000) }
            },
            futures::executor::block_on,
        );
    if let Some(p) = policy {
        b = b.policy(p);
    }
    (b.build().unwrap(), clock)
}

// A reload whose value the cache refuses (heavier than the capacity) counts
// as a failure, reported, and the key cools down: at most one load per key
// per refresh period. It used to be counted as neither and reloaded on
// every read.
#[test]
fn a_reload_the_cache_refuses_is_a_failure_and_cools_down() {
    let loads = Arc::new(AtomicUsize::new(0));
    let (cache, clock) = weighed_refresh(loads.clone(), None);
    cache.insert(1, 10);
    clock.advance(ms(6_000));
    for _ in 0..50 {
        assert_eq!(cache.get(&1), Some(10));
    }
    let stats = cache.refresh_stats();
    eprintln!(
        "loads of key 1 within one refresh period: {}; stats {stats:?}",
        loads.load(Ordering::SeqCst)
    );
    assert!(
        loads.load(Ordering::SeqCst) <= 1,
        "{} loads of one key in one refresh period",
        loads.load(Ordering::SeqCst)
    );
}

// The same under `noeviction` with a grown value that no longer fits.
#[test]
fn a_reload_a_full_noeviction_cache_refuses_cools_down() {
    let loads = Arc::new(AtomicUsize::new(0));
    let (cache, clock) = weighed_refresh(loads.clone(), Some("noeviction".parse().unwrap()));
    cache.insert(1, 10);
    cache.insert(2, 90); // full
    clock.advance(ms(6_000));
    for _ in 0..50 {
        assert_eq!(cache.get(&1), Some(10));
    }
    let n = loads.load(Ordering::SeqCst);
    eprintln!("noeviction: loads {n}; stats {:?}", cache.refresh_stats());
    assert!(n <= 2, "{n} loads in one refresh period"); // key 2 may be reloaded once too
}

// ---------------------------------------------------------------------------
// 3. refresh_after within a millisecond of time_to_live
// ---------------------------------------------------------------------------

// refresh_after is rounded up to whole milliseconds: one that rounds up to
// the TTL's milliseconds would leave no time in which an entry is due, so
// the build refuses it. (It used to be accepted, and nothing was ever
// refreshed.)
#[test]
fn a_refresh_after_that_rounds_up_to_the_ttl_is_refused() {
    let built = Cache::<u64, u64>::builder()
        .max_capacity(100)
        .time_to_live(ms(1_000))
        .refresh_after(Duration::from_micros(999_100)) // 0.9 ms before the TTL
        .refresh_loader(|k: &u64| Ok::<u64, std::io::Error>(k + 100))
        .build();
    let Err(err) = built else {
        panic!("refresh_after 0.9 ms short of the TTL was accepted")
    };
    assert!(err.to_string().contains("refresh_after"), "{err}");
    // A whole millisecond short of the TTL is enough.
    let clock = MockClock::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let l = loads.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(1_000))
        .refresh_after(ms(999))
        .refresh_loader_async(
            move |k: u64| {
                l.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<u64, std::io::Error>(k + 100) }
            },
            futures::executor::block_on,
        )
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(Duration::from_micros(999_500));
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(loads.load(Ordering::SeqCst), 1, "a reload was started");
}

// ---------------------------------------------------------------------------
// Checks that held (kept passing)
// ---------------------------------------------------------------------------

#[test]
fn stale_windows_are_exact_at_their_edges() {
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .refresh_after(ms(8_000))
        .serve_stale_for(ms(3_000))
        .stale_if_error_for(ms(5_000))
        .refresh_loader(|_k: &u64| Err::<u64, _>("down"))
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(ms(7_999));
    assert_eq!(cache.get_with_freshness(&1), Some((1, Freshness::Fresh)));
    clock.advance(ms(1));
    assert_eq!(
        cache.get_with_freshness(&1),
        Some((1, Freshness::Refreshing))
    );
    clock.advance(ms(1_999)); // 9_999
    assert_eq!(
        cache.get_with_freshness(&1),
        Some((1, Freshness::Refreshing))
    );
    assert!(cache.contains_key(&1));
    clock.advance(ms(1)); // 10_000
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.get_with_freshness(&1), Some((1, Freshness::Stale)));
    clock.advance(ms(2_999)); // 12_999
    assert_eq!(cache.get_with_freshness(&1), Some((1, Freshness::Stale)));
    clock.advance(ms(1)); // 13_000
    assert_eq!(cache.get_with_freshness(&1), None);
    let r = cache.try_get_or_insert_with(1, || Err::<u64, _>("down"));
    assert_eq!(r.ok(), Some(1));
    clock.advance(ms(1_999)); // 14_999
    let r = cache.try_get_or_insert_with(1, || Err::<u64, _>("down"));
    assert_eq!(r.ok(), Some(1));
    clock.advance(ms(1)); // 15_000
    let r = cache.try_get_or_insert_with(1, || Err::<u64, _>("down"));
    assert!(r.is_err());
}

#[test]
fn compute_sees_value_and_ttl_exactly_with_refresh() {
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .refresh_after(ms(4_000))
        .serve_stale_for(ms(2_000))
        .refresh_loader(|k: &u64| Ok::<_, std::io::Error>(*k))
        .build()
        .unwrap();
    cache.insert(1, 5);
    clock.advance(ms(3_000));
    let seen = cache
        .compute(1, |c| {
            let c = c.map(|c| (*c.value, c.ttl));
            (Decision::Nothing, c)
        })
        .unwrap();
    assert_eq!(seen, Some((5, Some(ms(7_000)))));
    cache
        .compute(1, |_| (Decision::Put(6, Ttl::After(ms(500))), ()))
        .unwrap();
    assert_eq!(cache.ttl(&1), Some(Some(ms(500))));
    clock.advance(ms(500));
    let seen = cache
        .compute(1, |c| (Decision::Nothing, c.map(|c| *c.value)))
        .unwrap();
    assert_eq!(seen, None);
}

/// Many threads increment one counter with compute while others insert,
/// remove and clear other keys of the same shard: no increment is lost.
#[test]
fn compute_counter_is_exact_under_contention() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000_000)
        .shards(2)
        .build()
        .unwrap();
    let threads = 6;
    let per = 5_000;
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let (c, stop) = (cache.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 1_000u64;
            while !stop.load(Ordering::Relaxed) {
                c.insert(i, i);
                c.remove(&(i - 3));
                i += 1;
            }
        })
    };
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let c = cache.clone();
            std::thread::spawn(move || {
                for _ in 0..per {
                    c.compute(0, |cur| {
                        let n = cur.map_or(0, |c| *c.value) + 1;
                        (Decision::Put(n, Ttl::Keep), ())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    noise.join().unwrap();
    assert_eq!(cache.get(&0), Some(threads * per));
}

/// Dropping the cache while reloads are queued and one is running: no hang,
/// and the cache (its values) is freed once the running reload ends.
#[test]
fn dropping_the_cache_with_reloads_running_frees_it() {
    static LIVE: AtomicU64 = AtomicU64::new(0);
    struct Counted(u64);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            Self::new(self.0)
        }
    }
    impl Counted {
        fn new(v: u64) -> Self {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Self(v)
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let clock = MockClock::new();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let (run_tx, run_rx) = mpsc::channel::<()>();
    let run_tx = Mutex::new(run_tx);
    let cache: Cache<u64, Counted> = Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .time_to_live(ms(1_000))
        .refresh_after(ms(500))
        .refresh_threads(1)
        .refresh_loader(move |k: &u64| {
            if *k == 0 {
                let _ = run_tx.lock().unwrap().send(());
                let t = std::time::Instant::now();
                let got = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
                eprintln!("reload of 0 released: {got:?} after {:?}", t.elapsed());
                std::thread::sleep(ms(50)); // still running while the cache is gone
            }
            Ok::<_, std::io::Error>(Counted::new(*k + 1_000))
        })
        .build()
        .unwrap();
    for k in 0..200 {
        cache.insert(k, Counted::new(k));
    }
    clock.advance(ms(600));
    for k in 0..200 {
        assert!(cache.get(&k).is_some());
    }
    run_rx.recv_timeout(Duration::from_secs(5)).unwrap(); // one reload is running
    eprintln!("stats before drop {:?}", cache.refresh_stats());
    let r = within(5, move || drop(cache));
    assert!(r.is_ok(), "drop hung: {r:?}");
    let sent = go_tx.send(());
    eprintln!("released the running reload: {sent:?}");
    std::thread::sleep(ms(300)); // the released reload lands on a dropped cache
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while LIVE.load(Ordering::SeqCst) != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(ms(10));
    }
    eprintln!(
        "live values after the drop: {}",
        LIVE.load(Ordering::SeqCst)
    );
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "values still alive after the drop"
    );
}

/// A reload never brings back a key removed, cleared or overwritten while it
/// ran, for each kind of write racing it; a compute that does nothing or
/// only sets a TTL leaves it free to land.
#[test]
fn reloads_land_only_when_no_write_came_between() {
    type Step = fn(&Cache<u64, u64>);
    let cases: [(&str, Step, Option<u64>); 6] = [
        (
            "remove",
            |c| {
                c.remove(&1);
            },
            None,
        ),
        ("clear", |c| c.clear(), None),
        ("insert", |c| c.insert(1, 2), Some(2)),
        (
            "compute-put",
            |c| c.compute(1, |_| (Decision::Put(3, Ttl::Keep), ())).unwrap(),
            Some(3),
        ),
        (
            "compute-nothing",
            |c| c.compute(1, |_| (Decision::Nothing, ())).unwrap(),
            Some(101),
        ),
        (
            "compute-remove",
            |c| c.compute(1, |_| (Decision::Remove, ())).unwrap(),
            None,
        ),
    ];
    for (name, step, want) in cases {
        let clock = MockClock::new();
        let queue = Queue::default();
        let q = queue.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .clock(clock.clone())
            .time_to_live(ms(10_000))
            .refresh_after(ms(5_000))
            .refresh_loader_async(
                |k: u64| async move { Ok::<_, std::io::Error>(k + 100) },
                move |f| q.push(f),
            )
            .build()
            .unwrap();
        cache.insert(1, 1);
        clock.advance(ms(6_000));
        assert_eq!(cache.get(&1), Some(1));
        step(&cache);
        for j in queue.take() {
            futures::executor::block_on(j);
        }
        assert_eq!(cache.get(&1), want, "{name}");
    }
}

/// An entry whose idle time ran out while its reload ran is not brought back
/// by the reload.
#[test]
fn a_reload_does_not_revive_an_idle_expired_entry() {
    let clock = MockClock::new();
    let queue = Queue::default();
    let q = queue.clone();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let hd = heard.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .time_to_idle(ms(3_000))
        .refresh_after(ms(5_000))
        .refresh_loader_async(
            |k: u64| async move { Ok::<_, std::io::Error>(k + 100) },
            move |f| q.push(f),
        )
        .eviction_listener(move |k, v, c| hd.lock().unwrap().push((k, v, c)))
        .build()
        .unwrap();
    cache.insert(1, 1);
    for _ in 0..3 {
        clock.advance(ms(2_000));
        let _ = cache.get(&1);
    }
    // 6 s: due, reload queued.
    clock.advance(ms(3_000)); // idle for 3 s
    for j in queue.take() {
        futures::executor::block_on(j);
    }
    assert_eq!(cache.get(&1), None);
    assert!(heard
        .lock()
        .unwrap()
        .iter()
        .all(|(_, _, c)| *c == RemovalCause::Expired));
}

/// Weighted capacity: many threads write entries of varying weight into a
/// small total across many shards; the total never exceeds max_capacity
/// once writes settle, nothing hangs, and an entry heavier than a shard's
/// share is refused and handed back.
#[test]
fn weighted_writers_never_pass_the_capacity() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_024)
        .shards(16)
        .weigher(|_k, v: &u64| (*v % 97) as u32)
        .build()
        .unwrap();
    let r = within(30, {
        let cache = cache.clone();
        move || {
            let hs: Vec<_> = (0..4u64)
                .map(|t| {
                    let c = cache.clone();
                    std::thread::spawn(move || {
                        let mut refused = 0;
                        for i in 0..20_000u64 {
                            let k = (i * 7 + t) % 3_000;
                            let v = i.wrapping_mul(2654435761) ^ t;
                            match i % 5 {
                                0 => drop(c.remove(&k)),
                                1 => {
                                    let _ = c.compute(k, |cur| {
                                        let n = cur.map_or(1, |c| c.value + 1);
                                        (Decision::Put(n, Ttl::Keep), ())
                                    });
                                }
                                _ => {
                                    if let Err(e) = c.try_insert(k, v) {
                                        assert!((e.value % 97) > 1_024 / 16);
                                        refused += 1;
                                    }
                                }
                            }
                        }
                        refused
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        }
    });
    assert!(r.is_ok(), "{r:?}");
    let total: u64 = cache.iter().map(|(_, v)| v % 97).sum();
    assert!(cache.weighted_size() <= 1_024, "{}", cache.weighted_size());
    assert_eq!(total, cache.weighted_size());
    assert!(cache.try_insert(5_000, 96 + 97 * 3).is_err() || 96 <= 1_024 / 16);
}

// ---------------------------------------------------------------------------
// 4. A panic while a sync reload stores its value kills a pool thread
// ---------------------------------------------------------------------------

/// A cache whose reloads return `k + 1000` on one pool thread; `weigher` and
/// `listener` say how storing may panic.
fn one_thread_pool(
    weigher_panics_on: Option<u64>,
    listener_panics: bool,
) -> (Cache<u64, u64>, MockClock, Arc<AtomicUsize>) {
    let clock = MockClock::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let l = loads.clone();
    let mut b = Cache::builder()
        .max_capacity(1_000_000)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .refresh_after(ms(5_000))
        .refresh_threads(1)
        .refresh_loader(move |k: &u64| {
            l.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(*k + 1_000)
        })
        .weigher(move |_k: &u64, v: &u64| {
            // A weigher that rejects a value it cannot weigh (documented:
            // "one that panics fails that write and leaves the cache as it was").
            assert!(Some(*v) != weigher_panics_on, "cannot weigh {v}");
            1
        });
    if listener_panics {
        b = b.eviction_listener(|k: u64, _v, cause| {
            assert!(!(k == 1 && cause == RemovalCause::Replaced), "listener bug");
        });
    }
    (b.build().unwrap(), clock, loads)
}

fn wait_for(loads: &AtomicUsize, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while loads.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
        std::thread::sleep(ms(5));
    }
    loads.load(Ordering::SeqCst)
}

fn first_reload_panics_then_others(
    cache: &Cache<u64, u64>,
    clock: &MockClock,
    loads: &AtomicUsize,
) -> usize {
    for k in 1..=3 {
        cache.insert(k, k);
    }
    clock.advance(ms(6_000));
    assert_eq!(cache.get(&1), Some(1)); // its store will panic
    assert_eq!(wait_for(loads, 1), 1);
    std::thread::sleep(ms(100));
    // Other keys, due too: their reloads should still run.
    assert_eq!(cache.get(&2), Some(2));
    assert_eq!(cache.get(&3), Some(3));
    let n = wait_for(loads, 3);
    eprintln!(
        "loads {n} (want 3); values {:?} {:?}; stats {:?}",
        cache.get(&2),
        cache.get(&3),
        cache.refresh_stats()
    );
    n
}

// A weigher that panics on a reloaded value fails that store (as documented
// for a panicking weigher), and the pool thread that landed it goes on: with
// `refresh_threads(1)`, later reloads still run. (The panic used to unwind
// through the pool thread and kill it.)
#[test]
fn a_weigher_panic_while_a_reload_stores_keeps_the_pool() {
    let (cache, clock, loads) = one_thread_pool(Some(1_001), false);
    let n = first_reload_panics_then_others(&cache, &clock, &loads);
    assert_eq!(n, 3, "later reloads never ran: the pool thread died");
}

// The same with an eviction listener that panics on the Replaced notice of
// the reloaded entry (the listener is called on the pool thread).
#[test]
fn a_listener_panic_after_a_reload_keeps_the_pool() {
    let (cache, clock, loads) = one_thread_pool(None, true);
    let n = first_reload_panics_then_others(&cache, &clock, &loads);
    assert_eq!(n, 3, "later reloads never ran: the pool thread died");
}

// The same with a refresh_error_listener that panics: the pool goes on, and
// the failed key still cools down (noted before the listener runs).
#[test]
fn an_error_listener_panic_keeps_the_pool() {
    let clock = MockClock::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let l = loads.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(10_000))
        .refresh_after(ms(5_000))
        .refresh_threads(1)
        .refresh_loader(move |k: &u64| {
            l.fetch_add(1, Ordering::SeqCst);
            if *k == 1 {
                Err("down")
            } else {
                Ok(*k + 1_000)
            }
        })
        .refresh_error_listener(|_k: &u64, _e| panic!("error listener bug"))
        .build()
        .unwrap();
    let n = first_reload_panics_then_others(&cache, &clock, &loads);
    assert_eq!(n, 3, "later reloads never ran: the pool thread died");
}

/// A compute closure that panics leaves len, weighted size, stats and the
/// listener as they were.
#[test]
fn a_panicking_compute_changes_nothing() {
    let heard = Arc::new(AtomicUsize::new(0));
    let h = heard.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .weigher(|_k, v: &u64| *v as u32)
        .eviction_listener(move |_k, _v, _c| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    cache.insert(1, 10);
    cache.insert(2, 20);
    let before = (cache.len(), cache.weighted_size(), cache.stats());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.compute(1, |_| -> (Decision<u64>, ()) { panic!("closure bug") })
    }));
    assert!(r.is_err());
    assert_eq!((cache.len(), cache.weighted_size(), cache.stats()), before);
    assert_eq!(heard.load(Ordering::SeqCst), 0);
    assert_eq!(cache.get(&1), Some(10));
    // A Put heavier than the whole capacity is refused; the old value stays.
    let e = cache.compute(1, |_| (Decision::Put(500, Ttl::Keep), ()));
    assert!(e.is_err());
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.weighted_size(), 30);
}
