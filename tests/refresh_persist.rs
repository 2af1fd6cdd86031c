//! A persistent cache with refresh windows: a restart keeps each entry's
//! time to live and stale window where they were (the log holds the
//! deadline the windows extend, and replay installs it as it is).

use shardcache::persist::{FileLog, Fsync};
use shardcache::{Cache, Freshness, MockClock};
use std::path::Path;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(300);
const AFTER: Duration = Duration::from_secs(240);
const WINDOW: Duration = Duration::from_secs(120);
const SEC: Duration = Duration::from_secs(1);

fn open(path: &Path, clock: &MockClock) -> Cache<u64, u64> {
    let log = FileLog::open(path, Fsync::Always).expect("log");
    Cache::builder()
        .clock(clock.clone())
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .serve_stale_for(WINDOW)
        .refresh_loader_async(
            |k: u64| async move { Ok::<_, std::io::Error>(k) },
            |_job| {},
        )
        .build_persistent(log)
        .expect("opened")
        .0
}

#[test]
fn restarts_keep_time_to_live_and_stale_window() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache.log");
    let clock = MockClock::new();
    let cache = open(&path, &clock);
    cache.insert(1, 10);
    assert!(cache.set_ttl(&1, Some(200 * SEC)));
    cache.insert(2, 20);
    clock.advance(100 * SEC);
    drop(cache);

    // Restarted twice: neither restart moves a deadline.
    for _ in 0..2 {
        let cache = open(&path, &clock);
        assert_eq!(cache.ttl(&1), Some(Some(100 * SEC)));
        assert_eq!(cache.ttl(&2), Some(Some(200 * SEC)));
    }
    clock.advance(210 * SEC); // 310 s: 1 and 2 are past their time to live
    let cache = open(&path, &clock);
    assert!(!cache.contains_key(&2));
    assert_eq!(cache.get_with_freshness(&2), Some((20, Freshness::Stale)));
    // 1 ended at 200 s, its window at 320 s.
    assert_eq!(cache.get_with_freshness(&1), Some((10, Freshness::Stale)));
    drop(cache);

    // Restarted inside the window: it ends where it did.
    clock.advance(10 * SEC - Duration::from_millis(1));
    let cache = open(&path, &clock);
    assert_eq!(cache.get_with_freshness(&1), Some((10, Freshness::Stale)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get_with_freshness(&1), None);
    clock.advance(100 * SEC - Duration::from_millis(1)); // 420 s less 1 ms
    assert_eq!(cache.get_with_freshness(&2), Some((20, Freshness::Stale)));
    drop(cache);
    let cache = open(&path, &clock);
    assert_eq!(cache.get_with_freshness(&2), Some((20, Freshness::Stale)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get_with_freshness(&2), None);
}

/// A time to live shortened, then lengthened again: replayed at a moment
/// when the first write's deadline has the entry in its stale window and
/// the second's has passed, the third still brings it back.
#[test]
fn a_replayed_time_to_live_lifted_again_keeps_the_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache.log");
    let clock = MockClock::new();
    let cache = open(&path, &clock);
    cache.insert(1, 10);
    clock.advance(10 * SEC);
    assert!(cache.set_ttl(&1, Some(5 * SEC)));
    clock.advance(2 * SEC);
    assert!(cache.set_ttl(&1, Some(1000 * SEC))); // to 1012 s
    drop(cache);
    clock.advance(338 * SEC); // 350 s
    let cache = open(&path, &clock);
    assert_eq!(cache.ttl(&1), Some(Some(662 * SEC)));
    assert_eq!(cache.get_with_freshness(&1), Some((10, Freshness::Fresh)));
}

/// An entry past its TTL, inside the stale window, that `retain` drops is
/// not served again after a restart.
#[test]
fn an_entry_retain_drops_inside_a_stale_window_stays_dropped_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache.log");
    let clock = MockClock::new();
    let cache = open(&path, &clock);
    cache.insert(1, 10);
    cache.insert(2, 20);
    clock.advance(TTL + WINDOW / 4);
    cache.retain(|&k, _| k != 2);
    cache.sync().expect("synced");
    drop(cache);
    let cache = open(&path, &clock);
    assert_eq!(cache.get_with_freshness(&2), None);
    assert_eq!(
        cache.get_with_freshness(&1).map(|(v, _)| v),
        Some(10),
        "kept"
    );
}
