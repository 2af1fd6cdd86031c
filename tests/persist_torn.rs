//! Torn writes of large records whose bytes look like record headers.
//!
//! After a bad frame, recovery searches the rest of the file for a valid
//! record before it calls the damage a torn tail. A large record's payload
//! can put a plausible length at many of its offsets (a run of `1u32`, small
//! numbers, random bytes); a crash in the middle of writing it must still
//! open as a torn tail, with every earlier record, and damage followed by
//! records must still be refused.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardcache::kv::{KvStore, Reply};
use shardcache::persist::{FileLog, Fsync, MemStorage, PersistError, RecoveryReport, Storage};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// A store on the log at `path`, which it rewrites only when asked.
fn open(path: &Path) -> Result<(KvStore, RecoveryReport), PersistError> {
    let log = FileLog::open(path, Fsync::Never)?.rewrite_policy(0, 0);
    KvStore::builder().build_persistent(log)
}

/// A store on `bytes` held in memory.
fn open_mem(bytes: &[u8]) -> Result<(KvStore, RecoveryReport), PersistError> {
    let storage = MemStorage::new();
    storage.append(bytes).expect("memory");
    let log = FileLog::with_storage(storage, Fsync::Never).rewrite_policy(0, 0);
    KvStore::builder().build_persistent(log)
}

/// `01 00 00 00` repeated: a plausible length at every fourth offset, and
/// lengths of 256, 64 KiB and 16 MiB at the others.
fn ones(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::from(i % 4 == 0)).collect()
}

/// Bytes from a seeded generator.
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

/// The postcard encoding of a `Vec<u32>` of small numbers (one-byte
/// varints, nearly every offset a plausible length), cut to `len`.
fn small_numbers(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let numbers: Vec<u32> = (0..len).map(|_| rng.gen_range(0..16)).collect();
    let mut v = postcard::to_allocvec(&numbers).expect("encodes");
    v.truncate(len);
    v
}

/// The length of the frame at `at`.
fn frame_len(b: &[u8], at: usize) -> usize {
    8 + u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// The log of `SET a 1` then `SET big <value>`, without its zero fill, and
/// where the large record starts.
fn with_value(path: &Path, value: &[u8]) -> (Vec<u8>, usize) {
    {
        let (store, _) = open(path).expect("new log");
        assert_eq!(store.execute(&["SET", "a", "1"]), Reply::ok());
        assert_eq!(store.execute(&[&b"SET"[..], b"big", value]), Reply::ok());
        store.sync().expect("healthy log");
    }
    let mut bytes = std::fs::read(path).expect("read");
    let big = 20 + frame_len(&bytes, 20);
    bytes.truncate(big + frame_len(&bytes, big));
    (bytes, big)
}

/// Writes `value` as the last record of a log, cuts the log at `at` (a
/// fraction of the record), and checks that it opens as a torn tail with
/// `SET a 1` loaded.
fn torn_at(value: &[u8], at: f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("torn.aof");
    let (mut bytes, big) = with_value(&path, value);
    let cut = big + ((bytes.len() - big) as f64 * at) as usize;
    bytes.truncate(cut);
    std::fs::write(&path, &bytes).expect("write");
    drop(bytes);
    let started = Instant::now();
    let (store, report) = open(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
    eprintln!(
        "{} MiB torn record cut at {} MiB: opened in {:?}",
        value.len() >> 20,
        (cut - big) >> 20,
        started.elapsed()
    );
    assert_eq!(report.records, 1, "cut at {cut}");
    assert_eq!(report.stopped_at.map(|s| s.0), Some(big as u64));
    assert_eq!(report.bytes_discarded, (cut - big) as u64);
    assert_eq!(store.get("a").as_deref(), Some(&b"1"[..]));
    assert_eq!(store.get("big"), None);
    drop(store);
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), big as u64);
}

#[test]
fn a_torn_8_mib_run_of_ones_is_a_torn_tail() {
    torn_at(&ones(8 << 20), 0.5);
}

#[test]
fn a_torn_8_mib_random_value_is_a_torn_tail() {
    torn_at(&random(8 << 20, 1), 0.5);
}

#[test]
fn a_torn_8_mib_list_of_small_numbers_is_a_torn_tail() {
    torn_at(&small_numbers(8 << 20, 2), 0.5);
}

#[test]
#[ignore = "tens of seconds in a debug build; run with --ignored (or --release)"]
fn a_torn_64_mib_record_is_a_torn_tail_whatever_its_bytes() {
    torn_at(&ones(64 << 20), 0.5);
    torn_at(&random(64 << 20, 3), 0.5);
    torn_at(&small_numbers(64 << 20, 4), 0.5);
}

#[test]
#[ignore = "peaks at ~1.5 GiB of memory, minutes in a debug build; run with --ignored --release"]
fn a_torn_300_mib_record_is_a_torn_tail_whatever_its_bytes() {
    torn_at(&ones(300 << 20), 0.5);
    torn_at(&random(300 << 20, 5), 0.3);
    torn_at(&small_numbers(300 << 20, 6), 0.9);
}

/// The worst case for the search: a torn record of the largest size whose
/// every offset claims a length that fits in the file. Written frame by
/// hand (a store takes values up to 512 MiB).
#[test]
#[ignore = "writes 1 GiB files, holds each in memory on open (1.1 GiB RSS), ~3 min in release; run with --ignored --release"]
fn a_torn_1_gib_record_of_hostile_bytes_opens_in_bounded_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hostile.aof");
    type Fill = fn(usize) -> u8;
    let fills: [(&str, Fill); 5] = [
        ("every byte 0x01", |_| 1),
        ("bytes 0x01..=0x3f", |i| (i % 63) as u8 + 1),
        ("01 00 00 00", |i| u8::from(i % 4 == 0)),
        (
            "pseudo-random bytes below 16 (postcard's small numbers)",
            |i| ((i as u64 ^ 0x5555).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as u8,
        ),
        ("pseudo-random bytes", |i| {
            ((i as u64 ^ 0x5555).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
        }),
    ];
    for (what, fill) in fills {
        {
            let (store, _) = open(&path).expect("new log");
            assert_eq!(store.execute(&["SET", "a", "1"]), Reply::ok());
        }
        let mut bytes = std::fs::read(&path).expect("read");
        let big = 20 + frame_len(&bytes, 20);
        bytes.truncate(big);
        let claimed = shardcache::persist::MAX_RECORD_LEN;
        bytes.extend_from_slice(&(claimed as u32).to_le_bytes());
        bytes.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(&bytes).expect("write");
        let chunk: Vec<u8> = (0..1 << 20).map(fill).collect();
        let mut left = claimed - 1;
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n]).expect("write");
            left -= n;
        }
        drop(file);
        let started = Instant::now();
        let (store, report) = open(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        eprintln!(
            "1 GiB torn record, {what}: opened in {:?}",
            started.elapsed()
        );
        assert_eq!(report.records, 1, "{what}");
        assert_eq!(report.stopped_at.map(|s| s.0), Some(big as u64));
        assert_eq!(store.get("a").as_deref(), Some(&b"1"[..]));
        drop(store);
        std::fs::remove_file(&path).expect("clean");
    }
}

/// One of the payloads a large record may carry, chosen by `kind`.
fn hostile(kind: u32, len: usize, rng: &mut StdRng) -> Vec<u8> {
    match kind % 5 {
        0 => ones(len),
        1 => random(len, rng.gen()),
        2 => small_numbers(len, rng.gen()),
        3 => vec![rng.gen_range(1..0x40); len],
        _ => (0..len).map(|_| rng.gen_range(0..0x40)).collect(),
    }
}

/// The bytes of a log, each record's start, and the key/value pairs written.
type Log = (Vec<u8>, Vec<usize>, Vec<(String, Vec<u8>)>);

/// A random log of small `SET`s and (unless `large` is `None`) one `SET` of
/// a hostile payload of up to `max` bytes: last if `large` is `Some(true)`,
/// anywhere if `Some(false)`.
fn random_log(rng: &mut StdRng, large: Option<bool>, max: usize) -> Log {
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Never).rewrite_policy(0, 0);
    let (store, _) = KvStore::builder().build_persistent(log).expect("new log");
    let mut sets = Vec::new();
    for i in 0..rng.gen_range(1..12) {
        let len = rng.gen_range(0..300);
        let value = hostile(rng.gen(), len, rng);
        sets.push((format!("k{i}"), value));
    }
    if let Some(last) = large {
        let len = rng.gen_range(16 << 10..max);
        let value = hostile(rng.gen(), len, rng);
        let at = if last {
            sets.len()
        } else {
            rng.gen_range(0..=sets.len())
        };
        sets.insert(at, ("big".to_owned(), value));
    }
    for (k, v) in &sets {
        assert_eq!(store.execute(&[&b"SET"[..], k.as_bytes(), v]), Reply::ok());
    }
    drop(store);
    let bytes = storage.read_all().expect("read");
    let mut starts = Vec::new();
    let mut at = 20;
    while at < bytes.len() {
        starts.push(at);
        at += frame_len(&bytes, at);
    }
    assert_eq!(at, bytes.len());
    assert_eq!(starts.len(), sets.len());
    (bytes, starts, sets)
}

/// Random logs whose last record is large and hostile, cut anywhere inside
/// that record (and sometimes followed by zero fill): a torn tail, every
/// earlier record loaded.
#[test]
fn torn_hostile_records_at_random_cuts_are_torn_tails() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (bytes, starts, sets) = random_log(&mut rng, Some(true), 512 << 10);
        let last = *starts.last().expect("a record");
        for _ in 0..4 {
            let cut = rng.gen_range(last + 1..bytes.len());
            let mut torn = bytes[..cut].to_vec();
            if rng.gen_bool(0.5) {
                // Zero fill past where the record would end, as a storage
                // grown ahead of the write leaves it.
                torn.resize(bytes.len() + rng.gen_range(1..64 << 10), 0);
            }
            let what = format!(
                "seed {seed}, cut {cut} of {}, {} bytes",
                bytes.len(),
                torn.len()
            );
            let (store, report) = open_mem(&torn).unwrap_or_else(|e| panic!("{what}: {e}"));
            if torn.len() > bytes.len() && bytes[cut..].iter().all(|&b| b == 0) {
                // Only zeros were cut: the zero fill gave them back.
                assert_eq!(report.records, sets.len() as u64, "{what}");
                continue;
            }
            let earlier = sets.len() - 1;
            assert_eq!(report.records, earlier as u64, "{what}");
            assert_eq!(report.stopped_at.map(|s| s.0), Some(last as u64), "{what}");
            for (k, v) in &sets[..earlier] {
                assert_eq!(store.get(k).as_deref(), Some(&v[..]), "{what}: {k}");
            }
            assert_eq!(store.get("big"), None);
        }
    }
}

/// Random logs with bytes damaged in one record: refused, with the record
/// after it found, if records follow; a torn tail if it was the last.
#[test]
fn damage_with_records_after_it_is_refused_at_random_points() {
    for seed in 0..60u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let large = rng.gen_bool(0.7).then_some(false);
        let (mut bytes, starts, sets) = random_log(&mut rng, large, 256 << 10);
        let k = rng.gen_range(0..starts.len());
        let start = starts[k];
        let end = starts.get(k + 1).copied().unwrap_or(bytes.len());
        let at = rng.gen_range(start..end);
        bytes[at] ^= rng.gen_range(1..=255u8);
        let what = format!("seed {seed}: record {k} of {}, byte {at}", starts.len());
        match open_mem(&bytes) {
            Err(PersistError::Corrupt {
                offset, resumes_at, ..
            }) => {
                assert!(k + 1 < starts.len(), "{what}: the last record is a tail");
                assert_eq!(offset, start as u64, "{what}");
                if at >= start + 4 || end - start < 1 << 20 {
                    assert_eq!(resumes_at, Some(end as u64), "{what}");
                }
            }
            Ok((store, report)) => {
                assert_eq!(k + 1, starts.len(), "{what}: opened");
                assert_eq!(report.records, k as u64, "{what}");
                assert_eq!(report.stopped_at.map(|s| s.0), Some(start as u64));
                for (key, v) in &sets[..k] {
                    assert_eq!(store.get(key).as_deref(), Some(&v[..]), "{what}");
                }
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}
