//! Partial writes on a persistent `KvStore`: `APPEND`, `SETRANGE` and
//! `SETBIT` log the bytes they write (a splice record), not the whole value.
//!
//! - the log grows by the bytes written (a 1 MiB bitmap under 10,000
//!   `SETBIT`s, a 64 MiB value built by 1 KiB appends);
//! - a seeded model of random writes, expiries, rewrites and reopens: the
//!   store, and the store reopened anywhere, hold what a plain map holds;
//! - recovery of splices it cannot apply: orphans are counted and left
//!   absent, impossible ones (past `MAX_STRING_LEN`) refuse the open;
//! - offsets near `MAX_STRING_LEN`.
//!
//! Faults and rewrites racing splices: `persist_splice_faults.rs`.

#[path = "support/kv_log.rs"]
mod kv_log;

use kv_log::{bulk, open, open_with, splice};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardcache::kv::{KvStore, MAX_STRING_LEN};
use shardcache::persist::{FileLog, Fsync, MemStorage, PersistError, Storage};
use shardcache::MockClock;
use std::collections::BTreeMap;
use std::time::Duration;

// ---------------------------------------------------------------- log bytes

/// A bitmap of 1 MiB, then 10,000 `SETBIT`s that each change a bit: the log
/// grows by a few dozen bytes per `SETBIT`, where a whole-value record (a
/// `SET` of the bitmap, as each `SETBIT` was logged before) is over 1 MiB.
#[test]
fn ten_thousand_setbits_on_a_mebibyte_bitmap_log_bytes_not_the_bitmap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bits.aof");
    let log = FileLog::open(&path, Fsync::Never).expect("open");
    let (store, _) = KvStore::builder().build_persistent(log).expect("load");
    store
        .set_range("bits", (1 << 20) - 1, b"\0")
        .expect("a 1 MiB bitmap");
    store.sync().expect("sync");
    let start = std::fs::metadata(&path).expect("log").len();
    let mut want = vec![0u8; 1 << 20];
    let mut bit = 0u64;
    for _ in 0..10_000 {
        // Distinct bits spread over the whole bitmap.
        bit = (bit + 838_861) % (8 << 20);
        assert!(!store.setbit("bits", bit, true).expect("setbit"));
        want[(bit / 8) as usize] |= 0x80 >> (bit % 8);
    }
    store.sync().expect("sync");
    let grown = std::fs::metadata(&path).expect("log").len() - start;
    // The same bitmap logged whole, once: what each SETBIT cost before.
    let storage = MemStorage::new();
    let other = open(&storage, &MockClock::new());
    let empty = storage.len();
    other
        .set("bits", want.clone(), Default::default())
        .expect("set");
    let whole = storage.len() - empty;
    eprintln!("10,000 SETBITs: {grown} log bytes; one whole-value record: {whole} bytes");
    assert!(grown <= 10_000 * 32, "10,000 SETBITs logged {grown} bytes");
    assert!(whole > 1 << 20);
    drop(store);
    let log = FileLog::open(&path, Fsync::Never).expect("reopen");
    let started = std::time::Instant::now();
    let (store, report) = KvStore::builder().build_persistent(log).expect("load");
    eprintln!("replayed in {:?}", started.elapsed());
    assert_eq!(report.records, 10_001);
    assert_eq!(bulk(&store, "bits"), Some(want));
}

/// A 64 MiB value built by 1 KiB appends logs 64 MiB and some framing (it
/// logged the sum of every intermediate value, about 2 TiB, before).
#[test]
fn a_value_built_by_appends_logs_each_append_once() {
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Never).rewrite_policy(0, u64::MAX);
    let (store, _) = KvStore::builder().build_persistent(log).expect("load");
    let chunk: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let appends = 64 * 1024;
    for _ in 0..appends {
        store.append("log", &chunk).expect("append");
    }
    store.sync().expect("sync");
    let len = storage.len() as u64;
    eprintln!("{appends} appends of 1 KiB: {len} log bytes");
    assert!(len <= appends * (1024 + 24), "{len} log bytes");
    drop(store);
    let log = FileLog::with_storage(storage, Fsync::Never);
    let (store, _) = KvStore::builder().build_persistent(log).expect("load");
    let value = store.get("log").expect("the value");
    assert_eq!(value.len(), 64 << 20);
    assert!(value.chunks(1024).all(|c| c == &chunk[..]));
}

// ---------------------------------------------------------------- model

/// What a key holds in the model: its bytes and whether it expires (at
/// `deadline` ms of the mock clock's reading since the start).
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    bytes: Vec<u8>,
    deadline: Option<u64>,
}

/// Random SET, APPEND, SETRANGE, SETBIT, EXPIRE, PERSIST and DEL on a few
/// keys, with time passing (keys expiring), rewrites and reopens at random
/// points: the store equals the model after every step, and so does every
/// reopened store.
#[test]
fn a_seeded_model_of_partial_writes_survives_reopens_anywhere() {
    for seed in 0..60u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let storage = MemStorage::new();
        let clock = MockClock::new();
        let mut now = 0u64;
        let mut store = open(&storage, &clock);
        let mut model: BTreeMap<String, Entry> = BTreeMap::new();
        for step in 0..250 {
            let key = format!("k{}", rng.gen_range(0..5));
            let bytes: Vec<u8> = (0..rng.gen_range(0..6)).map(|_| rng.gen()).collect();
            let live = model
                .get(&key)
                .filter(|e| e.deadline.is_none_or(|d| d > now));
            let mut cur = live.cloned();
            match rng.gen_range(0..12) {
                0 => {
                    store
                        .set(&key, bytes.clone(), Default::default())
                        .expect("set");
                    cur = Some(Entry {
                        bytes,
                        deadline: None,
                    });
                }
                1 | 2 => {
                    store.append(&key, &bytes).expect("append");
                    let e = cur.get_or_insert(Entry {
                        bytes: Vec::new(),
                        deadline: None,
                    });
                    e.bytes.extend_from_slice(&bytes);
                }
                3 | 4 => {
                    let offset = rng.gen_range(0..3000);
                    store.set_range(&key, offset, &bytes).expect("setrange");
                    if !bytes.is_empty() {
                        let e = cur.get_or_insert(Entry {
                            bytes: Vec::new(),
                            deadline: None,
                        });
                        splice(&mut e.bytes, offset, &bytes);
                    }
                }
                5 | 6 => {
                    let bit = rng.gen_range(0..30_000u64);
                    let on = rng.gen_bool(0.7);
                    store.setbit(&key, bit, on).expect("setbit");
                    let e = cur.get_or_insert(Entry {
                        bytes: Vec::new(),
                        deadline: None,
                    });
                    let (byte, mask) = ((bit / 8) as usize, 0x80u8 >> (bit % 8));
                    if e.bytes.len() <= byte {
                        e.bytes.resize(byte + 1, 0);
                    }
                    if on {
                        e.bytes[byte] |= mask;
                    } else {
                        e.bytes[byte] &= !mask;
                    }
                }
                7 => {
                    let secs = rng.gen_range(1..5);
                    let set = store
                        .expire(&key, secs, Default::default())
                        .expect("expire");
                    assert_eq!(set, cur.is_some(), "seed {seed} step {step}");
                    if let Some(e) = cur.as_mut() {
                        e.deadline = Some(now + secs as u64 * 1000);
                    }
                }
                8 => {
                    store.persist(&key).expect("persist");
                    if let Some(e) = cur.as_mut() {
                        e.deadline = None;
                    }
                }
                9 => {
                    store.del(&[&key]);
                    cur = None;
                }
                10 => {
                    let ms = rng.gen_range(0..2500);
                    clock.advance(Duration::from_millis(ms));
                    now += ms;
                }
                _ => {
                    if rng.gen_bool(0.5) {
                        store.rewrite_log().expect("rewrite");
                    } else {
                        drop(store);
                        store = open(&storage, &clock);
                    }
                }
            }
            match cur {
                Some(e) => model.insert(key, e),
                None => model.remove(&key),
            };
            assert_matches(&store, &model, now, &format!("seed {seed} step {step}"));
        }
        drop(store);
        let (store, report) = open_with(&storage, &clock);
        assert_eq!(report.orphan_splices, 0);
        assert_matches(&store, &model, now, &format!("seed {seed}, reopened"));
    }
}

fn assert_matches(store: &KvStore, model: &BTreeMap<String, Entry>, now: u64, what: &str) {
    for k in 0..5 {
        let key = format!("k{k}");
        let want = model
            .get(&key)
            .filter(|e| e.deadline.is_none_or(|d| d > now));
        assert_eq!(
            bulk(store, &key),
            want.map(|e| e.bytes.clone()),
            "{key}: {what}"
        );
        let has_ttl = store.pttl(&key) >= 0;
        assert_eq!(
            has_ttl,
            want.is_some_and(|e| e.deadline.is_some()),
            "{key} TTL: {what}"
        );
    }
}

// ---------------------------------------------------------------- damage

/// A frame as the log writes it: length, CRC-32C, payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A splice record's payload (postcard): variant 4, the key, the offset,
/// the bytes, no expiry, `fresh`.
fn splice_record(key: &str, offset: u64, bytes: &[u8], fresh: bool) -> Vec<u8> {
    splice_record_at(key, offset, bytes, None, fresh)
}

/// [`splice_record`] with an expiry (Unix ms).
fn splice_record_at(
    key: &str,
    offset: u64,
    bytes: &[u8],
    expires_at: Option<u64>,
    fresh: bool,
) -> Vec<u8> {
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut p = vec![4];
    varint(key.len() as u64, &mut p);
    p.extend_from_slice(key.as_bytes());
    varint(offset, &mut p);
    varint(bytes.len() as u64, &mut p);
    p.extend_from_slice(bytes);
    match expires_at {
        None => p.push(0),
        Some(at) => {
            p.push(1);
            varint(at, &mut p);
        }
    }
    p.push(u8::from(fresh));
    p
}

/// A splice of a key recovery holds no value for (a log that lost the
/// write that created it) is skipped and counted; the key stays absent
/// rather than made up from zeros. A later whole write settles it.
#[test]
fn a_splice_with_no_value_to_apply_to_is_counted_and_left_absent() {
    let clock = MockClock::new();
    let storage = MemStorage::new();
    drop(open(&storage, &clock));
    for record in [
        // Lapsed: its expiry (1970) has passed, so no value is expected.
        splice_record_at("lapsed", 4, b"xy", Some(1), false),
        splice_record("lost", 4, b"xy", false),
        splice_record("settled", 4, b"xy", false),
        splice_record("new", 2, b"xy", true),
    ] {
        Storage::append(&storage, &frame(&record)).expect("append");
    }
    let store = open(&storage, &clock);
    store.set("settled", "v", Default::default()).expect("set");
    drop(store);
    let (store, report) = open_with(&storage, &clock);
    assert_eq!(report.orphan_splices, 1);
    assert_eq!(bulk(&store, "lost"), None);
    assert_eq!(bulk(&store, "lapsed"), None);
    assert_eq!(bulk(&store, "settled").as_deref(), Some(&b"v"[..]));
    assert_eq!(bulk(&store, "new").as_deref(), Some(&b"\0\0xy"[..]));
}

/// A splice no store could have written (it ends past `MAX_STRING_LEN`)
/// is damage: the open fails and names it; the log is left as it was.
#[test]
fn a_splice_past_the_longest_value_refuses_the_open() {
    let clock = MockClock::new();
    let storage = MemStorage::new();
    open(&storage, &clock)
        .set("k", "v", Default::default())
        .expect("set");
    let record = splice_record("k", MAX_STRING_LEN as u64, b"x", false);
    Storage::append(&storage, &frame(&record)).expect("append");
    let len = storage.len();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    let err = KvStore::builder()
        .build_persistent(log)
        .expect_err("refused");
    assert!(matches!(err, PersistError::Decode(_)), "{err}");
    assert!(err.to_string().contains("past the longest value"), "{err}");
    assert_eq!(storage.len(), len);
}

/// A splice in the log of a generic cache (its values are not byte
/// strings, so it never writes one) is damage too.
#[test]
fn a_splice_in_a_generic_caches_log_refuses_the_open() {
    let storage = MemStorage::new();
    let cache_log = || FileLog::with_storage(storage.clone(), Fsync::Always);
    let (cache, _) = shardcache::Cache::<String, Vec<u8>>::builder()
        .build_persistent(cache_log())
        .expect("load");
    cache.insert("k".into(), b"v".to_vec());
    drop(cache);
    let record = splice_record("k", 0, b"x", false);
    Storage::append(&storage, &frame(&record)).expect("append");
    let err = shardcache::Cache::<String, Vec<u8>>::builder()
        .build_persistent(cache_log())
        .expect_err("refused");
    assert!(err.to_string().contains("partial write"), "{err}");
}

// ---------------------------------------------------------------- limits

/// A `SETRANGE` ending exactly at `MAX_STRING_LEN` logs its one byte, and
/// reloads as a 512 MiB value; one byte further is refused and not logged.
#[test]
fn a_splice_at_the_longest_offset_is_small_and_reloads() {
    let clock = MockClock::new();
    let storage = MemStorage::new();
    let store = open(&storage, &clock);
    let start = storage.len();
    assert_eq!(
        store.set_range("big", MAX_STRING_LEN - 1, b"x"),
        Ok(MAX_STRING_LEN)
    );
    assert_eq!(store.append("big", b""), Ok(MAX_STRING_LEN));
    assert!(store.set_range("big", MAX_STRING_LEN, b"y").is_err());
    assert!(store.append("big", b"y").is_err());
    assert!(store
        .setbit("big", 8 * MAX_STRING_LEN as u64, true)
        .is_err());
    let logged = storage.len() - start;
    assert!(logged < 64, "{logged} bytes logged");
    drop(store);
    let store = open(&storage, &clock);
    let v = store.get("big").expect("the value");
    assert_eq!(v.len(), MAX_STRING_LEN);
    assert_eq!(v[MAX_STRING_LEN - 1], b'x');
    assert_eq!(
        store.setbit("big", 8 * (MAX_STRING_LEN as u64 - 1), true),
        Ok(false)
    );
    drop((v, store));
    let store = open(&storage, &clock);
    assert_eq!(&store.get_range("big", -1, -1)[..], &[b'x' | 0x80][..]);
}

// ---------------------------------------------------------------- compatibility

/// A log of the schema before splices (`shardcache/kv/v1`, written here as
/// that build wrote it: whole inserts of string keys and byte values) opens
/// and is migrated to `v2`; a build that knows only `v1` (played by a cache
/// declaring that schema) then refuses the log by its fingerprint, and
/// leaves it as it was, instead of reading a splice as damage.
#[test]
fn a_v1_kv_log_migrates_and_a_v1_build_refuses_the_v2_log() {
    let storage = MemStorage::new();
    let log = || FileLog::with_storage(storage.clone(), Fsync::Always);
    let v1_build = || {
        shardcache::Cache::<String, bytes::Bytes>::builder()
            .log_schema("shardcache/kv/v1")
            .build_persistent(log())
    };
    let (old, _) = v1_build().expect("a v1 log");
    old.insert("k".into(), bytes::Bytes::from_static(b"abc"));
    drop(old);
    let (store, report) = KvStore::builder().build_persistent(log()).expect("load");
    assert!(report.migrated_from.is_some(), "{report:?}");
    assert_eq!(bulk(&store, "k").as_deref(), Some(&b"abc"[..]));
    store.append("k", b"def").expect("append");
    drop(store);
    let before = storage.read_all().expect("read");
    let err = v1_build().expect_err("refused");
    assert!(matches!(err, PersistError::Fingerprint { .. }), "{err}");
    assert_eq!(storage.read_all().expect("read"), before);
    let (store, report) = KvStore::builder().build_persistent(log()).expect("load");
    assert_eq!(report.migrated_from, None);
    assert_eq!(bulk(&store, "k").as_deref(), Some(&b"abcdef"[..]));
}
