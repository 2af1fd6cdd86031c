//! Adversarial probes of the drop of a persistent cache while background
//! rewrites (compactions and repairs after injected I/O failures) run:
//! hundreds of open / write / drop cycles of one path, with a rewrite
//! policy that asks for a rewrite after almost every write, failures
//! injected into the real file storage, clones dropped on other threads
//! and racing `rewrite_log`. After every drop the log's lock is free at
//! once, no `.rewrite` file is left, and the reopened log holds every
//! acknowledged write. Every scenario runs under a watchdog.

use shardcache::persist::{FileLog, FileRewrite, FileStorage, Fsync, Storage};
use shardcache::Cache;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

type C = Cache<u32, u64>;

fn watchdog<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("deadlocked: no end within {secs} s"),
    }
}

/// Which storage call fails next, counted down.
#[derive(Default)]
struct Faults {
    /// Fails the append when it counts down to 1 (0: off).
    append_in: AtomicU64,
    /// Fails the fsync when it counts down to 1 (0: off).
    sync_in: AtomicU64,
}

fn countdown(n: &AtomicU64) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        (v != 0).then(|| v - 1)
    }) == Ok(1)
}

/// The real file storage, with one failure injected on demand.
struct Faulty {
    file: FileStorage,
    faults: Arc<Faults>,
}

impl Storage for Faulty {
    type Rewrite = FileRewrite;

    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(offset, buf)
    }
    fn preserve(&self) -> io::Result<String> {
        self.file.preserve()
    }
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        if countdown(&self.faults.append_in) {
            return Err(io::Error::other("injected append failure"));
        }
        self.file.append(bytes)
    }
    fn sync(&self) -> io::Result<()> {
        if countdown(&self.faults.sync_in) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.file.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len)
    }
    fn describe(&self) -> String {
        self.file.describe()
    }
    fn begin_rewrite(&self) -> io::Result<FileRewrite> {
        self.file.begin_rewrite()
    }
    fn commit_rewrite(&self, next: FileRewrite) -> io::Result<()> {
        self.file.commit_rewrite(next)
    }
    fn write_summary(&self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_summary(bytes)
    }
    fn read_summary(&self, limit: u64) -> io::Result<Option<Vec<u8>>> {
        self.file.read_summary(limit)
    }
}

fn rewrite_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rewrite");
    PathBuf::from(name)
}

/// Undo notifications seen on the background rewrite thread.
static UNDONE_IN_BACKGROUND: AtomicUsize = AtomicUsize::new(0);

fn open(path: &Path, faults: &Arc<Faults>, fsync: Fsync) -> C {
    let storage = Faulty {
        file: FileStorage::open(path).expect("the lock is free"),
        faults: faults.clone(),
    };
    let log = FileLog::with_storage(storage, fsync)
        .write_delay(Duration::ZERO)
        .rewrite_policy(1, 0);
    C::builder()
        .max_capacity(100_000)
        .eviction_listener(|_, _, _| {
            if std::thread::current().name() == Some("shardcache-rewrite") {
                UNDONE_IN_BACKGROUND.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build_persistent(log)
        .expect("the log loads")
        .0
}

/// What each key may hold after a reopen: its last acknowledged value, or
/// (after refused writes whose outcome the test does not track) one of
/// those refused since.
type Model = BTreeMap<u32, BTreeSet<Option<u64>>>;

/// Checks right after the last drop returned: the lock is free, no
/// replacement is left, and the reopened log agrees with `model`.
fn check_reopen(path: &Path, model: &Model, cycle: usize) {
    let file = std::fs::File::open(path).expect("the log");
    if let Err(e) = file.try_lock() {
        panic!("cycle {cycle}: the log is still locked after the drop returned: {e}");
    }
    drop(file);
    assert!(
        !rewrite_file(path).exists(),
        "cycle {cycle}: a .rewrite file is left after the drop"
    );
    let log = FileLog::open(path, Fsync::Never).expect("reopen right after the drop");
    let (cache, _) = C::builder()
        .max_capacity(100_000)
        .build_persistent(log)
        .expect("load");
    for (k, allowed) in model {
        let got = cache.get(k);
        assert!(
            allowed.contains(&got),
            "cycle {cycle}: key {k} reopened as {got:?}, allowed {allowed:?}"
        );
    }
}

/// One writer's work on `cache`: overwrites and removes keys of its own
/// range; what it may have left.
fn work(cache: &C, base: u32, ops: u64, seed: u64, model: &mut Model) {
    for i in 0..ops {
        let k = base + (i % 5) as u32;
        let v = seed * 1000 + i;
        let remove = (seed + i).is_multiple_of(7);
        let outcome = cache.durably(|| {
            if remove {
                cache.remove(&k);
            } else {
                cache.insert(k, v);
            }
        });
        let wrote = if remove { None } else { Some(v) };
        let entry = model.entry(k).or_insert_with(|| BTreeSet::from([None]));
        match outcome {
            Ok(()) => *entry = BTreeSet::from([wrote]),
            Err(_) => {
                entry.insert(wrote);
            }
        }
    }
}

fn run_cycles(fsync: Fsync, cycles: usize, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let mut model: Model = BTreeMap::new();
    let mut theirs: Model = BTreeMap::new();
    for cycle in 0..cycles {
        let faults = Arc::new(Faults::default());
        let cache = open(&path, &faults, fsync);
        let s = seed + cycle as u64;
        // Some cycles fail one append or one fsync part-way, so the log is
        // repaired in the background while the writes (and drops) go on.
        match s % 4 {
            0 => faults.append_in.store(1 + s % 9, Ordering::Release),
            1 => faults.sync_in.store(1 + s % 7, Ordering::Release),
            _ => {}
        }
        let other = {
            let cache = cache.clone();
            let mut mine = std::mem::take(&mut theirs);
            std::thread::spawn(move || {
                work(&cache, 100, 12, s * 7 + 1, &mut mine);
                if s.is_multiple_of(3) {
                    let _ = cache.rewrite_log();
                }
                // The clone drops here, on this thread, maybe last.
                mine
            })
        };
        work(&cache, 0, 12, s, &mut model);
        if s % 3 == 1 {
            let _ = cache.rewrite_log();
        }
        if s.is_multiple_of(2) {
            drop(cache);
            theirs = other.join().expect("the writer");
        } else {
            theirs = other.join().expect("the writer");
            drop(cache);
        }
        check_reopen(&path, &model, cycle);
        check_reopen(&path, &theirs, cycle);
    }
}

/// Hundreds of cycles with rewrites after almost every write, every fsync
/// mode: no `Locked` reopen, no leftover replacement, no lost write.
#[test]
fn open_write_drop_cycles_with_constant_rewrites_and_failures() {
    watchdog(120, || {
        run_cycles(Fsync::Always, 80, 0);
        run_cycles(Fsync::Never, 80, 1_000);
        run_cycles(Fsync::EverySecond, 40, 2_000);
    });
    eprintln!(
        "undo notifications on the rewrite thread: {}",
        UNDONE_IN_BACKGROUND.load(Ordering::Relaxed)
    );
}

/// A persistent cache whose due entries reload in the background, with
/// `reload` as the loader's work (run on a thread of the test's own), and
/// the reload that the first read of a due entry starts.
fn open_refreshing(
    path: &Path,
    clock: &shardcache::MockClock,
    reload: impl Fn() + Send + Sync + 'static,
) -> C {
    let reload = Arc::new(reload);
    let log = FileLog::open(path, Fsync::Always).expect("the lock is free");
    C::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .time_to_live(Duration::from_secs(300))
        .refresh_after(Duration::from_secs(60))
        .refresh_loader_async(
            move |k: u32| {
                let reload = reload.clone();
                async move {
                    reload();
                    Ok::<_, io::Error>(u64::from(k) + 1)
                }
            },
            |job| {
                std::thread::spawn(move || futures::executor::block_on(job));
            },
        )
        .build_persistent(log)
        .expect("the log loads")
        .0
}

/// Starts a reload of key 1 (due 60 s after its write), waits until
/// `blocked` says user code runs on the reload's thread (`what`), drops the
/// last handle, and requires the log's lock free at once.
fn drop_during_reload(
    cache: C,
    clock: &shardcache::MockClock,
    path: &Path,
    blocked: &mpsc::Receiver<()>,
    what: &str,
) {
    cache.insert(1, 1);
    clock.advance(Duration::from_secs(61));
    assert_eq!(cache.get(&1), Some(1), "served at once, reload started");
    blocked.recv_timeout(Duration::from_secs(10)).expect(what);
    drop(cache);
    let reopened = FileLog::open(path, Fsync::Never);
    assert!(
        reopened.is_ok(),
        "the log is still locked after the last handle dropped: {:?}",
        reopened.err()
    );
}

/// A background reload (async loader) in flight holds the cache weakly:
/// dropping the user's last handle meanwhile closes the log at once, and a
/// reopen right after succeeds (docs/persistence.md: "The log is then
/// closed and its file lock released, so the same path opens again at
/// once").
#[test]
fn a_drop_while_an_async_reload_is_in_flight_releases_the_lock() {
    watchdog(30, || {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let clock = shardcache::MockClock::new();
        let (started, loading) = mpsc::channel::<()>();
        let started = std::sync::Mutex::new(started);
        let cache = open_refreshing(&path, &clock, move || {
            let _ = started.lock().expect("sender").send(());
            std::thread::sleep(Duration::from_millis(1_500));
        });
        drop_during_reload(cache, &clock, &path, &loading, "the reload started");
    });
}

/// A reload on the refresher's pool holds the cache while it stores its
/// value, and calls the listener (told of the replaced value) after it let
/// go: the user's last handle dropped while the listener runs closes the
/// log, and a reopen succeeds at once.
#[test]
fn a_drop_while_a_reload_lands_releases_the_lock() {
    watchdog(30, || {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let clock = shardcache::MockClock::new();
        let (told, listening) = mpsc::channel::<()>();
        let told = std::sync::Mutex::new(told);
        let log = FileLog::open(&path, Fsync::Always).expect("the lock is free");
        let cache = C::builder()
            .max_capacity(1_000)
            .clock(clock.clone())
            .time_to_live(Duration::from_secs(300))
            .refresh_after(Duration::from_secs(60))
            .refresh_loader(|k: &u32| Ok::<_, io::Error>(u64::from(*k) + 1))
            .eviction_listener(move |_, _, cause| {
                if cause == shardcache::RemovalCause::Replaced {
                    let _ = told.lock().expect("sender").send(());
                    std::thread::sleep(Duration::from_millis(1_500));
                }
            })
            .build_persistent(log)
            .expect("the log loads")
            .0;
        drop_during_reload(
            cache,
            &clock,
            &path,
            &listening,
            "the reload landed and told the listener",
        );
    });
}

/// A `KvStore` (a cache underneath) with a few thousand keys, so each
/// background rewrite spans several chunks, dropped right after writes
/// that start rewrites, sometimes while a clone on another thread runs
/// `rewrite_log`: the path reopens at once, every acknowledged `SET` there.
#[test]
fn kv_stores_dropped_during_rewrites_reopen_at_once() {
    use shardcache::kv::{KvStore, Reply};
    watchdog(120, || {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kv.aof");
        let open = || {
            let log = FileLog::open(&path, Fsync::Never)
                .expect("the lock is free at once")
                .write_delay(Duration::ZERO)
                .rewrite_policy(5, 0);
            KvStore::builder().build_persistent(log).expect("load").0
        };
        {
            let store = open();
            for k in 0..3_000 {
                assert_eq!(store.execute(&["SET", &format!("k{k}"), "0"]), Reply::ok());
            }
        }
        let mut acked: BTreeMap<String, String> = (0..3_000)
            .map(|k| (format!("k{k}"), "0".to_owned()))
            .collect();
        for cycle in 0..40u32 {
            let store = open();
            let racer = (cycle % 2 == 0).then(|| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let _ = store.rewrite_log();
                })
            });
            for k in 0..60u32 {
                let (key, v) = (format!("k{}", (k * 37 + cycle) % 3_000), cycle.to_string());
                if store.execute(&["SET", key.as_str(), v.as_str()]) == Reply::ok() {
                    acked.insert(key, v);
                }
            }
            if cycle % 4 == 1 {
                drop(store);
                if let Some(r) = racer {
                    r.join().expect("racer");
                }
            } else {
                if let Some(r) = racer {
                    r.join().expect("racer");
                }
                drop(store);
            }
            let file = std::fs::File::open(&path).expect("the log");
            if let Err(e) = file.try_lock() {
                panic!("cycle {cycle}: the log is still locked after the drop: {e}");
            }
            drop(file);
            assert!(
                !rewrite_file(&path).exists(),
                "cycle {cycle}: a .rewrite file is left after the drop"
            );
        }
        let store = open();
        for (k, v) in &acked {
            assert_eq!(store.get(k).as_deref(), Some(v.as_bytes()), "{k}");
        }
    });
}
