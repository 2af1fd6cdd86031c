//! Log rewrites (compaction): what a rewritten log loads, writes racing a
//! rewrite, faults and power loss at every step of one, and automatic
//! rewrites as the log grows.

use shardcache::persist::{FileLog, Fsync, MemStorage, PersistError, WriteAheadLog};
use shardcache::Cache;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn mem_cache(storage: &MemStorage, fsync: Fsync) -> Cache<u32, String> {
    let log = FileLog::with_storage(storage.clone(), fsync).rewrite_policy(0, 0);
    Cache::builder()
        .max_capacity(100_000)
        .build_persistent(log)
        .expect("load")
        .0
}

fn contents(cache: &Cache<u32, String>) -> BTreeMap<u32, String> {
    cache.iter().collect()
}

#[test]
fn a_rewrite_compacts_and_loads_the_same_entries() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Never);
    for round in 0..10 {
        for k in 0..200 {
            cache.insert(k, format!("v{k}.{round}"));
        }
    }
    for k in 0..50 {
        cache.remove(&k);
    }
    cache.insert_with_ttl(7, "short".into(), Duration::from_secs(3600));
    cache.sync().expect("sync");
    let before = storage.len();
    cache.rewrite_log().expect("rewrite");
    let after = storage.len();
    assert!(
        after * 5 < before,
        "rewrite should shrink the log: {before} -> {after} bytes"
    );
    let want = contents(&cache);
    drop(cache);
    let reopened = mem_cache(&storage, Fsync::Never);
    assert_eq!(contents(&reopened), want);
    let ttl = reopened
        .ttl(&7)
        .flatten()
        .expect("the TTL survives a rewrite");
    assert!(ttl > Duration::from_secs(3500) && ttl <= Duration::from_secs(3600));
}

#[test]
fn writes_racing_a_rewrite_are_not_lost() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Never);
    for k in 0..2_000 {
        cache.insert(k, "initial".into());
    }
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let cache = cache.clone();
            s.spawn(move || {
                for round in 0..30 {
                    for k in (t..2_000).step_by(3) {
                        if (k + round) % 11 == 0 {
                            cache.remove(&k);
                        } else {
                            cache.insert(k, format!("{k}.{round}"));
                        }
                    }
                }
            });
        }
        let cache = cache.clone();
        s.spawn(move || {
            for _ in 0..20 {
                cache.rewrite_log().expect("rewrite");
            }
        });
    });
    let want = contents(&cache);
    drop(cache);
    assert_eq!(contents(&mem_cache(&storage, Fsync::Never)), want);
}

#[test]
fn a_fault_at_any_step_of_a_rewrite_loses_no_acknowledged_write() {
    // Count the storage calls one rewrite of this log makes, then fail each
    // of them in turn (and everything after it), and lose power.
    let calls_in_a_rewrite = 40;
    for fail_at in 0..calls_in_a_rewrite {
        for keep in [0usize, 5] {
            let storage = MemStorage::new();
            let cache = mem_cache(&storage, Fsync::Always);
            let mut acked = BTreeMap::new();
            for k in 0..30u32 {
                cache.insert(k, format!("a{k}"));
                acked.insert(k, format!("a{k}"));
            }
            cache.sync().expect("nothing failed yet");
            storage.fail_after(fail_at);
            let rewritten = cache.rewrite_log();
            // Writes after the fault: acknowledged only if a sync succeeds.
            for k in 0..10u32 {
                cache.insert(k, format!("b{k}"));
            }
            if rewritten.is_ok() && cache.sync().is_ok() {
                for k in 0..10u32 {
                    acked.insert(k, format!("b{k}"));
                }
            }
            storage.power_loss(keep);
            drop(cache);
            let reopened = mem_cache(&storage, Fsync::Always);
            for (k, v) in &acked {
                let got = reopened.get(k);
                // An unacknowledged overwrite may or may not have landed.
                let also_ok = got.as_deref() == Some(&format!("b{k}")[..]);
                assert!(
                    got.as_ref() == Some(v) || also_ok,
                    "fault at call {fail_at}, keep {keep}: key {k} is {got:?}, acknowledged {v}"
                );
            }
        }
    }
}

#[test]
fn a_power_loss_before_the_directory_sync_keeps_the_old_log() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Always);
    for k in 0..20u32 {
        cache.insert(k, format!("v{k}"));
    }
    let old = storage.len();
    // begin (1), header (2), 20 records (22), tail (23), fsync (24), rename (25):
    // the directory sync, 26th, fails, and so does the sync the rewrite
    // retries it with.
    storage.fail_after(25);
    let err = cache
        .rewrite_log()
        .expect_err("the swap happened but could not be made durable");
    assert!(
        err.to_string().contains("could not be made durable"),
        "{err}"
    );
    // Nothing is acknowledged on the replacement's word: writes wait for
    // a repair.
    assert!(cache.durably(|| cache.insert(100, "x".into())).is_err());
    storage.power_loss(0);
    assert_eq!(storage.len(), old, "the rename was undone with the power");
    drop(cache);
    assert_eq!(mem_cache(&storage, Fsync::Always).len(), 20);
}

/// The same failure, healed before the replacement's own sync: that sync
/// retries the directory's, and the rewrite succeeds.
#[test]
fn a_directory_sync_that_fails_once_is_retried_by_the_rewrite() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Always);
    for k in 0..20u32 {
        cache.insert(k, format!("v{k}"));
    }
    // Twenty records more, which the rewrite drops.
    for k in 0..20u32 {
        cache.insert(k, format!("w{k}"));
    }
    let old = storage.len();
    // The directory sync (26th call) fails once; the sync after it works.
    storage.fail_once_after(25);
    cache.rewrite_log().expect("retried");
    storage.power_loss(0);
    assert!(storage.len() < old, "the rename was made durable");
    drop(cache);
    let reopened = mem_cache(&storage, Fsync::Always);
    assert_eq!(reopened.len(), 20);
    assert_eq!(reopened.get(&7).as_deref(), Some("w7"));
}

#[test]
fn file_rewrite_keeps_the_lock_and_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let log = FileLog::open(&path, Fsync::Always).expect("open");
    let (cache, _) = Cache::<u32, u32>::builder()
        .max_capacity(1_000)
        .build_persistent(log)
        .expect("load");
    for round in 0..20 {
        for k in 0..100 {
            cache.insert(k, k + round);
        }
    }
    let before = std::fs::metadata(&path).expect("stat").len();
    cache.rewrite_log().expect("rewrite");
    let after = std::fs::metadata(&path).expect("stat").len();
    assert!(after * 10 < before, "{before} -> {after}");
    assert!(
        matches!(
            FileLog::open(&path, Fsync::Always),
            Err(PersistError::Locked { .. })
        ),
        "the rewritten log is still locked"
    );
    assert!(!dir.path().join("c.log.rewrite").exists());
    cache.insert(1000, 1);
    drop(cache);
    // A stale replacement from a crashed rewrite is ignored and removed.
    std::fs::write(dir.path().join("c.log.rewrite"), b"half a rewrite").expect("write");
    let log = FileLog::open(&path, Fsync::Always).expect("reopen");
    assert!(!dir.path().join("c.log.rewrite").exists());
    let (cache, report) = Cache::<u32, u32>::builder()
        .max_capacity(1_000)
        .build_persistent(log)
        .expect("load");
    assert_eq!(report.records, 101);
    assert_eq!(cache.get(&5), Some(5 + 19));
    assert_eq!(cache.get(&1000), Some(1));
}

/// The log's size without the zeros the file is grown by ahead of it.
fn log_bytes(path: &std::path::Path) -> u64 {
    let bytes = std::fs::read(path).expect("read");
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

#[test]
fn the_log_is_rewritten_automatically_as_it_grows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("auto.log");
    let log = FileLog::open(&path, Fsync::Never).expect("open");
    let log = log.rewrite_policy(100, 16 << 10);
    let (cache, _) = Cache::<u32, u64>::builder()
        .max_capacity(1_000)
        .build_persistent(log)
        .expect("load");
    let mut peak = 0;
    for i in 0..50_000u64 {
        cache.insert((i % 100) as u32, i);
        if i % 1000 == 0 {
            peak = peak.max(log_bytes(&path));
        }
    }
    // The background rewrite runs on its own thread: wait for it to land.
    // A rewrite that ran during the burst above also carried over every
    // record appended meanwhile, so keep writing until the log has doubled
    // again and a rewrite runs in a quieter moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut size = u64::MAX;
    while Instant::now() < deadline {
        for k in 0..100 {
            cache.insert(k, 49_900);
        }
        size = log_bytes(&path);
        if size < 64 << 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // 50k records of ~12 bytes would be ~600 KB without rewrites.
    assert!(size < 64 << 10, "log is {size} bytes, peak {peak}");
    cache.sync().expect("no rewrite failed");
    let want: BTreeMap<u32, u64> = cache.iter().collect();
    drop(cache);
    // A background rewrite still running ended with the drop.
    let log = FileLog::open(&path, Fsync::Never).expect("reopen");
    let (cache, _) = Cache::<u32, u64>::builder()
        .max_capacity(1_000)
        .build_persistent(log)
        .expect("load");
    assert_eq!(cache.iter().collect::<BTreeMap<_, _>>(), want);
}

#[test]
fn logs_that_never_ask_are_not_rewritten() {
    let log = FileLog::with_storage(MemStorage::new(), Fsync::Never).rewrite_policy(0, 0);
    assert!(!log.wants_rewrite());
}

#[test]
fn settings_apply_to_every_fsync_mode() {
    // EverySecond starts a flusher thread at construction; the settings
    // must still take.
    for fsync in [Fsync::Always, Fsync::EverySecond, Fsync::Never] {
        let storage = MemStorage::new();
        let log = FileLog::with_storage(storage.clone(), fsync).rewrite_policy(100, 0);
        let (cache, _) = Cache::<u32, u32>::builder()
            .max_capacity(100)
            .build_persistent(log)
            .expect("load");
        let header = storage.len();
        // Synced each time so the storage grows in step with the writes.
        while storage.len() < 3 * header {
            cache.insert(1, 1);
            cache.sync().expect("sync");
        }
        // The automatic rewrite (100 %, no minimum, checked after each
        // write) keeps the log small. One write now and then triggers it;
        // more would regrow the log.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut poked: Option<Instant> = None;
        while storage.len() >= 3 * header && Instant::now() < deadline {
            if poked.is_none_or(|t| t.elapsed() > Duration::from_millis(50)) {
                cache.insert(1, 1);
                cache.sync().expect("sync");
                poked = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(storage.len() < 3 * header, "{fsync:?}: no rewrite happened");

        let bytes = storage.len();
        drop(cache);
        let corrupt = MemStorage::new();
        {
            use shardcache::persist::Storage;
            let mut data = storage.read_all().expect("read");
            data.truncate(bytes - 1);
            corrupt.append(&data).expect("write");
        }
        let refused = FileLog::with_storage(corrupt, fsync)
            .on_corrupt_tail(shardcache::persist::OnCorruptTail::Refuse);
        assert!(
            matches!(
                Cache::<u32, u32>::builder()
                    .max_capacity(100)
                    .build_persistent(refused),
                Err(PersistError::CorruptTail { .. })
            ),
            "{fsync:?}: Refuse was ignored"
        );
    }
}
