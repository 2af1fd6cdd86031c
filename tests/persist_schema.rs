//! Log schemas: a log identified by a declared name instead of its types'
//! names opens after the types are renamed or moved; a log written before
//! the schema was declared opens under it and takes its fingerprint as it
//! opens (crash-safe, no record lost, admission summary kept); logs of
//! another schema or other types are still refused, with an error that
//! names the option; session and KV logs of release 0.1 open and migrate.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::{SessionConfig, SessionStore};
use shardcache::kv::KvStore;
use shardcache::persist::{
    AdmissionRestore, FileLog, Fsync, MemStorage, PersistError, RecoveryReport, Snapshot, Storage,
    WriteAheadLog,
};
use shardcache::{Cache, MockClock};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod v1 {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub(crate) struct Profile {
        pub(crate) name: String,
        pub(crate) age: u32,
    }
}

mod v2 {
    /// `v1::Profile`, renamed and moved: the same encoding.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub(crate) struct Account {
        pub(crate) name: String,
        pub(crate) age: u32,
    }
}

const SCHEMA: &str = "profiles/v1";

fn profile(i: u64) -> v1::Profile {
    v1::Profile {
        name: format!("user-{i}"),
        age: i as u32,
    }
}

fn open_v1(
    path: &Path,
    schema: Option<&str>,
) -> Result<(Cache<u64, v1::Profile>, RecoveryReport), PersistError> {
    let mut b = Cache::<u64, v1::Profile>::builder().max_capacity(1000);
    if let Some(s) = schema {
        b = b.log_schema(s);
    }
    b.build_persistent(FileLog::open(path, Fsync::Always)?)
}

fn open_v2(
    path: &Path,
    schema: Option<&str>,
) -> Result<(Cache<u64, v2::Account>, RecoveryReport), PersistError> {
    let mut b = Cache::<u64, v2::Account>::builder().max_capacity(1000);
    if let Some(s) = schema {
        b = b.log_schema(s);
    }
    b.build_persistent(FileLog::open(path, Fsync::Always)?)
}

/// Writes profiles 0..20 and removes 3 (under `schema`, or none).
fn write_v1(path: &Path, schema: Option<&str>) {
    let (cache, _) = open_v1(path, schema).unwrap();
    for i in 0..20 {
        cache.insert(i, profile(i));
    }
    cache.remove(&3);
    cache.sync().unwrap();
}

fn assert_v2_holds_the_profiles(cache: &Cache<u64, v2::Account>) {
    assert_eq!(cache.len(), 19);
    assert_eq!(cache.get(&3), None);
    for i in (0..20).filter(|&i| i != 3) {
        let got = cache.get(&i).unwrap();
        assert_eq!((got.name, got.age), (format!("user-{i}"), i as u32));
    }
}

/// The fingerprint in a log file's header.
/// Opens a cache of `v1::Profile` on `storage` (under `schema`, if any),
/// setting damaged logs aside.
fn open_set_aside(
    storage: &MemStorage,
    schema: Option<&str>,
) -> Result<(Cache<u64, v1::Profile>, RecoveryReport), PersistError> {
    let mut b = Cache::<u64, v1::Profile>::builder().max_capacity(1000);
    if let Some(s) = schema {
        b = b.log_schema(s);
    }
    let log = FileLog::with_storage(storage.clone(), Fsync::Always)
        .on_corruption(shardcache::persist::OnCorruption::SetAside);
    b.build_persistent(log)
}

/// The bytes of a log of twenty profiles written with no schema.
fn twenty_profiles_in_memory() -> Vec<u8> {
    let storage = MemStorage::new();
    let (cache, _) = open_set_aside(&storage, None).unwrap();
    for i in 0..20 {
        cache.insert(i, profile(i));
    }
    drop(cache);
    storage.read_all().unwrap()
}

fn header_of(bytes: &[u8]) -> [u8; 20] {
    bytes[..20].try_into().unwrap()
}

fn file_header(path: &Path) -> [u8; 20] {
    header_of(&std::fs::read(path).unwrap())
}

fn fingerprint_of(header: [u8; 20]) -> u64 {
    u64::from_le_bytes(header[12..].try_into().unwrap())
}

#[test]
fn a_renamed_type_opens_under_its_declared_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.log");
    write_v1(&path, Some(SCHEMA));
    let (cache, report) = open_v2(&path, Some(SCHEMA)).unwrap();
    assert_eq!(report.migrated_from, None);
    assert_v2_holds_the_profiles(&cache);
}

#[test]
fn without_a_schema_a_renamed_type_is_refused_and_told_of_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.log");
    write_v1(&path, None);
    let before = std::fs::read(&path).unwrap();
    let err = open_v2(&path, None).err().unwrap();
    assert!(matches!(err, PersistError::Fingerprint { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("log_schema"), "{message}");
    assert!(message.contains("renamed"), "{message}");
    // Refused without a change: the old types still read it.
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(open_v1(&path, None).unwrap().0.len(), 19);
}

#[test]
fn another_schema_or_no_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.log");
    write_v1(&path, Some(SCHEMA));
    let err = open_v1(&path, Some("profiles/v2")).err().unwrap();
    assert!(matches!(err, PersistError::Fingerprint { .. }), "{err}");
    let err = open_v1(&path, None).err().unwrap();
    assert!(matches!(err, PersistError::Fingerprint { .. }), "{err}");
    assert_eq!(open_v1(&path, Some(SCHEMA)).unwrap().0.len(), 19);
}

#[test]
fn a_log_written_before_the_schema_takes_its_fingerprint_as_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.log");
    write_v1(&path, None);
    let types_header = file_header(&path);
    #[cfg(feature = "fuzzing")]
    assert_eq!(
        types_header.to_vec(),
        shardcache::persist::header_for::<u64, v1::Profile>()
    );
    let fresh = dir.path().join("fresh.log");
    drop(open_v1(&fresh, Some(SCHEMA)).unwrap());
    let schema_header = file_header(&fresh);
    assert_ne!(schema_header, types_header);

    let (cache, report) = open_v1(&path, Some(SCHEMA)).unwrap();
    assert_eq!(report.migrated_from, Some(fingerprint_of(types_header)));
    assert_eq!(report.records, 21);
    assert_eq!(cache.len(), 19);
    // Written before the open returned, and kept by later writes.
    assert_eq!(file_header(&path), schema_header);
    cache.insert(100, profile(100));
    cache.remove(&100);
    drop(cache);
    assert_eq!(file_header(&path), schema_header);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no file left behind"
    );

    let (cache, report) = open_v1(&path, Some(SCHEMA)).unwrap();
    assert_eq!((report.migrated_from, report.records), (None, 23));
    drop(cache);
    let (cache, _) = open_v2(&path, Some(SCHEMA)).unwrap();
    assert_v2_holds_the_profiles(&cache);
}

#[test]
fn a_crash_while_the_header_is_replaced_loses_no_record() {
    let storage = MemStorage::new();
    let open = |storage: &MemStorage, schema: Option<&str>| {
        let mut b = Cache::<u64, v1::Profile>::builder().max_capacity(1000);
        if let Some(s) = schema {
            b = b.log_schema(s);
        }
        b.build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
    };
    {
        let (cache, _) = open(&storage, None).unwrap();
        for i in 0..20 {
            cache.insert(i, profile(i));
        }
        cache.remove(&3);
    }
    let written = storage.read_all().unwrap();
    let types_header = header_of(&written);
    let schema_header = {
        let fresh = MemStorage::new();
        drop(open(&fresh, Some(SCHEMA)).unwrap());
        header_of(&fresh.read_all().unwrap())
    };
    let mut crashes = 0;
    for n in 0.. {
        let storage = MemStorage::new();
        storage.append(&written).unwrap();
        storage.sync().unwrap();
        storage.fail_after(n);
        let opened = open(&storage, Some(SCHEMA));
        storage.heal();
        let Err(e) = opened else {
            let bytes = storage.read_all().unwrap();
            assert_eq!(header_of(&bytes), schema_header);
            assert_eq!(bytes[20..], written[20..]);
            break;
        };
        match &e {
            PersistError::Migration { source, found, .. } => {
                assert!(matches!(**source, PersistError::Io { .. }), "{e}");
                assert!(found.stopped_at.is_none(), "{e}");
            }
            _ => assert!(matches!(e, PersistError::Io { .. }), "{e}"),
        }
        crashes += 1;
        storage.power_loss(0);
        let bytes = storage.read_all().unwrap();
        let header = header_of(&bytes);
        assert!(
            header == types_header || header == schema_header,
            "after {n} calls"
        );
        assert_eq!(bytes[20..], written[20..], "after {n} calls");
        if header == types_header {
            // Not migrated: still the old log, which the old build reads.
            assert_eq!(open(&storage, None).unwrap().0.len(), 19);
        }
        let (cache, _) = open(&storage, Some(SCHEMA)).unwrap();
        assert_eq!(cache.len(), 19, "after {n} calls");
        assert_eq!(cache.get(&7), Some(profile(7)));
        drop(cache);
        assert_eq!(header_of(&storage.read_all().unwrap()), schema_header);
    }
    assert!(
        crashes > 3,
        "the migration's steps were not all crashed: {crashes}"
    );
}

#[test]
fn a_torn_tail_is_left_out_of_the_copy() {
    let storage = MemStorage::new();
    let open = |schema: Option<&str>| {
        let mut b = Cache::<u64, v1::Profile>::builder().max_capacity(1000);
        if let Some(s) = schema {
            b = b.log_schema(s);
        }
        b.build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
    };
    {
        let (cache, _) = open(None).unwrap();
        for i in 0..5 {
            cache.insert(i, profile(i));
        }
    }
    let complete = storage.len();
    // A last record cut short: its length and checksum, half its payload.
    storage.append(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]).unwrap();
    let (cache, report) = open(Some(SCHEMA)).unwrap();
    assert!(report.migrated_from.is_some());
    assert_eq!((report.records, report.bytes_discarded), (5, 11));
    assert_eq!((cache.len(), storage.len()), (5, complete));
    drop(cache);
    let (cache, report) = open(Some(SCHEMA)).unwrap();
    assert_eq!((report.migrated_from, report.records), (None, 5));
    assert_eq!(cache.get(&4), Some(profile(4)));
}

/// An open that fails while it migrates a damaged log leaves the log as it
/// was (damage included), so the next open finds the damage and reports it
/// again: the records after damage inside the log, or a torn tail, are
/// never cut without a report reaching the caller.
#[test]
fn a_migration_that_fails_leaves_the_damage_for_the_next_open_to_report() {
    let open = open_set_aside;
    let written = twenty_profiles_in_memory();
    let mut inside = written.clone();
    inside[written.len() / 2] ^= 0x40;
    let mut torn = written.clone();
    torn.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]);
    for (case, damaged) in [("inside", inside), ("torn tail", torn)] {
        let mut failures = 0;
        for n in 0.. {
            let storage = MemStorage::new();
            storage.append(&damaged).unwrap();
            storage.sync().unwrap();
            storage.fail_after(n);
            let opened = open(&storage, Some(SCHEMA));
            storage.heal();
            if let Ok((_, report)) = opened {
                assert!(report.stopped_at.is_some(), "{case}: {report:?}");
                break;
            }
            let bytes = storage.read_all().unwrap();
            if header_of(&bytes) != header_of(&damaged) {
                // Failed after the replacement was swapped in.
                continue;
            }
            failures += 1;
            assert_eq!(bytes, damaged, "{case}, after {n} calls");
            let (_, report) = open(&storage, Some(SCHEMA)).unwrap();
            assert!(report.migrated_from.is_some(), "{case}, after {n} calls");
            assert!(
                report.stopped_at.is_some(),
                "{case}, after {n} calls: the damage went unreported: {report:?}"
            );
        }
        assert!(failures > 3, "{case}: {failures}");
    }
}

/// One failed storage call (such as the directory sync after the rename)
/// fails the open only while the old file is still in place, so that the
/// damage the copy leaves out is always reported by one open or the next.
#[test]
fn a_migration_that_fails_once_reports_the_damage_in_one_open_or_the_next() {
    let open = open_set_aside;
    let written = twenty_profiles_in_memory();
    let mut torn = written.clone();
    torn.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]);
    let (mut failed, mut swapped_ok) = (0, 0);
    for n in 0..60 {
        let storage = MemStorage::new();
        storage.append(&torn).unwrap();
        storage.sync().unwrap();
        storage.fail_once_after(n);
        let opened = open(&storage, Some(SCHEMA));
        storage.heal();
        match opened {
            Ok((cache, report)) => {
                assert!(report.stopped_at.is_some(), "after {n} calls: {report:?}");
                assert_eq!(cache.len(), 20, "after {n} calls");
                if header_of(&storage.read_all().unwrap()) != header_of(&torn) {
                    swapped_ok += 1;
                }
            }
            Err(e) => {
                failed += 1;
                let bytes = storage.read_all().unwrap();
                assert_eq!(
                    bytes, torn,
                    "after {n} calls the open failed ({e}) with the log changed"
                );
                let (_, report) = open(&storage, Some(SCHEMA)).unwrap();
                assert!(report.stopped_at.is_some(), "after {n} calls: {report:?}");
            }
        }
    }
    assert!(
        failed > 3 && swapped_ok > 3,
        "{failed} failed, {swapped_ok} migrated"
    );
}

/// Storage that fails for good part-way through the migration of a log
/// damaged inside: whatever the failure leaves in place, the damage is
/// reported, by the failed open's error when the log in place is already
/// the copy of its valid part (which the next open finds clean).
#[test]
fn a_migration_that_fails_for_good_reports_the_damage_it_leaves_out() {
    let written = twenty_profiles_in_memory();
    let mut damaged = written.clone();
    // A byte of the tenth record's payload: bad checksum, records after.
    let at = 20 + (written.len() - 20) / 2;
    damaged[at] ^= 0x5a;
    let (mut cut_in_place, mut left_alone) = (0, 0);
    for n in 0..80 {
        let storage = MemStorage::new();
        storage.append(&damaged).unwrap();
        storage.sync().unwrap();
        storage.fail_after(n);
        let opened = open_set_aside(&storage, Some(SCHEMA));
        storage.heal();
        let Err(e) = opened else {
            continue;
        };
        let message = e.to_string();
        let in_place = storage.read_all().unwrap();
        if in_place == damaged {
            left_alone += 1;
            continue;
        }
        cut_in_place += 1;
        assert!(
            message.contains("damaged inside") && message.contains("aside at <memory>"),
            "after {n} calls the open failed with the log cut in place and said only: {message}"
        );
        assert!(
            matches!(e, PersistError::Migration { .. }),
            "after {n} calls: {e:?}"
        );
        let (_, report) = open_set_aside(&storage, Some(SCHEMA)).unwrap();
        assert!(
            report.stopped_at.is_none(),
            "the next open finds the copy clean: {report:?}"
        );
        assert!(
            storage.preserved().iter().any(|copy| copy == &damaged),
            "after {n} calls the damaged file was not kept"
        );
    }
    assert!(
        cut_in_place > 0 && left_alone > 0,
        "{cut_in_place} failed with the copy in place, {left_alone} with the log as it was"
    );
}

#[test]
fn the_admission_summary_is_restored_after_the_migration_and_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.log");
    {
        let (cache, _) = open_v1(&path, None).unwrap();
        for i in 0..50 {
            cache.insert(i, profile(i));
            for _ in 0..(i % 4) {
                cache.get(&i);
            }
        }
        cache.rewrite_log().unwrap();
    }
    let restored = |report: &RecoveryReport| match report.admission {
        AdmissionRestore::Restored { keys } => keys,
        ref other => panic!("{other:?}"),
    };
    let (cache, report) = open_v1(&path, Some(SCHEMA)).unwrap();
    assert!(report.migrated_from.is_some());
    assert_eq!(restored(&report), 50);
    drop(cache);
    let (cache, report) = open_v2(&path, Some(SCHEMA)).unwrap();
    assert_eq!(restored(&report), 50);
    assert_eq!(cache.len(), 50);
    // The next rewrite saves the summary under the schema as well.
    cache.rewrite_log().unwrap();
    drop(cache);
    let (_, report) = open_v2(&path, Some(SCHEMA)).unwrap();
    assert_eq!(restored(&report), 50);
}

fn fixture(name: &str, dir: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let to = dir.join(name);
    std::fs::copy(from, &to).unwrap();
    to
}

/// The fixture's sessions were written at `MockClock::new()`'s wall time,
/// with a ten-year absolute timeout.
fn session_config() -> SessionConfig {
    SessionConfig::default()
        .absolute_timeout(Duration::from_secs(3650 * 86_400))
        .clock(MockClock::new())
}

#[test]
fn a_session_log_of_release_0_1_opens_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture("session-0.1.0.log", dir.path());
    let old = file_header(&path);
    let store: SessionStore<String> = SessionStore::open(&path, session_config()).unwrap();
    assert_eq!(
        store.recovery_report().unwrap().migrated_from,
        Some(fingerprint_of(old))
    );
    assert_eq!(
        (store.count_for_user("ann"), store.count_for_user("bob")),
        (1, 1)
    );
    let id = store.sessions_of("ann").pop().unwrap();
    assert_eq!(id.as_str(), "3LVbVE0LyJv4Kl9-o_6OPQ");
    assert_eq!(store.get(id.as_str()).unwrap().data, "cart:1");
    drop(store);
    assert_ne!(file_header(&path), old);

    let store: SessionStore<String> = SessionStore::open(&path, session_config()).unwrap();
    assert_eq!(store.recovery_report().unwrap().migrated_from, None);
    assert_eq!(store.count(), 2);
    drop(store);
    // Naming the data later migrates again, and then `T` may be renamed.
    let config = session_config().log_schema("cart/v1");
    let store: SessionStore<String> = SessionStore::open(&path, config.clone()).unwrap();
    assert!(store.recovery_report().unwrap().migrated_from.is_some());
    assert_eq!(store.count(), 2);
    drop(store);
    let store: SessionStore<String> = SessionStore::open(&path, config).unwrap();
    assert_eq!(store.recovery_report().unwrap().migrated_from, None);
    assert_eq!(store.count(), 2);
}

#[test]
fn a_session_log_of_other_data_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture("session-0.1.0.log", dir.path());
    let err = SessionStore::<u64>::open(&path, session_config())
        .err()
        .unwrap();
    assert!(err.to_string().contains("fingerprint"), "{err}");
    let err = SessionStore::<String>::open(&path, session_config().log_schema(""))
        .err()
        .unwrap();
    assert!(err.to_string().contains("log_schema"), "{err}");
}

#[test]
fn a_kv_log_of_release_0_1_opens_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture("kv-0.1.0.aof", dir.path());
    let old = file_header(&path);
    let open = || KvStore::builder().build_persistent(FileLog::open(&path, Fsync::Always).unwrap());
    let (store, report) = open().unwrap();
    assert_eq!(report.migrated_from, Some(fingerprint_of(old)));
    assert_eq!(store.get("greeting").as_deref(), Some(&b"hello"[..]));
    assert_eq!(store.get("n").as_deref(), Some(&b"42"[..]));
    drop(store);
    assert_ne!(file_header(&path), old);
    let (store, report) = open().unwrap();
    assert_eq!(report.migrated_from, None);
    assert_eq!(store.get("greeting").as_deref(), Some(&b"hello"[..]));
}

/// A log that implements only the required methods (no migration).
struct Plain(FileLog<MemStorage>);

impl WriteAheadLog for Plain {
    fn replay(
        &self,
        fingerprint: u64,
        apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
    ) -> Result<RecoveryReport, PersistError> {
        self.0.replay(fingerprint, apply)
    }
    fn append(&self, record: &[u8]) -> Result<u64, PersistError> {
        self.0.append(record)
    }
    fn wait(&self, lsn: u64) -> Result<(), PersistError> {
        self.0.wait(lsn)
    }
    fn sync(&self) -> Result<(), PersistError> {
        self.0.sync()
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn rewrite(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError> {
        self.0.rewrite(snapshot)
    }
    fn durable_lsn(&self) -> u64 {
        self.0.durable_lsn()
    }
}

#[test]
fn a_log_that_cannot_migrate_refuses_a_log_written_before_the_schema() {
    let storage = MemStorage::new();
    let log = || Plain(FileLog::with_storage(storage.clone(), Fsync::Always));
    {
        let (cache, _) = Cache::<u64, v1::Profile>::builder()
            .build_persistent(log())
            .unwrap();
        cache.insert(1, profile(1));
    }
    let before = storage.read_all().unwrap();
    let err = Cache::<u64, v1::Profile>::builder()
        .log_schema(SCHEMA)
        .build_persistent(log())
        .err()
        .unwrap();
    assert!(matches!(err, PersistError::Fingerprint { .. }), "{err}");
    assert_eq!(storage.read_all().unwrap(), before);
}
