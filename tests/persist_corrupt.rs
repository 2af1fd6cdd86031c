//! Damaged logs on real files: a torn tail is cut and reported, damage
//! inside the log is refused (or set aside on request) and never repaired by
//! deleting good records, zero fill is not reported as damage, a header torn
//! during creation opens empty, and large logs load in bounded chunks.

use shardcache::kv::{KvStore, Reply};
#[cfg(feature = "fuzzing")]
use shardcache::persist::header_for;
use shardcache::persist::{FileLog, Fsync, OnCorruptTail, OnCorruption, PersistError, StopReason};
use shardcache::Cache;
use std::path::Path;

fn kv(path: &Path, corruption: OnCorruption) -> Result<KvStore, PersistError> {
    let log = FileLog::open(path, Fsync::Always)?.on_corruption(corruption);
    Ok(KvStore::builder().build_persistent(log)?.0)
}

/// `SET k1`, `SET k2`, `SET k3` in a fresh log; returns its bytes.
fn three_sets(path: &Path) -> Vec<u8> {
    let store = kv(path, OnCorruption::Refuse).expect("new log");
    for k in ["k1", "k2", "k3"] {
        assert_eq!(store.execute(&["SET", k, "v"]), Reply::ok());
    }
    drop(store);
    let mut bytes = std::fs::read(path).expect("read");
    // Without the zero fill the file was grown by.
    let mut end = 20;
    while end + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        if len == 0 {
            break;
        }
        end += 8 + len as usize;
    }
    bytes.truncate(end);
    bytes
}

fn damaged(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("kv.log");
    let mut bytes = three_sets(&path);
    edit(&mut bytes);
    std::fs::write(&path, &bytes).expect("write");
    (path, bytes)
}

#[test]
fn damage_inside_the_log_is_refused_and_the_file_left_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    type Edit = fn(&mut Vec<u8>);
    let edits: [(&str, Edit); 2] = [
        ("a flipped byte in record 2", |b| b[45] ^= 0x01),
        ("an impossible length in record 2", |b| {
            let second = 20 + 8 + u32::from_le_bytes([b[20], b[21], b[22], b[23]]) as usize;
            b[second..second + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        }),
    ];
    for (what, edit) in edits {
        let (path, bytes) = damaged(dir.path(), edit);
        let err = kv(&path, OnCorruption::Refuse).expect_err(what);
        let PersistError::Corrupt {
            offset,
            resumes_at,
            bytes_after,
            ..
        } = &err
        else {
            panic!("{what}: {err}");
        };
        assert_eq!(*offset, 20 + 8 + u64::from(bytes[20]), "{what}");
        assert!(resumes_at.is_some(), "{what}: record 3 was found");
        assert_eq!(*bytes_after, bytes.len() as u64 - offset);
        assert!(err.to_string().contains("SetAside"), "{err}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "{what}: untouched"
        );

        // On request: the file is copied aside whole, the good prefix loads.
        let store = kv(&path, OnCorruption::SetAside).expect(what);
        assert_eq!(store.execute(&["GET", "k1"]), Reply::Bulk("v".into()));
        assert_eq!(store.execute(&["DBSIZE"]), Reply::Integer(1));
        drop(store);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "{what}");
        assert_eq!(std::fs::read(aside[0].path()).expect("aside"), bytes);
        std::fs::remove_file(aside[0].path()).expect("clean");
        std::fs::remove_file(&path).expect("clean");
    }
}

#[test]
fn a_torn_tail_is_cut_and_reported_at_every_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kv.log");
    let bytes = three_sets(&path);
    for cut in 21..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let log = FileLog::open(&path, Fsync::Always).expect("open");
        let (store, report) = KvStore::builder().build_persistent(log).expect("loads");
        let Reply::Integer(n) = store.execute(&["DBSIZE"]) else {
            panic!("DBSIZE")
        };
        assert_eq!(n as u64, report.records, "cut at {cut}");
        assert_eq!(report.stopped_at.is_some(), report.bytes_discarded > 0);
        drop(store);
        let left = std::fs::metadata(&path).expect("meta").len();
        assert!(left <= cut as u64);
    }
    // A flip in the last record is a torn tail too, refused on request.
    let mut bad = bytes.clone();
    let last = bad.len() - 2;
    bad[last] ^= 0x40;
    std::fs::write(&path, &bad).expect("write");
    let refused = KvStore::builder().build_persistent(
        FileLog::open(&path, Fsync::Always)
            .expect("open")
            .on_corrupt_tail(OnCorruptTail::Refuse),
    );
    assert!(matches!(
        refused.err(),
        Some(PersistError::CorruptTail { .. })
    ));
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bad,
        "refused: untouched"
    );
}

#[test]
fn stray_bits_in_the_zero_fill_are_not_reported_as_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kv.log");
    let bytes = three_sets(&path);
    for (pad, flip) in [(18_000usize, 9_000usize), (64, 0), (64, 3), (4096, 4095)] {
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + pad, 0);
        padded[bytes.len() + flip] = 0x20;
        std::fs::write(&path, &padded).expect("write");
        let log = FileLog::open(&path, Fsync::Always).expect("open");
        let (store, report) = KvStore::builder().build_persistent(log).expect("loads");
        assert_eq!(
            store.execute(&["DBSIZE"]),
            Reply::Integer(3),
            "all came back"
        );
        assert_eq!(report.bytes_discarded, 0, "pad {pad}, flip {flip}");
        assert_eq!(report.zero_fill, pad as u64);
        assert_eq!(
            report.stopped_at,
            Some((bytes.len() as u64, StopReason::StrayBits))
        );
    }
    // Clean zero fill is silent.
    let mut padded = bytes.clone();
    padded.resize(bytes.len() + 70_000, 0);
    std::fs::write(&path, &padded).expect("write");
    let log = FileLog::open(&path, Fsync::Always).expect("open");
    let (_, report) = KvStore::builder().build_persistent(log).expect("loads");
    assert_eq!((report.stopped_at, report.zero_fill), (None, 70_000));
}

#[cfg(feature = "fuzzing")]
#[test]
fn a_header_torn_during_creation_opens_empty_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let header = header_for::<String, u32>();
    for len in 1..header.len() {
        std::fs::write(&path, &header[..len]).expect("write");
        let log = FileLog::open(&path, Fsync::Always).expect("open");
        let (cache, report) = Cache::<String, u32>::builder()
            .build_persistent(log)
            .expect("a torn header opens");
        assert!(report.torn_header, "len {len}");
        cache.insert("k".into(), 1);
        drop(cache);
        let log = FileLog::open(&path, Fsync::Always).expect("open");
        let (cache, report) = Cache::<String, u32>::builder()
            .build_persistent(log)
            .expect("reopens");
        assert!(!report.torn_header);
        assert_eq!(cache.get("k"), Some(1));
        std::fs::remove_file(&path).expect("clean");
    }
    // Not the start of our header: not ours.
    std::fs::write(&path, b"hello").expect("write");
    let log = FileLog::open(&path, Fsync::Always).expect("open");
    assert!(matches!(
        Cache::<String, u32>::builder().build_persistent(log).err(),
        Some(PersistError::NotALog { .. })
    ));
}

#[cfg(feature = "fuzzing")]
#[test]
fn a_wrong_fingerprint_names_both_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let mut header = header_for::<String, u32>();
    header[13] ^= 0x01;
    std::fs::write(&path, &header).expect("write");
    let log = FileLog::open(&path, Fsync::Always).expect("open");
    let err = Cache::<String, u32>::builder()
        .build_persistent(log)
        .expect_err("refused");
    let PersistError::Fingerprint {
        found, expected, ..
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!(found ^ expected, 0x0100);
    let text = err_text(found, expected);
    assert!(text.contains(&format!("{found:#018x}")), "{text}");
    assert!(text.contains(&format!("{expected:#018x}")), "{text}");
}

#[cfg(feature = "fuzzing")]
fn err_text(found: u64, expected: u64) -> String {
    PersistError::Fingerprint {
        path: "p".into(),
        found,
        expected,
    }
    .to_string()
}

/// Records larger than the read chunk, and records straddling chunk
/// boundaries, load whole; damage past several chunks is still found.
#[test]
fn large_logs_load_across_chunk_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.log");
    let value = |i: u32| {
        vec![
            (i % 251) as u8;
            if i.is_multiple_of(40) {
                1_500_000
            } else {
                10_000
            }
        ]
    };
    {
        let log = FileLog::open(&path, Fsync::Never).expect("open");
        let (cache, _) = Cache::<u32, Vec<u8>>::builder()
            .build_persistent(log.rewrite_policy(0, 0))
            .expect("new");
        for i in 0..120 {
            cache.insert(i, value(i));
        }
    }
    let log = FileLog::open(&path, Fsync::Never).expect("open");
    let (cache, report) = Cache::<u32, Vec<u8>>::builder()
        .build_persistent(log)
        .expect("loads");
    assert_eq!((report.records, report.stopped_at), (120, None));
    for i in 0..120 {
        assert_eq!(cache.get(&i), Some(value(i)), "key {i}");
    }
    drop(cache);
    // Damage in the middle of a large file: refused, nothing cut.
    let mut bytes = std::fs::read(&path).expect("read");
    let len = bytes.len();
    bytes[len / 2] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("write");
    let log = FileLog::open(&path, Fsync::Never).expect("open");
    let opened = Cache::<u32, Vec<u8>>::builder().build_persistent(log);
    assert!(matches!(opened.err(), Some(PersistError::Corrupt { .. })));
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), len as u64);
}
