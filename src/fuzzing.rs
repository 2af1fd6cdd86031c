//! Drivers shared by the fuzz targets (`fuzz/`) and the tests that replay
//! their corpora. Not part of the stable API.

use crate::{Cache, MockClock, Policy};
use std::collections::HashMap;
use std::time::Duration;

/// Interprets `data` as a sequence of cache operations on a small cache with a
/// mock clock, checking each result against a reference map with deadlines
/// and the cache's internal invariants after every step.
///
/// # Panics
///
/// When the cache disagrees with the model: that is the bug the fuzzer hunts.
pub fn cache_ops(data: &[u8]) {
    let Some((&cfg, ops)) = data.split_first() else {
        return;
    };
    let capacity = u64::from(cfg % 32) + 1;
    let policy = if cfg & 0x80 == 0 {
        Policy::tiny_lfu()
    } else {
        Policy::lru()
    };
    let shards = 1 << ((cfg >> 5) & 3).min(2);
    let clock = MockClock::new();
    let Ok(cache) = Cache::<u8, u32>::builder()
        .max_capacity(capacity)
        .shards(shards)
        .policy(policy)
        .clock(clock.clone())
        .build()
    else {
        return;
    };
    let mut model: HashMap<u8, (u32, Option<u64>)> = HashMap::new();
    let mut now = 0u64;
    let live = |m: &HashMap<u8, (u32, Option<u64>)>, now: u64, k: u8| match m.get(&k) {
        Some(&(v, d)) if d.is_none_or(|d| now < d) => Some(v),
        _ => None,
    };
    for (step, chunk) in ops.chunks(3).enumerate() {
        let [op, k, arg] = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let value = step as u32;
        match op % 8 {
            0 | 1 => {
                cache.insert(k, value);
                model.insert(k, (value, None));
            }
            2 => {
                let ttl = u64::from(arg) + 1;
                cache.insert_with_ttl(k, value, Duration::from_millis(ttl));
                model.insert(k, (value, Some(now + ttl)));
            }
            3 | 4 => {
                if let Some(v) = cache.get(&k) {
                    assert_eq!(
                        Some(v),
                        live(&model, now, k),
                        "get({k}) returned a stale or unknown value"
                    );
                }
            }
            5 => {
                let got = cache.remove(&k);
                if got.is_some() {
                    assert_eq!(got, live(&model, now, k));
                }
                model.remove(&k);
            }
            6 => {
                clock.advance(Duration::from_millis(u64::from(arg)));
                now += u64::from(arg);
            }
            _ => {
                if arg == 0 {
                    cache.clear();
                    model.clear();
                } else {
                    cache.retain(|key, _| key % arg != 0);
                    model.retain(|key, _| key % arg != 0);
                }
            }
        }
        assert!(cache.weighted_size() <= capacity);
    }
    for (k, v) in cache.iter() {
        assert_eq!(
            Some(v),
            live(&model, now, k),
            "iter yielded a stale entry for {k}"
        );
    }
}

/// Loads `data` as a log file (after a valid header, and as a whole) into a
/// cache: whatever the bytes, loading must return a report or an error,
/// never panic, and what loads must be well-formed. A refused log is left
/// untouched; a loaded one is only ever cut (never rewritten), and only where
/// no valid record follows, unless its whole copy was set aside first.
pub fn log_bytes(data: &[u8]) {
    use crate::persist::{FileLog, Fsync, MemStorage, OnCorruption, Storage};
    for (with_header, corruption) in [
        (true, OnCorruption::Refuse),
        (true, OnCorruption::SetAside),
        (false, OnCorruption::Refuse),
    ] {
        let storage = MemStorage::new();
        if with_header {
            let _ = storage.append(&crate::persist::header_for::<u32, String>());
        }
        let _ = storage.append(data);
        let before = storage.read_all().unwrap_or_default();
        let log = FileLog::with_storage(storage.clone(), Fsync::Never).on_corruption(corruption);
        let loaded = Cache::<u32, String>::builder()
            .max_capacity(64)
            .build_persistent(log);
        let after = storage.read_all().unwrap_or_default();
        match loaded {
            Ok((cache, report)) => {
                assert!(cache.len() as u64 <= report.records);
                if report.set_aside.is_some() {
                    assert_eq!(storage.preserved().last(), Some(&before));
                } else if !report.torn_header && before.len() >= 20 {
                    assert!(before.starts_with(&after[..after.len().min(before.len())]));
                }
            }
            Err(_) => assert_eq!(before, after, "a refused log is left as it was"),
        }
    }
}

/// [`log_bytes`] for a `KvStore`'s log, the one kind whose records include
/// partial writes (splices): whatever the bytes, loading returns a report
/// or an error, never panics, and leaves a refused log as it was.
pub fn kv_log_bytes(data: &[u8]) {
    use crate::persist::{FileLog, Fsync, MemStorage, Storage};
    for max_memory in [None, Some(4096)] {
        let storage = MemStorage::new();
        let _ = storage.append(&crate::persist::header_of_schema(crate::kv::LOG_SCHEMA));
        let _ = storage.append(data);
        let before = storage.read_all().unwrap_or_default();
        let mut builder = crate::kv::KvStore::builder();
        if let Some(max) = max_memory {
            builder = builder.max_memory(max);
        }
        let loaded = builder.build_persistent(FileLog::with_storage(storage.clone(), Fsync::Never));
        let after = storage.read_all().unwrap_or_default();
        match loaded {
            Ok((store, report)) => {
                assert!(store.dbsize() as u64 <= report.records);
                assert!(before.starts_with(&after[..after.len().min(before.len())]));
            }
            Err(_) => assert_eq!(before, after, "a refused log is left as it was"),
        }
    }
}

/// Decodes `data` as an admission summary beside a log (see
/// `persist::summary`): as given, and with a valid checksum appended so the
/// checks behind it run too. Whatever the bytes, decoding returns a summary
/// or an error, never panics, and allocates no more than `data` holds; a
/// decoded summary matched against arbitrary records never panics either.
pub fn admission_summary(data: &[u8]) {
    use crate::persist::SummaryReader;
    let fingerprint = crate::persist::fingerprint::<u32, String>();
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    for bytes in [data.to_vec(), sealed] {
        if let Ok(mut reader) = SummaryReader::decode(bytes, &[fingerprint]) {
            for record in data.chunks(3).take(1 << 12) {
                if let Some(packed) = reader.next(record) {
                    let _ = crate::policy::Saved::unpack(packed);
                }
            }
            let _ = reader.matched();
        }
    }
}

/// A valid admission summary of `records` (for the fuzz corpus seeds).
pub fn admission_summary_of(records: &[&[u8]], window: Option<f64>) -> Vec<u8> {
    let mut w = crate::persist::SummaryWriter::default();
    for (i, r) in records.iter().enumerate() {
        let saved = crate::policy::Saved {
            estimate: (i % 16) as u8,
            segment: (i % 3) as u8,
            hits: (i % 4) as u8,
        };
        w.record(r, saved);
    }
    w.window = window;
    w.finish(crate::persist::fingerprint::<u32, String>())
}
