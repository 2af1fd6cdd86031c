//! Refresh-ahead at its edges: reloads racing writes and removals, loaders
//! that panic (sync and async), more keys due at once than the queue holds,
//! and the counters each of these leaves.

use shardcache::{Cache, MockClock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(300);
const AFTER: Duration = Duration::from_secs(240);

#[path = "support/spawned.rs"]
mod spawned;
use spawned::Spawned;

/// What a fixture's async reload does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    /// The future panics when polled.
    PanicInFuture,
    /// The loader function panics before returning its future.
    PanicOnCall,
}

struct Fixture {
    clock: MockClock,
    cache: Cache<u64, u64>,
    spawned: Spawned,
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<u64>>>,
}

fn fixture() -> Fixture {
    let clock = MockClock::new();
    let spawned = Spawned::default();
    let mode = Arc::new(Mutex::new(Mode::Ok));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (m, c, s, e) = (mode.clone(), calls.clone(), spawned.clone(), errors.clone());
    let cache = Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_loader_async(
            move |k: u64| {
                c.fetch_add(1, Ordering::SeqCst);
                let mode = *m.lock().expect("not poisoned");
                assert!(mode != Mode::PanicOnCall, "loader bug before the future");
                async move {
                    assert!(mode != Mode::PanicInFuture, "loader bug inside the future");
                    Ok::<_, std::io::Error>(1000 + k)
                }
            },
            move |job| s.push(job),
        )
        .refresh_error_listener(move |k: &u64, _| e.lock().expect("not poisoned").push(*k))
        .build()
        .expect("valid settings");
    Fixture {
        clock,
        cache,
        spawned,
        mode,
        calls,
        errors,
    }
}

#[test]
fn a_reload_whose_entry_was_removed_is_not_counted_as_succeeded() {
    let f = fixture();
    f.cache.insert(5, 5);
    f.clock.advance(AFTER);
    assert_eq!(f.cache.get(&5), Some(5));
    f.cache.remove(&5);
    assert_eq!(f.spawned.run_all().panicked, 0);
    assert_eq!(f.cache.get(&5), None);
    let s = f.cache.refresh_stats();
    // `succeeded` counts "reloads whose value replaced the entry's".
    assert_eq!((s.started, s.succeeded, s.failed), (1, 0, 0));
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    assert!(f.errors.lock().expect("not poisoned").is_empty());
}

#[test]
fn a_reload_whose_entry_was_cleared_stores_nothing() {
    let f = fixture();
    for k in 0..10 {
        f.cache.insert(k, k);
    }
    f.clock.advance(AFTER);
    for k in 0..10 {
        assert_eq!(f.cache.get(&k), Some(k));
    }
    f.cache.clear();
    assert_eq!(f.spawned.run_all().panicked, 0);
    assert_eq!(f.cache.len(), 0);
    assert_eq!(f.cache.refresh_stats().succeeded, 0);
}

#[test]
fn a_panicking_async_reload_counts_as_a_failure_and_waits_a_period() {
    let f = fixture();
    f.cache.insert(1, 1);
    *f.mode.lock().expect("not poisoned") = Mode::PanicInFuture;
    f.clock.advance(AFTER);
    assert_eq!(f.cache.get(&1), Some(1));
    // A panicking future is the spawner's to contain; a runtime keeps
    // running, as `run_all` does.
    f.spawned.run_all();
    assert_eq!(f.cache.get(&1), Some(1), "the value stays");
    let s = f.cache.refresh_stats();
    assert_eq!((s.started, s.succeeded, s.failed), (1, 0, 1));
    assert_eq!(*f.errors.lock().expect("not poisoned"), vec![1]);
    // Not retried within the refresh period.
    for _ in 0..10 {
        assert_eq!(f.cache.get(&1), Some(1));
        f.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(f.spawned.len(), 0, "retried within the refresh period");
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn an_async_loader_panicking_when_called_never_reaches_the_reader() {
    let f = fixture();
    f.cache.insert(2, 2);
    *f.mode.lock().expect("not poisoned") = Mode::PanicOnCall;
    f.clock.advance(AFTER);
    let cache = f.cache.clone();
    let read = std::thread::spawn(move || cache.get(&2)).join();
    assert!(
        matches!(read, Ok(Some(2))),
        "a read of a due entry panicked with the refresh loader's panic"
    );
    let s = f.cache.refresh_stats();
    assert_eq!((s.succeeded, s.failed), (0, 1));
    assert_eq!(*f.errors.lock().expect("not poisoned"), vec![2]);
    // The key is not left loading: a foreground load runs.
    f.cache.remove(&2);
    assert_eq!(f.cache.get_or_insert_with(2, || 22), 22);
}

#[test]
fn a_reload_skipped_by_a_full_queue_is_asked_again_by_the_next_read() {
    let clock = MockClock::new();
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let loads = Arc::new(AtomicU64::new(0));
    let (g, l) = (gate.clone(), loads.clone());
    let cache: Cache<u64, u64> = Cache::builder()
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_threads(1)
        .refresh_loader(move |k: &u64| {
            let (open, cv) = &*g;
            let mut open = open.lock().expect("not poisoned");
            while !*open {
                open = cv.wait(open).expect("not poisoned");
            }
            l.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(k + 1_000_000)
        })
        .build()
        .expect("valid settings");
    // More keys due at once than the thread plus its queue (4096) take.
    let keys = 6_000u64;
    for k in 0..keys {
        cache.insert(k, k);
    }
    clock.advance(AFTER);
    for k in 0..keys {
        assert_eq!(cache.get(&k), Some(k), "a due read never waits");
    }
    let s = cache.refresh_stats();
    assert!(s.skipped > 0, "{s:?}");
    assert_eq!(s.started + s.skipped, keys, "{s:?}");
    // Let the pool drain.
    *gate.0.lock().expect("not poisoned") = true;
    gate.1.notify_all();
    let wait = |done: &dyn Fn() -> bool| {
        for _ in 0..20_000 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("timed out: {:?}", cache.refresh_stats());
    };
    wait(&|| cache.refresh_stats().succeeded == s.started);
    // The skipped keys are still due: the next read starts their reload.
    for k in 0..keys {
        cache.get(&k);
    }
    wait(&|| cache.refresh_stats().succeeded == keys);
    assert_eq!(loads.load(Ordering::SeqCst), keys, "one load per key");
    for k in 0..keys {
        assert_eq!(cache.get(&k), Some(k + 1_000_000));
    }
}

#[test]
fn dropping_the_cache_with_async_reloads_pending_lands_them_harmlessly() {
    let f = fixture();
    for k in 0..100 {
        f.cache.insert(k, k);
    }
    f.clock.advance(AFTER);
    for k in 0..100 {
        f.cache.get(&k);
    }
    let spawned = f.spawned.clone();
    assert_eq!(spawned.len(), 100);
    drop(f);
    // The futures hold the cache; running them after every handle is gone
    // stores into a cache nobody sees, and frees it.
    assert_eq!(spawned.run_all().panicked, 0);
}
