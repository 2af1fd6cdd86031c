//! Refresh-ahead and the stale window: reads never wait for a reload, one
//! reload runs per key per refresh period, failures keep the value, and
//! expired entries stay invisible outside the stale window.

use shardcache::{BuildError, Cache, Freshness, MockClock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(300);
const AFTER: Duration = Duration::from_secs(240);

#[path = "support/spawned.rs"]
mod spawned;
use spawned::Spawned;

/// A cache whose reloads return `version * 1000 + key` (or fail while
/// `failing` is set), spawned into `Spawned`.
struct Fixture {
    clock: MockClock,
    cache: Cache<u64, u64>,
    spawned: Spawned,
    version: Arc<AtomicU64>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    errors: Arc<Mutex<Vec<(u64, String)>>>,
}

fn fixture(stale: Option<Duration>) -> Fixture {
    let clock = MockClock::new();
    let spawned = Spawned::default();
    let version = Arc::new(AtomicU64::new(1));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (v, f, s, e) = (
        version.clone(),
        failing.clone(),
        spawned.clone(),
        errors.clone(),
    );
    let mut b = Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_loader_async(
            move |k: u64| {
                let (v, f) = (v.load(Ordering::SeqCst), f.load(Ordering::SeqCst));
                async move {
                    if f {
                        Err("database unavailable")
                    } else {
                        Ok(v * 1000 + k)
                    }
                }
            },
            move |job| s.push(job),
        )
        .refresh_error_listener(move |k: &u64, err| {
            e.lock().expect("not poisoned").push((*k, err.to_string()))
        });
    if let Some(window) = stale {
        b = b.serve_stale_for(window);
    }
    Fixture {
        clock,
        cache: b.build().expect("valid settings"),
        spawned,
        version,
        failing,
        errors,
    }
}

#[test]
fn a_due_entry_is_served_at_once_and_reloaded_once() {
    let f = fixture(None);
    f.cache.insert(7, 7);
    f.clock.advance(AFTER - Duration::from_millis(1));
    assert_eq!(f.cache.get_with_freshness(&7), Some((7, Freshness::Fresh)));
    assert_eq!(f.spawned.len(), 0, "not due yet");
    f.clock.advance(Duration::from_millis(1));
    for _ in 0..100 {
        assert_eq!(f.cache.get(&7), Some(7), "the current value, at once");
    }
    assert_eq!(f.spawned.len(), 1, "one reload for 100 reads");
    assert_eq!(f.spawned.run_ok(), 1);
    assert_eq!(
        f.cache.get_with_freshness(&7),
        Some((1007, Freshness::Fresh))
    );
    // The reload restarted the entry's life: its full TTL again.
    assert_eq!(f.cache.ttl(&7), Some(Some(TTL)));
    let s = f.cache.refresh_stats();
    assert_eq!((s.started, s.succeeded, s.failed), (1, 1, 0));
    // Nothing more until the next refresh period.
    f.clock.advance(AFTER - Duration::from_millis(1));
    f.cache.get(&7);
    assert_eq!(f.spawned.len(), 0);
    f.version.store(2, Ordering::SeqCst);
    f.clock.advance(Duration::from_millis(1));
    f.cache.get(&7);
    assert_eq!(f.spawned.run_ok(), 1);
    assert_eq!(f.cache.get(&7), Some(2007));
}

#[test]
fn a_failed_reload_keeps_the_value_reports_and_waits_a_period() {
    let f = fixture(None);
    f.cache.insert(3, 3);
    f.failing.store(true, Ordering::SeqCst);
    f.clock.advance(AFTER);
    assert_eq!(f.cache.get(&3), Some(3));
    assert_eq!(f.spawned.run_ok(), 1);
    assert_eq!(f.cache.get(&3), Some(3), "the value stays");
    assert_eq!(
        *f.errors.lock().expect("not poisoned"),
        vec![(3, "database unavailable".to_string())]
    );
    assert_eq!(f.cache.refresh_stats().failed, 1);
    // No retry within the refresh period, however many reads.
    for _ in 0..50 {
        f.cache.get(&3);
        f.clock.advance(Duration::from_millis(100));
    }
    assert_eq!(f.spawned.len(), 0, "retried within the refresh period");
    // Without a stale window the entry expires at its TTL as usual.
    f.clock.advance(TTL);
    assert_eq!(f.cache.get(&3), None);
    assert_eq!(f.spawned.len(), 0);
}

#[test]
fn past_ttl_a_stale_value_is_served_within_the_window_only() {
    let window = Duration::from_secs(60);
    let f = fixture(Some(window));
    f.cache.insert(1, 1);
    f.failing.store(true, Ordering::SeqCst);
    f.clock.advance(TTL);
    assert_eq!(f.cache.get_with_freshness(&1), Some((1, Freshness::Stale)));
    assert_eq!(f.cache.get(&1), Some(1));
    // Invisible to every other view.
    assert!(!f.cache.contains_key(&1));
    assert_eq!(f.cache.ttl(&1), None);
    assert_eq!(f.cache.get_with_ttl(&1), None);
    assert_eq!(f.cache.refresh_stats().stale_served, 2);
    assert_eq!(f.spawned.run_ok(), 1, "one reload for both reads");
    f.clock.advance(window - Duration::from_millis(1));
    assert_eq!(f.cache.get(&1), Some(1));
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(f.cache.get(&1), None, "past the window");
    assert_eq!(f.cache.get_with_freshness(&1), None);
}

#[test]
fn a_stale_entry_is_replaced_by_its_reload() {
    let f = fixture(Some(Duration::from_secs(60)));
    f.cache.insert(1, 1);
    f.clock.advance(TTL + Duration::from_secs(30));
    assert_eq!(f.cache.get(&1), Some(1));
    f.spawned.run_ok();
    assert_eq!(
        f.cache.get_with_freshness(&1),
        Some((1001, Freshness::Fresh))
    );
    assert!(f.cache.contains_key(&1));
    assert_eq!(f.cache.ttl(&1), Some(Some(TTL)));
}

#[test]
fn without_a_stale_window_expiry_is_unchanged() {
    let f = fixture(None);
    f.cache.insert(1, 1);
    f.clock.advance(TTL);
    assert_eq!(f.cache.get(&1), None);
    assert_eq!(f.cache.get_with_freshness(&1), None);
    assert!(!f.cache.contains_key(&1));
    assert_eq!(f.cache.iter().count(), 0);
    assert_eq!(f.spawned.len(), 0);
}

#[test]
fn a_reload_never_brings_back_a_removed_entry() {
    let f = fixture(None);
    f.cache.insert(5, 5);
    f.clock.advance(AFTER);
    f.cache.get(&5);
    f.cache.remove(&5);
    f.spawned.run_ok();
    assert_eq!(f.cache.get(&5), None);
}

#[test]
fn a_reload_never_overwrites_a_newer_write() {
    let f = fixture(None);
    f.cache.insert(5, 5);
    f.clock.advance(AFTER);
    f.cache.get(&5); // a reload is now in flight
    f.cache.insert(5, 50);
    assert_eq!(f.spawned.run_ok(), 1);
    assert_eq!(
        f.cache.get(&5),
        Some(50),
        "the reload read the source before"
    );
    // A reload that nothing overtook still lands.
    f.clock.advance(AFTER);
    f.cache.get(&5);
    assert_eq!(f.spawned.run_ok(), 1);
    assert_eq!(f.cache.get(&5), Some(1005));
}

#[test]
fn entries_without_a_deadline_are_never_refreshed() {
    let f = fixture(None);
    f.cache
        .try_insert_with_expiry(9, 9, None)
        .expect("room for it");
    f.clock.advance(TTL * 10);
    assert_eq!(f.cache.get_with_freshness(&9), Some((9, Freshness::Fresh)));
    assert_eq!(f.spawned.len(), 0);
}

#[test]
fn loads_through_the_cache_serve_the_stale_value_and_run_no_loader() {
    let f = fixture(Some(Duration::from_secs(60)));
    f.cache.insert(2, 2);
    f.clock.advance(TTL + Duration::from_secs(1));
    // A read-through load in the stale window is a read: it gets the stale
    // value at once, and the one reload it started is the only load.
    for _ in 0..10 {
        let v = f
            .cache
            .get_or_insert_with(2, || panic!("a second load of the key ran"));
        assert_eq!(v, 2);
    }
    assert_eq!(f.spawned.run_ok(), 1);
    assert_eq!(f.cache.get_or_insert_with(2, || unreachable!()), 1002);
}

#[test]
fn a_load_after_removal_is_not_blocked_by_the_reload() {
    let f = fixture(None);
    f.cache.insert(4, 4);
    f.clock.advance(AFTER);
    f.cache.get(&4); // a reload is now in flight
    f.cache.remove(&4);
    let cache = f.cache.clone();
    let foreground = std::thread::spawn(move || cache.get_or_insert_with(4, || 44));
    // The foreground load waits for the reload in flight; the reload finds
    // the entry gone, does not store, and hands the load back.
    f.spawned.run_ok();
    assert_eq!(foreground.join().expect("load completed"), 44);
    assert_eq!(f.cache.get(&4), Some(44));
}

#[test]
fn the_sync_pool_loads_each_due_key_once_under_concurrent_reads() {
    let clock = MockClock::new();
    let loads = Arc::new(AtomicU64::new(0));
    let l = loads.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_threads(2)
        .refresh_loader(move |k: &u64| {
            l.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            Ok::<_, std::io::Error>(k + 100)
        })
        .build()
        .expect("valid settings");
    for k in 0..10 {
        cache.insert(k, k);
    }
    clock.advance(AFTER);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    for k in 0..10 {
                        let v = cache.get(&k).expect("never a miss");
                        assert!(v == k || v == k + 100);
                    }
                }
            });
        }
    });
    // Wait (bounded) for the pool to finish.
    for _ in 0..2_000 {
        if cache.refresh_stats().succeeded == 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(cache.refresh_stats().succeeded, 10);
    assert_eq!(loads.load(Ordering::SeqCst), 10, "one load per key");
    for k in 0..10 {
        assert_eq!(cache.get(&k), Some(k + 100));
    }
}

#[test]
fn dropping_the_last_handle_stops_the_pool() {
    let loader_alive = Arc::new(());
    let held = loader_alive.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_loader(move |k: &u64| {
            let _ = &held;
            Ok::<_, std::io::Error>(*k)
        })
        .build()
        .expect("valid settings");
    assert_eq!(Arc::strong_count(&loader_alive), 2);
    drop(cache);
    assert_eq!(
        Arc::strong_count(&loader_alive),
        1,
        "loader freed with the cache"
    );
}

#[test]
fn reloads_queued_when_the_cache_is_dropped_never_run() {
    let clock = MockClock::new();
    let called = Arc::new(Mutex::new(Vec::new()));
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Arc::new(Mutex::new(blocked));
    let loader_alive = Arc::new(());
    let (held, seen) = (loader_alive.clone(), called.clone());
    let cache: Cache<u64, u64> = Cache::builder()
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_threads(1)
        .refresh_loader(move |k: &u64| {
            let _ = &held;
            seen.lock().expect("not poisoned").push(*k);
            if *k == 1 {
                // The first reload holds the pool's one thread.
                let _ = blocked.lock().expect("not poisoned").recv();
            }
            Ok::<_, std::io::Error>(*k)
        })
        .build()
        .expect("valid settings");
    for k in 1..=3 {
        cache.insert(k, 0);
    }
    clock.advance(AFTER + Duration::from_secs(1));
    assert_eq!(cache.get(&1), Some(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while called.lock().expect("not poisoned").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first reload never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Two more reloads queue behind the blocked one.
    assert_eq!(cache.get(&2), Some(0));
    assert_eq!(cache.get(&3), Some(0));
    assert_eq!(cache.refresh_stats().started, 3);
    drop(cache);
    release.send(()).expect("the loader waits");
    // Every copy of the loader is gone once the pool's thread has ended.
    while Arc::strong_count(&loader_alive) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool kept its loader"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(*called.lock().expect("not poisoned"), vec![1]);
}

#[test]
fn settings_that_cannot_work_fail_the_build() {
    let ok = |k: &u64| Ok::<_, std::io::Error>(*k);
    let invalid =
        |r: Result<Cache<u64, u64>, BuildError>| matches!(r, Err(BuildError::InvalidRefresh(_)));
    assert!(invalid(
        Cache::builder()
            .refresh_after(AFTER)
            .refresh_loader(ok)
            .build()
    ));
    assert!(invalid(
        Cache::builder()
            .time_to_live(TTL)
            .refresh_after(AFTER)
            .build()
    ));
    assert!(invalid(
        Cache::builder()
            .time_to_live(TTL)
            .refresh_after(TTL)
            .refresh_loader(ok)
            .build()
    ));
    assert!(invalid(
        Cache::builder()
            .time_to_live(TTL)
            .refresh_after(Duration::ZERO)
            .refresh_loader(ok)
            .build()
    ));
    assert!(invalid(
        Cache::builder()
            .time_to_live(TTL)
            .refresh_after(AFTER)
            .serve_stale_for(Duration::ZERO)
            .refresh_loader(ok)
            .build()
    ));
    assert!(invalid(
        Cache::builder()
            .time_to_live(TTL)
            .refresh_after(AFTER)
            .refresh_threads(0)
            .refresh_loader(ok)
            .build()
    ));
    assert!(Cache::<u64, u64>::builder()
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .serve_stale_for(Duration::from_secs(30))
        .refresh_loader(ok)
        .build()
        .is_ok());
}

#[test]
fn stale_if_error_serves_an_expired_value_only_when_the_load_fails() {
    let clock = MockClock::new();
    let window = Duration::from_secs(120);
    let cache: Cache<u64, u64> = Cache::builder()
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .stale_if_error_for(window)
        .refresh_loader(|_: &u64| Err::<u64, _>("database unavailable"))
        .build()
        .expect("valid settings");
    cache.insert(1, 1);
    clock.advance(TTL);
    // Expired for plain reads and every other view.
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get_with_freshness(&1), None);
    assert!(!cache.contains_key(&1));
    // A failing read-through load gets the expired value instead of the error...
    assert_eq!(cache.try_get_or_insert_with(1, || Err("db down")), Ok(1));
    assert_eq!(cache.refresh_stats().stale_served, 1);
    // ...a succeeding one gets its own value.
    assert_eq!(cache.try_get_or_insert_with(1, || Ok::<_, &str>(2)), Ok(2));
    cache.insert(3, 3);
    clock.advance(TTL + window);
    // Past the window the error comes through.
    let err = cache
        .try_get_or_insert_with(3, || Err("db down"))
        .expect_err("past the stale-if-error window");
    assert_eq!(*err, "db down");
}

#[tokio::test(flavor = "current_thread")]
async fn stale_if_error_applies_to_async_loads() {
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .stale_if_error_for(Duration::from_secs(60))
        .refresh_loader(|_: &u64| Err::<u64, _>("database unavailable"))
        .build()
        .expect("valid settings");
    cache.insert(1, 1);
    clock.advance(TTL + Duration::from_secs(59));
    let got = cache
        .try_get_or_insert_with_async(1, async { Err::<u64, _>("db down") })
        .await;
    assert_eq!(got, Ok(1));
}

#[test]
fn a_reload_landing_after_expiry_still_stores_and_serves_the_waiters() {
    let f = fixture(None);
    f.cache.insert(6, 6);
    f.clock.advance(TTL - Duration::from_millis(1));
    assert_eq!(f.cache.get(&6), Some(6)); // due: a reload starts
    f.clock.advance(Duration::from_millis(2)); // expires while it loads
    assert_eq!(f.cache.get(&6), None);
    assert_eq!(f.cache.iter().count(), 0, "invisible to iteration");
    let cache = f.cache.clone();
    let foreground = std::thread::spawn(move || {
        cache.get_or_insert_with(6, || panic!("a second load of the key ran"))
    });
    f.spawned.run_ok();
    assert_eq!(foreground.join().expect("one load"), 1006);
    assert_eq!(f.cache.get(&6), Some(1006));
}

#[test]
fn a_panicking_sync_loader_counts_as_a_failure_and_keeps_the_pool() {
    let clock = MockClock::new();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_threads(1)
        .refresh_loader(move |k: &u64| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("loader bug");
            }
            Ok::<_, std::io::Error>(k + 1)
        })
        .build()
        .expect("valid settings");
    let wait_for = |what: &dyn Fn() -> bool| {
        for _ in 0..5_000 {
            if what() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("timed out");
    };
    cache.insert(1, 1);
    cache.insert(2, 2);
    clock.advance(AFTER);
    assert_eq!(cache.get(&1), Some(1));
    wait_for(&|| cache.refresh_stats().failed == 1);
    assert_eq!(cache.get(&1), Some(1), "the value stays");
    // The one pool thread survived the panic and serves the next reload.
    assert_eq!(cache.get(&2), Some(2));
    wait_for(&|| cache.refresh_stats().succeeded == 1);
    assert_eq!(cache.get(&2), Some(3));
}

#[test]
fn more_failing_keys_than_the_default_memory_still_wait_a_period() {
    // 10,000 cached keys whose source fails at once: each is reloaded once,
    // then not again within the refresh period, however often it is read.
    const KEYS: u64 = 10_000;
    let clock = MockClock::new();
    let spawned = Spawned::default();
    let loads = Arc::new(AtomicU64::new(0));
    let (s, n) = (spawned.clone(), loads.clone());
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(2 * KEYS)
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .refresh_loader_async(
            move |_k: u64| {
                n.fetch_add(1, Ordering::SeqCst);
                async move { Err::<u64, _>("database unavailable") }
            },
            move |job| s.push(job),
        )
        .build()
        .expect("valid settings");
    for k in 0..KEYS {
        cache.insert(k, k);
    }
    clock.advance(AFTER);
    for _ in 0..3 {
        for k in 0..KEYS {
            assert_eq!(cache.get(&k), Some(k), "the value stays");
        }
        spawned.run_ok();
    }
    assert_eq!(loads.load(Ordering::SeqCst), KEYS, "one reload per key");
    assert_eq!(cache.refresh_stats().failed, KEYS);
}
