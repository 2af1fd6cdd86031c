//! Persistence: reload after restart, TTLs across restarts, torn and
//! corrupt logs, injected I/O failures and simulated power loss. The SIGKILL
//! crash test is in `persist_crash.rs`.

use shardcache::persist::{
    FileLog, Fsync, MemStorage, OnCorruptTail, PersistError, RecoveryReport, Storage,
};
use shardcache::{Cache, MockClock};
use std::time::Duration;

/// A cache loaded from `log`, with what loading found.
fn load<S: Storage>(log: FileLog<S>) -> (Cache<u32, String>, RecoveryReport) {
    Cache::builder()
        .max_capacity(10_000)
        .build_persistent(log)
        .expect("load")
}

fn mem_cache(storage: &MemStorage, fsync: Fsync) -> Cache<u32, String> {
    load(FileLog::with_storage(storage.clone(), fsync)).0
}

/// A `u32 -> u32` cache on `storage` (under `Fsync::Always`) whose clock is `clock`.
fn clocked(storage: &MemStorage, clock: MockClock) -> (Cache<u32, u32>, RecoveryReport) {
    Cache::builder()
        .clock(clock)
        .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
        .expect("load")
}

#[test]
fn writes_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    {
        let log = FileLog::open(&path, Fsync::Always).expect("open");
        let (cache, report) = Cache::<String, u64>::builder()
            .max_capacity(100)
            .build_persistent(log)
            .expect("load");
        assert_eq!(report.records, 0);
        for i in 0..20 {
            cache.insert(format!("k{i}"), i);
        }
        cache.remove("k3");
        cache.insert("k4".into(), 400);
        cache.invalidate_if(|k, _| k == "k5");
        assert!(cache.set_ttl("k6", Some(Duration::from_secs(3600))));
        cache.sync().expect("no log error");
    }
    let log = FileLog::open(&path, Fsync::Always).expect("reopen");
    let (cache, report) = Cache::<String, u64>::builder()
        .max_capacity(100)
        .build_persistent(log)
        .expect("reload");
    assert_eq!(report.stopped_at, None);
    assert_eq!(cache.len(), 18);
    assert_eq!(cache.get("k3"), None);
    assert_eq!(cache.get("k5"), None);
    assert_eq!(cache.get("k4"), Some(400));
    assert!(cache
        .ttl("k6")
        .flatten()
        .is_some_and(|t| t > Duration::from_secs(3500)));
    cache.clear();
    drop(cache);
    let log = FileLog::open(&path, Fsync::Always).expect("reopen");
    let (cache, _) = Cache::<String, u64>::builder()
        .max_capacity(100)
        .build_persistent(log)
        .expect("reload");
    assert!(cache.is_empty(), "clear is logged");
}

#[test]
fn a_second_opener_gets_a_locked_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let _first = FileLog::open(&path, Fsync::Never).expect("open");
    match FileLog::open(&path, Fsync::Never) {
        Err(e @ PersistError::Locked { .. }) => assert!(e.to_string().contains("c.log")),
        other => panic!("expected Locked, got {:?}", other.err()),
    }
}

/// A lock held by a process forked while the log was open (until it execs)
/// lasts a moment; a reopen right after the close waits it out instead of
/// failing. Here a second handle on the file plays the child: it holds the
/// lock for a moment after the log is dropped.
#[test]
fn a_reopen_waits_out_a_lock_released_a_moment_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    drop(FileLog::open(&path, Fsync::Never).expect("create"));
    let held = std::fs::File::open(&path).expect("open");
    held.try_lock().expect("the stand-in child takes the lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
    });
    FileLog::open(&path, Fsync::Never).expect("the reopen waits for the release");
    release.join().expect("release");
}

#[test]
fn foreign_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    std::fs::write(&path, b"this is not a log at all").expect("write");
    let err = Cache::<u32, u32>::builder()
        .build_persistent(FileLog::open(&path, Fsync::Never).expect("open"))
        .expect_err("refused");
    assert!(matches!(err, PersistError::NotALog { .. }), "{err}");

    let storage = MemStorage::new();
    drop(mem_cache(&storage, Fsync::Never));
    let other_types = Cache::<String, u32>::builder()
        .build_persistent(FileLog::with_storage(storage, Fsync::Never));
    assert!(matches!(
        other_types.err(),
        Some(PersistError::Fingerprint { .. })
    ));
}

#[test]
fn ttls_are_wall_clock_and_expired_entries_are_not_loaded() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    {
        let (cache, _) = clocked(&storage, clock.clone());
        cache.insert_with_ttl(1, 1, Duration::from_secs(10));
        cache.insert_with_ttl(2, 2, Duration::from_secs(100));
        cache.insert(3, 3);
    }
    // "Restart" 50 s later on the wall clock.
    let later = MockClock::new();
    later.set_wall(shardcache::Clock::wall(&clock) + Duration::from_secs(50));
    let (cache, report) = clocked(&storage, later);
    assert_eq!(report.expired, 1);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&3), Some(3));
    let ttl = cache.ttl(&2).flatten().expect("still expiring");
    assert!(
        ttl <= Duration::from_secs(50) && ttl > Duration::from_secs(49),
        "{ttl:?}"
    );
}

/// An entry whose insert-time expiry has passed but whose TTL was extended
/// later in the log (a sliding expiry) is loaded with the extended TTL.
#[test]
fn a_ttl_extended_after_the_insert_survives_past_the_original_expiry() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    {
        let (cache, _) = clocked(&storage, clock.clone());
        cache.insert_with_ttl(1, 1, Duration::from_secs(10));
        cache.insert_with_ttl(2, 2, Duration::from_secs(10));
        assert!(cache.set_ttl(&1, Some(Duration::from_secs(100))));
        assert!(cache.set_ttl(&2, Some(Duration::from_secs(100))));
        cache.remove(&2);
    }
    let later = MockClock::new();
    later.set_wall(shardcache::Clock::wall(&clock) + Duration::from_secs(50));
    let (cache, report) = clocked(&storage, later);
    assert_eq!(
        cache.get(&1),
        Some(1),
        "the extended TTL was lost on replay"
    );
    assert_eq!(cache.get(&2), None, "a removed entry came back");
    let ttl = cache.ttl(&1).flatten().expect("still expiring");
    assert!(ttl > Duration::from_secs(49) && ttl <= Duration::from_secs(50));
    assert_eq!(report.expired, 0);
}

/// The log bytes after `n` inserts of keys 0..n.
fn log_of(n: u32) -> Vec<u8> {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Always);
    for i in 0..n {
        cache.insert(i, format!("value-{i}"));
    }
    drop(cache);
    storage_bytes(&storage)
}

fn storage_bytes(storage: &MemStorage) -> Vec<u8> {
    use shardcache::persist::Storage;
    storage.read_all().expect("read")
}

fn storage_with(bytes: &[u8]) -> MemStorage {
    use shardcache::persist::Storage;
    let s = MemStorage::new();
    s.append(bytes).expect("append");
    s
}

#[test]
fn every_torn_tail_loads_its_valid_prefix() {
    let full = log_of(6);
    let header = 20;
    for cut in header..=full.len() {
        let storage = storage_with(&full[..cut]);
        // A torn log still loads.
        let (cache, report) = load(FileLog::with_storage(storage.clone(), Fsync::Never));
        let n = cache.len() as u32;
        assert_eq!(report.records, u64::from(n));
        for i in 0..n {
            assert_eq!(
                cache.get(&i),
                Some(format!("value-{i}")),
                "cut {cut}: prefix must be complete"
            );
        }
        // The tail was cut away: the log now ends at the valid prefix.
        assert_eq!(storage.len() as u64 + report.bytes_discarded, cut as u64);
    }
}

/// Where the last framed record of a log starts.
fn last_record_at(log: &[u8]) -> usize {
    let mut at = 20;
    loop {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().expect("4 bytes")) as usize;
        if at + 8 + len >= log.len() {
            return at;
        }
        at += 8 + len;
    }
}

#[test]
fn flipped_bytes_are_detected_and_refusal_is_an_option() {
    let full = log_of(6);
    let mut x = 0x9E37_79B9u32;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let pos = 20 + (x as usize % (full.len() - 20));
        let mut bad = full.clone();
        bad[pos] ^= 1 << (x % 8);
        // A flip in the last record is a torn tail: the prefix loads. A flip
        // anywhere before it is damage inside the log: refused, untouched.
        let storage = storage_with(&bad);
        let opened = Cache::<u32, String>::builder()
            .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Never));
        let in_last = pos >= last_record_at(&full);
        match opened {
            Ok((cache, report)) => {
                assert!(in_last, "flip at {pos} inside the log was cut");
                assert!(report.stopped_at.is_some(), "flip at {pos} not detected");
                for (k, v) in cache.iter() {
                    assert_eq!(v, format!("value-{k}"));
                }
            }
            Err(PersistError::Corrupt { offset, .. }) => {
                assert!(!in_last, "flip at {pos} in the last record refused");
                assert!(offset <= pos as u64);
                assert_eq!(storage_bytes(&storage), bad, "a refused log is untouched");
            }
            Err(e) => panic!("flip at {pos}: {e}"),
        }
        if in_last {
            let refused = Cache::<u32, String>::builder().build_persistent(
                FileLog::with_storage(storage_with(&bad), Fsync::Never)
                    .on_corrupt_tail(OnCorruptTail::Refuse),
            );
            assert!(matches!(
                refused.err(),
                Some(PersistError::CorruptTail { .. })
            ));
        }
    }
}

#[test]
fn write_failures_surface_and_the_cache_stays_usable() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Always);
    cache.insert(1, "one".into());
    cache.sync().expect("healthy");
    storage.fail_after(0);
    let err = cache
        .durably(|| cache.insert(2, "two".into()))
        .expect_err("the failure reaches the writer");
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(cache.get(&2), None, "a refused write is not applied");
    assert_eq!(cache.get(&1).as_deref(), Some("one"), "reads go on");
    // Outside `durably`, the failure is kept for `sync`.
    cache.insert(3, "three".into());
    assert_eq!(cache.get(&3), None);
    assert!(cache.sync().is_err(), "still failing: no repair");
    storage.heal();
    let _ = cache.sync();
    cache.sync().expect("repaired");
    cache
        .durably(|| cache.insert(4, "four".into()))
        .expect("writes resume");
    storage.power_loss(0);
    drop(cache);
    let cache = mem_cache(&storage, Fsync::Always);
    assert_eq!(cache.get(&1).as_deref(), Some("one"));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&3), None);
    assert_eq!(cache.get(&4).as_deref(), Some("four"));
}

#[test]
fn power_loss_keeps_every_acknowledged_write_under_always() {
    for round in 0..40u32 {
        let storage = MemStorage::new();
        let cache = mem_cache(&storage, Fsync::Always);
        let acked: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2u32)
                .map(|t| {
                    let cache = cache.clone();
                    s.spawn(move || {
                        let mut acked = Vec::new();
                        for i in 0..50u32 {
                            let k = t * 1000 + i;
                            cache.insert(k, format!("v{k}"));
                            acked.push(k);
                        }
                        acked
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("writer"))
                .collect()
        });
        // Power fails: unsynced bytes vanish, possibly leaving a torn record.
        storage.power_loss((round as usize * 7) % 13);
        drop(cache);
        let cache = mem_cache(&storage, Fsync::Always);
        for k in acked {
            assert_eq!(
                cache.get(&k),
                Some(format!("v{k}")),
                "round {round}: acknowledged key {k} lost"
            );
        }
    }
}

#[test]
fn power_loss_under_never_loses_only_unsynced_writes() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Never);
    for k in 0..100 {
        cache.insert(k, format!("v{k}"));
        if k == 49 {
            cache.sync().expect("sync");
        }
    }
    storage.power_loss(0);
    drop(cache);
    let cache = mem_cache(&storage, Fsync::Never);
    for k in 0..50 {
        assert_eq!(cache.get(&k), Some(format!("v{k}")));
    }
    assert!(cache.len() <= 100);
}

#[test]
fn power_loss_under_every_second_loses_at_most_the_last_second() {
    use std::time::Instant;
    for (round, run_for) in [1300u64, 2100, 2700].into_iter().enumerate() {
        let storage = MemStorage::new();
        let cache = mem_cache(&storage, Fsync::EverySecond);
        let start = Instant::now();
        let mut acked = Vec::new();
        let mut k = 0u32;
        while start.elapsed() < Duration::from_millis(run_for) {
            cache.insert(k, format!("v{k}"));
            acked.push((k, start.elapsed()));
            k += 1;
            std::thread::sleep(Duration::from_micros(300));
        }
        let lost_at = start.elapsed();
        // Unsynced bytes dropped, the last unsynced record torn at some
        // point; the process writes nothing after that.
        storage.power_loss(round * 7);
        storage.fail_after(0);
        drop(cache);
        storage.heal();
        let cache = mem_cache(&storage, Fsync::EverySecond);
        // The flusher syncs once a second; allow it half a second of lateness
        // on a loaded machine.
        let window = Duration::from_millis(1500);
        for &(k, at) in &acked {
            if at + window < lost_at {
                assert_eq!(
                    cache.get(&k),
                    Some(format!("v{k}")),
                    "round {round}: key {k}, acknowledged {:?} before the power loss, was lost",
                    lost_at - at
                );
            }
        }
        assert!(acked.len() > 1000, "the writer ran: {}", acked.len());
    }
}

#[test]
fn buffered_records_reach_the_storage_within_the_write_delay() {
    let storage = MemStorage::new();
    let log =
        FileLog::with_storage(storage.clone(), Fsync::Never).write_delay(Duration::from_millis(5));
    let (cache, _) = load(log);
    let header = storage.len();
    cache.insert(1, "one".into());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while storage.len() == header && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        storage.len() > header,
        "the writer thread never wrote the record"
    );

    // With no delay, each record is written before insert returns.
    let storage = MemStorage::new();
    let log =
        FileLog::with_storage(storage.clone(), Fsync::EverySecond).write_delay(Duration::ZERO);
    let (cache, _) = load(log);
    for k in 0..10 {
        let before = storage.len();
        cache.insert(k, "v".into());
        assert!(storage.len() > before, "record {k} was not written through");
    }
}

#[test]
fn dropping_the_cache_writes_out_buffered_records() {
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::EverySecond)
        .write_delay(Duration::from_secs(3600));
    let (cache, _) = load(log);
    for k in 0..100 {
        cache.insert(k, format!("v{k}"));
    }
    drop(cache);
    // A clean shutdown also syncs an EverySecond log.
    storage.power_loss(0);
    let cache = mem_cache(&storage, Fsync::EverySecond);
    assert_eq!(cache.len(), 100);
}

#[test]
fn a_short_write_is_cut_away_and_refused() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Always);
    cache.insert(1, "one".into());
    storage.tear_next_append(3);
    let err = cache
        .durably(|| cache.insert(2, "two".into()))
        .expect_err("the short write is reported");
    assert!(err.to_string().contains("short write"), "{err}");
    assert_eq!(cache.get(&2), None, "refused, so not applied");
    // Refused until the log is repaired (a rewrite), which `sync` runs.
    assert!(matches!(
        cache.durably(|| cache.insert(3, "three".into())),
        Err(PersistError::Refused { .. })
    ));
    cache.sync().expect("repaired");
    cache
        .durably(|| cache.insert(3, "three".into()))
        .expect("accepted");
    storage.power_loss(0);
    drop(cache);
    let (cache, report) = load(FileLog::with_storage(storage.clone(), Fsync::Always));
    assert_eq!(report.stopped_at, None, "no torn bytes were left behind");
    assert_eq!(cache.get(&1).as_deref(), Some("one"));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&3).as_deref(), Some("three"));
}

#[test]
fn a_write_that_cannot_be_cut_is_reported_unknown_and_repaired_by_a_rewrite() {
    let storage = MemStorage::new();
    let cache = mem_cache(&storage, Fsync::Always);
    cache.insert(1, "one".into());
    // The write tears and the cut (a truncate) fails too.
    storage.tear_next_append(3);
    storage.fail_after(1);
    let err = cache
        .durably(|| cache.insert(2, "two".into()))
        .expect_err("refused");
    assert!(err.to_string().contains("unknown"), "{err}");
    storage.heal();
    cache.sync().expect("repaired by a rewrite");
    cache
        .durably(|| cache.insert(3, "three".into()))
        .expect("accepted");
    storage.power_loss(0);
    drop(cache);
    let cache = mem_cache(&storage, Fsync::Always);
    for (k, v) in [(1, Some("one")), (2, None), (3, Some("three"))] {
        assert_eq!(cache.get(&k).as_deref(), v);
    }
}

/// Dropping a cache releases its log before the drop returns, whatever the
/// background writer of a buffered log is doing: reopening at once never
/// finds the file still locked.
#[test]
fn a_dropped_cache_can_be_reopened_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reopen.log");
    for fsync in [Fsync::Never, Fsync::EverySecond] {
        for i in 0..200u64 {
            let log = FileLog::open(&path, fsync).expect("not locked by the previous owner");
            let log = log.write_delay(Duration::from_micros(50));
            let (cache, _) = Cache::<u64, u64>::builder()
                .max_capacity(1_000)
                .build_persistent(log)
                .expect("load");
            cache.insert(i % 10, i);
        }
    }
}

#[test]
fn a_record_over_the_log_limit_is_refused_and_the_log_still_loads() {
    use bytes::Bytes;
    use shardcache::persist::MAX_RECORD_LEN;
    use shardcache::PersistentCache;
    let storage = MemStorage::new();
    let open = || -> (PersistentCache<u32, Bytes>, RecoveryReport) {
        Cache::builder()
            .max_capacity(10)
            .open_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
            .expect("load")
    };
    {
        let (cache, _) = open();
        cache
            .insert(1, Bytes::from(vec![1; 10]))
            .expect("small write");
        // A value as long as the largest record: with its key and length
        // prefix, over it (zeros, so the buffer is not touched until encoded;
        // `Bytes`, so it is encoded in one copy).
        let err = cache
            .insert(2, Bytes::from(vec![0; MAX_RECORD_LEN]))
            .expect_err("a record recovery would read as damage");
        assert!(
            matches!(
                err,
                shardcache::WriteError::Log(PersistError::TooLarge { limit, .. }) if limit == MAX_RECORD_LEN
            ),
            "{err}"
        );
        assert_eq!(cache.get(&2), None, "a refused write is not applied");
        cache
            .insert(3, Bytes::from(vec![3; 10]))
            .expect("writes go on");
        cache.sync().expect("the log is healthy");
    }
    let (cache, report) = open();
    assert_eq!(report.stopped_at, None);
    assert_eq!(report.records, 2);
    assert_eq!(cache.get(&1), Some(Bytes::from(vec![1; 10])));
    assert_eq!(cache.get(&3), Some(Bytes::from(vec![3; 10])));
}
