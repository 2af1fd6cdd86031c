//! A background rewrite that panics (here: a value whose `Serialize` panics
//! on the rewrite's thread) must not stop every later one: the log keeps
//! being compacted once the cause is gone.

#![allow(clippy::unwrap_used)]

use shardcache::persist::{FileLog, Fsync, MemStorage};
use shardcache::Cache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether a value encoded on a background rewrite's thread panics.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Panics raised so far.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// A value whose encoding panics on the rewrite thread while [`ARMED`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Touchy(u64);

impl serde::Serialize for Touchy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let on_rewrite = std::thread::current().name() == Some("shardcache-rewrite");
        if on_rewrite && ARMED.load(Ordering::SeqCst) {
            PANICS.fetch_add(1, Ordering::SeqCst);
            panic!("a value that cannot be encoded on the rewrite thread");
        }
        s.serialize_u64(self.0)
    }
}

/// Overwrites one key until the log, grown past `min` bytes, is compacted
/// below `min` by a background rewrite; false if none happened in `within`.
fn compacted(
    cache: &Cache<u64, Touchy>,
    storage: &MemStorage,
    min: usize,
    within: Duration,
) -> bool {
    let start = Instant::now();
    let mut grew = false;
    let mut i = 0;
    while start.elapsed() < within {
        cache.insert(1, Touchy(i));
        i += 1;
        let len = storage.len();
        if len > min {
            grew = true;
        } else if grew {
            return true;
        }
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    false
}

#[test]
fn a_panicking_background_rewrite_does_not_stop_later_ones() {
    let storage = MemStorage::new();
    let min = 4096;
    let log = FileLog::with_storage(storage.clone(), Fsync::EverySecond)
        .write_delay(Duration::ZERO)
        .rewrite_policy(100, min as u64);
    let (cache, _) = Cache::<u64, Touchy>::builder()
        .max_capacity(100)
        .build_persistent(log)
        .unwrap();
    assert!(
        compacted(&cache, &storage, min, Duration::from_secs(20)),
        "no background rewrite compacted the log at all"
    );
    ARMED.store(true, Ordering::SeqCst);
    let start = Instant::now();
    while PANICS.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no background rewrite ran while armed"
        );
        cache.insert(1, Touchy(7));
        std::thread::sleep(Duration::from_micros(200));
    }
    ARMED.store(false, Ordering::SeqCst);
    // The panicked rewrite left the live log as it was.
    assert_eq!(cache.get(&1), Some(Touchy(7)));
    assert!(
        compacted(&cache, &storage, min, Duration::from_secs(20)),
        "after one background rewrite panicked, none compacted the log again"
    );
    drop(cache);
    let log = FileLog::with_storage(storage.clone(), Fsync::EverySecond);
    let (cache, _) = Cache::<u64, Touchy>::builder()
        .max_capacity(100)
        .build_persistent(log)
        .unwrap();
    assert!(cache.get(&1).is_some());
}
