//! A rewrite racing a group commit, a compaction racing a failure or a
//! repair, a rewrite whose swap cannot be made durable, a write that fails
//! on its way to the OS, and a damaged record that looks like zero fill:
//! nothing acknowledged is lost, nothing refused comes back, and a lost
//! record is reported.

use shardcache::kv::{KvStore, Reply};
use shardcache::persist::{
    FaultOn, FileLog, Fsync, MemRewrite, MemStorage, OnCorruptTail, PersistError, RecoveryReport,
    RewriteTarget, StopReason, Storage,
};
use shardcache::Cache;
use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A one-shot gate: once armed, the next thread to [`pass`](Self::pass)
/// parks there until [`release`](Self::release).
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    /// (a thread entered, released)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Gate {
    fn arm(&self) {
        *self.state.lock().expect("gate") = (false, false);
        self.armed.store(true, Ordering::SeqCst);
    }
    fn pass(&self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut s = self.state.lock().expect("gate");
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).expect("gate");
        }
    }
    fn wait_entered(&self) {
        let mut s = self.state.lock().expect("gate");
        while !s.0 {
            s = self.cv.wait(s).expect("gate");
        }
    }
    fn release(&self) {
        self.state.lock().expect("gate").1 = true;
        self.cv.notify_all();
    }
}

/// A one-way signal: once [`set`](Self::set), [`wait_for`](Self::wait_for)
/// returns.
#[derive(Default)]
struct Latch {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    fn set(&self) {
        *self.set.lock().expect("latch") = true;
        self.cv.notify_all();
    }
    /// Waits until set, or for `limit` at most.
    fn wait_for(&self, limit: Duration) {
        let s = self.set.lock().expect("latch");
        let _ = self.cv.wait_timeout_while(s, limit, |set| !*set);
    }
}

/// An action on the storage under a [`Hooked`] one.
type Hook = Box<dyn FnMut(&MemStorage) + Send>;

/// Memory storage whose `sync`, and a rewrite's start, can be held at a
/// gate, which runs an action on the inner storage just before a rewrite's
/// commit, and which signals a rewrite given up before its commit.
#[derive(Clone, Default)]
struct Hooked {
    inner: MemStorage,
    sync_gate: Arc<Gate>,
    /// Passed as a rewrite starts: after the cache let it run, before the
    /// log keeps the writes it must carry over.
    begin_gate: Arc<Gate>,
    /// Passed by each record a rewrite writes to its replacement after its
    /// header: after the snapshot read it, with no shard locked.
    emit_gate: Arc<Gate>,
    before_commit: Arc<Mutex<Option<Hook>>>,
    /// Set when a replacement is dropped without being committed.
    abandoned: Arc<Latch>,
}

/// A [`Hooked`] storage's replacement.
struct HookedRewrite {
    /// Taken by the commit.
    inner: Option<MemRewrite>,
    emit_gate: Arc<Gate>,
    /// Whether the header was written.
    started: bool,
    abandoned: Arc<Latch>,
}

impl RewriteTarget for HookedRewrite {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if std::mem::replace(&mut self.started, true) {
            self.emit_gate.pass();
        }
        self.inner.as_mut().expect("not committed").append(bytes)
    }
    fn len(&self) -> u64 {
        self.inner.as_ref().map_or(0, |r| r.len())
    }
}

impl Drop for HookedRewrite {
    fn drop(&mut self) {
        if self.inner.is_some() {
            self.abandoned.set();
        }
    }
}

impl Storage for Hooked {
    type Rewrite = HookedRewrite;
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn preserve(&self) -> io::Result<String> {
        self.inner.preserve()
    }
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        self.inner.append(bytes)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_gate.pass();
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn describe(&self) -> String {
        "<hooked>".into()
    }
    fn begin_rewrite(&self) -> io::Result<HookedRewrite> {
        self.begin_gate.pass();
        Ok(HookedRewrite {
            inner: Some(self.inner.begin_rewrite()?),
            emit_gate: self.emit_gate.clone(),
            started: false,
            abandoned: self.abandoned.clone(),
        })
    }
    fn commit_rewrite(&self, mut next: HookedRewrite) -> io::Result<()> {
        if let Some(f) = self.before_commit.lock().expect("hook").as_mut() {
            f(&self.inner);
        }
        let next = next.inner.take().expect("committed once");
        self.inner.commit_rewrite(next)
    }
}

/// A cache on `storage`, under `Fsync::Always`, no automatic rewrites.
fn open<S: Storage>(storage: S) -> (Cache<u32, u32>, RecoveryReport) {
    let log = FileLog::with_storage(storage, Fsync::Always).rewrite_policy(0, 0);
    Cache::builder()
        .max_capacity(1000)
        .build_persistent(log)
        .expect("load")
}

/// Keys 10 to 14, written while the log is healthy: every power loss
/// after this must keep them.
fn write_healthy(cache: &Cache<u32, u32>) {
    for k in 10..15 {
        cache.durably(|| cache.insert(k, k)).expect("healthy");
    }
}

/// `cache` dropped, the power lost (only what was synced kept), and the
/// log reopened.
fn after_power_loss<S>(h: &Hooked, cache: Cache<u32, u32, S>) -> Cache<u32, u32> {
    drop(cache);
    h.inner.power_loss(0);
    open(h.inner.clone()).0
}

fn contents(c: &Cache<u32, u32>) -> BTreeMap<u32, u32> {
    c.iter().collect()
}

/// What a write under `Cache::durably` was told.
type Told = Result<(), PersistError>;

/// Inserts `key` = `value` on a thread of `sc`; returns once that write
/// leads a group commit whose fsync is held at `h`'s gate.
fn held_leader<'s>(
    sc: &'s std::thread::Scope<'s, '_>,
    h: &Hooked,
    cache: &Cache<u32, u32>,
    key: u32,
    value: u32,
) -> std::thread::ScopedJoinHandle<'s, Told> {
    h.sync_gate.arm();
    let c = cache.clone();
    let leader = sc.spawn(move || c.durably(|| c.insert(key, value)));
    h.sync_gate.wait_entered();
    leader
}

/// Inserts a new `key` = `value` on a thread of `sc`; returns once it is
/// applied and its writer waits on the log.
fn applied_follower<'s>(
    sc: &'s std::thread::Scope<'s, '_>,
    cache: &Cache<u32, u32>,
    key: u32,
    value: u32,
) -> std::thread::ScopedJoinHandle<'s, Told> {
    let c = cache.clone();
    let follower = sc.spawn(move || c.durably(|| c.insert(key, value)));
    until_applied(cache, key);
    follower
}

/// Waits (up to 5 s) until `key` is in `cache`: its writer has applied it
/// and is waiting on the log.
fn until_applied(cache: &Cache<u32, u32>, key: u32) {
    let t0 = Instant::now();
    while cache.get(&key).is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
}

/// A group commit's leader wrote to the old log and is in its fsync when a
/// rewrite swaps in a longer replacement; a later failed fsync must cut the
/// replacement at its own last synced length, not at the old log's.
#[test]
fn a_failed_fsync_after_a_raced_rewrite_keeps_acknowledged_records() {
    let h = Hooked::default();
    let cache = open(h.clone()).0;
    // Distinct keys: the snapshot is as long as the log.
    for k in 0..20 {
        cache.durably(|| cache.insert(k, k)).expect("healthy");
    }
    let (x, w) = std::thread::scope(|sc| {
        let x = held_leader(sc, &h, &cache, 100, 100);
        let w = applied_follower(sc, &cache, 200, 200);
        cache.rewrite_log().expect("rewrite");
        h.sync_gate.release();
        (x.join().expect("leader"), w.join().expect("follower"))
    });
    x.expect("the leader is durable");
    w.expect("the follower is durable (in the replacement)");
    let acked = contents(&cache);
    h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
    assert!(cache.durably(|| cache.insert(999, 999)).is_err());
    drop(cache);
    h.inner.power_loss(usize::MAX);
    let (reopened, report) = open(h.inner.clone());
    assert_eq!(contents(&reopened), acked, "{report:?}");
}

/// The same race with a replacement shorter than the old log: the failed
/// write must be cut from the replacement, not brought back by a crash.
#[test]
fn a_write_refused_after_a_raced_rewrite_does_not_come_back() {
    let h = Hooked::default();
    let cache = open(h.clone()).0;
    // A long log for few keys: the rewrite shrinks it.
    for i in 0..200 {
        cache.durably(|| cache.insert(1, i)).expect("healthy");
    }
    std::thread::scope(|sc| {
        let x = held_leader(sc, &h, &cache, 2, 2);
        cache.rewrite_log().expect("rewrite");
        h.sync_gate.release();
        x.join()
            .expect("leader")
            .expect("durable in the replacement");
    });
    h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
    assert!(
        cache.durably(|| cache.insert(3, 3)).is_err(),
        "the fsync failed"
    );
    assert_eq!(cache.get(&3), None, "a refused write is undone");
    drop(cache);
    h.inner.power_loss(usize::MAX);
    let (reopened, _) = open(h.inner.clone());
    assert_eq!(reopened.get(&3), None, "a refused write came back");
    assert_eq!(reopened.get(&1), Some(199));
    assert_eq!(reopened.get(&2), Some(2));
}

/// The disk dies right after a rewrite's rename, while a group commit is
/// under way: nothing is acknowledged on the replacement's word, and what
/// was acknowledged before survives a power loss.
#[test]
fn a_rewrite_whose_swap_cannot_be_made_durable_acknowledges_nothing() {
    let h = Hooked::default();
    let cache = open(h.clone()).0;
    for k in 0..10 {
        cache.durably(|| cache.insert(k, k)).expect("healthy");
    }
    let (rewrite, x, w) = std::thread::scope(|sc| {
        let x = held_leader(sc, &h, &cache, 100, 100);
        let w = applied_follower(sc, &cache, 200, 200);
        // After the rename every call fails: the directory sync, and the
        // sync the rewrite retries it with.
        *h.before_commit.lock().expect("hook") = Some(Box::new(|m: &MemStorage| m.fail_after(2)));
        let rewrite = cache.rewrite_log();
        *h.before_commit.lock().expect("hook") = None;
        h.sync_gate.release();
        (
            rewrite,
            x.join().expect("leader"),
            w.join().expect("follower"),
        )
    });
    let err = rewrite.expect_err("the replacement is not durable");
    assert!(
        err.to_string().contains("could not be made durable"),
        "{err}"
    );
    assert!(x.is_err(), "{x:?}");
    assert!(w.is_err(), "{w:?}");
    drop(cache);
    h.inner.heal();
    h.inner.power_loss(0);
    let (reopened, _) = open(h.inner.clone());
    for k in 0..10 {
        assert_eq!(reopened.get(&k), Some(k), "key {k} was acknowledged");
    }
}

/// With no write delay a buffered log hands each record to the OS in the
/// write itself: a write whose record fails to get there is not
/// acknowledged, through the cache or through `KvStore`.
#[test]
fn a_zero_delay_write_that_fails_is_not_acknowledged() {
    for fsync in [Fsync::EverySecond, Fsync::Never] {
        for kind in [ErrorKind::StorageFull, ErrorKind::Other] {
            let s = MemStorage::new();
            let log = FileLog::with_storage(s.clone(), fsync).write_delay(Duration::ZERO);
            let (cache, _) = Cache::<u32, u32>::builder()
                .max_capacity(100)
                .open_persistent(log)
                .expect("load");
            cache.insert(1, 1).expect("healthy");
            s.inject(FaultOn::Append, 0, kind, true);
            let r = cache.insert(2, 2);
            assert!(r.is_err(), "{fsync:?} {kind:?}: {r:?}");
            drop(cache);
            s.heal();
            s.power_loss(usize::MAX);
            let (re, _) = open(s.clone());
            assert_eq!(re.get(&1), Some(1), "{fsync:?} {kind:?}");
        }
    }
    let s = MemStorage::new();
    let log = FileLog::with_storage(s.clone(), Fsync::EverySecond).write_delay(Duration::ZERO);
    let (store, _) = KvStore::builder().build_persistent(log).expect("load");
    assert_eq!(store.execute(&["SET", "a", "1"]), Reply::ok());
    s.inject(FaultOn::Append, 0, ErrorKind::StorageFull, true);
    let reply = store.execute(&["SET", "b", "2"]);
    assert!(matches!(reply, Reply::Error(_)), "{reply:?}");
}

/// A record whose payload is mostly zeros, damaged at the end of a log
/// grown with zero fill, has as few non-zero bytes as stray bits: its loss
/// is still reported as a lost record, not as harmless noise.
#[test]
fn a_damaged_mostly_zero_last_record_is_reported_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("z.log");
    {
        let (c, _) = Cache::<u32, u32>::builder()
            .max_capacity(100)
            .build_persistent(FileLog::open(&path, Fsync::Always).expect("open"))
            .expect("load");
        c.durably(|| c.insert(5, 5)).expect("healthy");
        // Its payload is four zero bytes.
        c.durably(|| c.insert(0, 0)).expect("healthy");
    }
    let mut bytes = std::fs::read(&path).expect("read");
    // Past the 20-byte header: two frames of 8 bytes of header and payload.
    let mut at = 20;
    let mut last = (0, 0);
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            break;
        }
        last = (at, at + 8 + len);
        at += 8 + len;
    }
    assert!(bytes.len() > last.1, "the log is followed by zero fill");
    bytes[last.1 - 1] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let strict = dir.path().join("strict.log");
    std::fs::write(&strict, &bytes).expect("write");
    let (c, report) = Cache::<u32, u32>::builder()
        .max_capacity(100)
        .build_persistent(FileLog::open(&path, Fsync::Always).expect("open"))
        .expect("load");
    assert_eq!(c.get(&5), Some(5));
    assert_eq!(c.get(&0), None);
    assert_eq!(
        report.stopped_at,
        Some((last.0 as u64, StopReason::Checksum)),
        "{report:?}"
    );
    assert!(report.bytes_discarded > 0, "{report:?}");
    let refused = Cache::<u32, u32>::builder()
        .max_capacity(100)
        .build_persistent(
            FileLog::open(&strict, Fsync::Always)
                .expect("open")
                .on_corrupt_tail(OnCorruptTail::Refuse),
        );
    assert!(
        matches!(
            refused,
            Err(PersistError::CorruptTail {
                reason: StopReason::Checksum,
                ..
            })
        ),
        "{:?}",
        refused.err()
    );
}

/// A cache whose listener parks at `gate` when `key` is removed (a
/// rollback's undo of an insert removes it).
fn cache_with_listener_gate(h: &Hooked, gate: Arc<Gate>, key: u32) -> Cache<u32, u32> {
    let log = FileLog::with_storage(h.clone(), Fsync::Always).rewrite_policy(0, 0);
    Cache::builder()
        .max_capacity(1000)
        .shards(1)
        .eviction_listener(move |k: u32, _v: u32, cause| {
            if k == key && cause == shardcache::RemovalCause::Removed {
                gate.pass();
            }
        })
        .build_persistent(log)
        .expect("load")
        .0
}

/// A rewrite asked for while a failed fsync's rollback is under way (one
/// write undone, another not yet) is refused: its snapshot would write the
/// refused write back.
#[test]
fn a_compaction_does_not_run_while_a_rollback_is_under_way() {
    let h = Hooked::default();
    let lgate = Arc::new(Gate::default());
    let cache = cache_with_listener_gate(&h, lgate.clone(), 2);
    write_healthy(&cache);
    let (x, rewrite) = std::thread::scope(|sc| {
        let x = held_leader(sc, &h, &cache, 1, 1);
        let y = applied_follower(sc, &cache, 2, 2);
        h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
        lgate.arm();
        h.sync_gate.release();
        // Key 2 is being undone (newest first), key 1 not yet.
        lgate.wait_entered();
        let rewrite = cache.rewrite_log();
        lgate.release();
        let _ = y.join().expect("follower");
        (x.join().expect("leader"), rewrite)
    });
    assert!(rewrite.is_err(), "{rewrite:?}");
    assert!(x.is_err());
    assert_eq!(cache.get(&1), None, "undone in memory");
    let reopened = after_power_loss(&h, cache);
    assert_eq!(reopened.get(&1), None, "a refused write came back");
    assert_eq!(reopened.get(&12), Some(12));
}

/// A compaction let through while the log was healthy is held as it
/// starts; a failed fsync then stops the log, and its rollback is under way
/// (one write undone, the other not yet) when the compaction goes on. The
/// compaction must not replace the log, nor clear its failure: its snapshot
/// would hold the refused write, which a power loss would then bring back.
#[test]
fn a_compaction_started_before_a_failure_does_not_replace_the_failed_log() {
    let h = Hooked::default();
    let lgate = Arc::new(Gate::default());
    let cache = cache_with_listener_gate(&h, lgate.clone(), 2);
    write_healthy(&cache);
    let (x, rewrite) = std::thread::scope(|sc| {
        let x = held_leader(sc, &h, &cache, 1, 1);
        let y = applied_follower(sc, &cache, 2, 2);
        h.begin_gate.arm();
        let c = cache.clone();
        let compaction = sc.spawn(move || c.rewrite_log());
        h.begin_gate.wait_entered();
        h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
        lgate.arm();
        h.sync_gate.release();
        // Key 2 is being undone (newest first), key 1 not yet.
        lgate.wait_entered();
        h.begin_gate.release();
        let rewrite = compaction.join().expect("compaction");
        lgate.release();
        let _ = y.join().expect("follower");
        (x.join().expect("leader"), rewrite)
    });
    assert!(x.is_err(), "{x:?}");
    assert_eq!(cache.get(&1), None, "undone in memory");
    let reopened = after_power_loss(&h, cache);
    assert_eq!(reopened.get(&1), None, "a refused write came back");
    assert_eq!(reopened.get(&12), Some(12));
    assert!(rewrite.is_err(), "a compaction replaced a failed log");
}

/// A compaction asked for while a repair runs is not taken for the repair:
/// when the repair fails, the log stays failed, and the compaction (refused)
/// does not replace it in the repair's place.
#[test]
fn a_compaction_asked_for_during_a_repair_does_not_run_as_one() {
    let h = Hooked::default();
    let cache = open(h.clone()).0;
    cache.durably(|| cache.insert(1, 1)).expect("healthy");
    h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
    assert!(cache.durably(|| cache.insert(2, 2)).is_err());
    let (repair, compaction) = std::thread::scope(|sc| {
        h.begin_gate.arm();
        let c = cache.clone();
        let repair = sc.spawn(move || c.sync());
        h.begin_gate.wait_entered();
        let c = cache.clone();
        let compaction = sc.spawn(move || c.rewrite_log());
        // Time for the compaction to queue behind the repair, if it may.
        std::thread::sleep(Duration::from_millis(50));
        // The repair's rewrite cannot start.
        h.inner.fail_once_after(0);
        h.begin_gate.release();
        (
            repair.join().expect("repair"),
            compaction.join().expect("compaction"),
        )
    });
    assert!(repair.is_err(), "{repair:?}");
    assert!(compaction.is_err(), "a compaction replaced a failed log");
}

/// A leader's fsync is held while a rewrite fails at its post-rename sync
/// and `Cache::sync` repairs (rolling the leader's write back); the held
/// fsync then succeeds. The leader is told its write was undone, and it is
/// in neither memory nor the log.
#[test]
fn a_write_a_repair_rolled_back_is_not_acknowledged_by_its_late_fsync() {
    let h = Hooked::default();
    let cache = open(h.clone()).0;
    write_healthy(&cache);
    let w = std::thread::scope(|sc| {
        let w = held_leader(sc, &h, &cache, 1, 1);
        // The replacement's own fsync passes; the sync after the rename fails.
        h.inner.inject(FaultOn::Sync, 1, ErrorKind::Other, false);
        assert!(cache.rewrite_log().is_err());
        cache.sync().expect("repaired");
        h.sync_gate.release();
        w.join().expect("leader")
    });
    let e = w.expect_err("undone by the repair");
    assert!(e.to_string().contains("undone"), "{e}");
    assert_eq!(cache.get(&1), None);
    // Writes go on normally after it.
    cache.durably(|| cache.insert(2, 2)).expect("healthy");
    let reopened = after_power_loss(&h, cache);
    assert_eq!(reopened.get(&1), None);
    assert_eq!(reopened.get(&2), Some(2));
    assert_eq!(reopened.get(&14), Some(14));
}

/// A leader's fsync is held while a rewrite succeeds (covering its write);
/// the held fsync then fails. The write is durable through the rewrite: it
/// is acknowledged and stays, in memory and after a power loss.
#[test]
fn a_write_a_rewrite_made_durable_stands_when_its_own_fsync_fails() {
    let h = Hooked::default();
    let cache = open(h.clone()).0;
    for i in 0..50 {
        cache.durably(|| cache.insert(7, i)).expect("healthy");
    }
    let x = std::thread::scope(|sc| {
        let x = held_leader(sc, &h, &cache, 1, 1);
        cache.rewrite_log().expect("rewrite");
        h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
        h.sync_gate.release();
        x.join().expect("leader")
    });
    x.expect("durable through the rewrite");
    assert_eq!(cache.get(&1), Some(1));
    let reopened = after_power_loss(&h, cache);
    assert_eq!(reopened.get(&1), Some(1));
    assert_eq!(reopened.get(&7), Some(49));
}

/// A writer admitted while the log was healthy applies to a key while a
/// rollback waits for that key's shard, so its undo record holds a value
/// the rollback has still to undo. Every write here is refused or
/// acknowledged, and memory and the log after a power loss hold exactly the
/// acknowledged ones.
#[test]
fn a_write_between_a_rollbacks_drain_and_its_undo_does_not_bring_a_refused_value_back() {
    use shardcache::{Decision, Ttl};
    let h = Hooked::default();
    let lgate = Arc::new(Gate::default());
    let cache = cache_with_listener_gate(&h, lgate.clone(), 2);
    cache.durably(|| cache.insert(3, 3)).expect("healthy");
    let hold = Arc::new(Gate::default());
    let (x, y, w, z) = std::thread::scope(|sc| {
        let x = held_leader(sc, &h, &cache, 1, 1);
        let y = applied_follower(sc, &cache, 2, 2);
        // W holds the only shard's lock inside `compute`.
        hold.arm();
        let (c3, hold2) = (cache.clone(), hold.clone());
        let w = sc.spawn(move || {
            c3.durably(|| {
                c3.compute(3, |_| {
                    hold2.pass();
                    (Decision::Put(33, Ttl::Keep), ())
                })
            })
        });
        hold.wait_entered();
        // Z, admitted while the log is healthy, waits for the lock.
        let c4 = cache.clone();
        let z = sc.spawn(move || c4.durably(|| c4.insert(1, 9)));
        std::thread::sleep(Duration::from_millis(100));
        h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
        lgate.arm();
        // X's fsync fails; its rollback waits for the lock W holds.
        h.sync_gate.release();
        std::thread::sleep(Duration::from_millis(100));
        hold.release();
        lgate.wait_entered();
        std::thread::sleep(Duration::from_millis(100));
        lgate.release();
        (
            x.join().expect("x"),
            y.join().expect("y"),
            w.join().expect("w"),
            z.join().expect("z"),
        )
    });
    assert!(x.is_err() && y.is_err());
    let mut acked = BTreeMap::new();
    acked.insert(3, if w.is_ok() { 33 } else { 3 });
    if z.is_ok() {
        acked.insert(1, 9);
    }
    let memory = contents(&cache);
    let _ = cache.sync();
    let reopened = after_power_loss(&h, cache);
    assert_eq!((memory, contents(&reopened)), (acked.clone(), acked));
}

/// Sends key `k` to the shard `k % 4` picks, whatever bits a cache of four
/// shards takes its shard index from: the hash repeats `k % 4` in every pair
/// of bits.
#[derive(Clone, Default)]
struct FourWays;

impl std::hash::BuildHasher for FourWays {
    type Hasher = FourWaysHasher;
    fn build_hasher(&self) -> FourWaysHasher {
        FourWaysHasher(0)
    }
}

#[derive(Default)]
struct FourWaysHasher(u64);

impl std::hash::Hasher for FourWaysHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.wrapping_add(u64::from(b));
        }
    }
    fn write_u32(&mut self, k: u32) {
        self.0 = u64::from(k);
    }
    fn finish(&self) -> u64 {
        (self.0 % 4) * 0x5555_5555_5555_5555
    }
}

/// Puts `key` = `value` with `compute` on a thread of `sc`; returns once its
/// closure is parked at `hold`, holding the key's shard lock (the write was
/// admitted before the closure ran).
fn parked_in_compute<'s>(
    sc: &'s std::thread::Scope<'s, '_>,
    cache: &Cache<u32, u32, FourWays>,
    hold: &Arc<Gate>,
    key: u32,
    value: u32,
) -> std::thread::ScopedJoinHandle<'s, Told> {
    use shardcache::{Decision, Ttl};
    hold.arm();
    let (c, gate) = (cache.clone(), hold.clone());
    let w = sc.spawn(move || {
        c.durably(|| {
            c.compute(key, |_| {
                gate.pass();
                (Decision::Put(value, Ttl::Keep), ())
            })
            .expect("room")
        })
    });
    hold.wait_entered();
    w
}

/// Writers admitted while the log was healthy apply their writes after a
/// repair has rolled back what the failure cost, and are refused at their
/// append: W1 on key 1 (its undo, a removal, is parked in the listener, so
/// the rollback stays under way) and then W2 on key 2, whose undo waits for
/// that rollback. The repair goes on meanwhile. Neither refused write may be
/// kept: not in memory, and not in the repaired log after a power loss.
#[test]
fn a_write_refused_while_a_repair_runs_is_neither_kept_nor_logged() {
    let h = Hooked::default();
    let lgate = Arc::new(Gate::default());
    let listener_gate = lgate.clone();
    let log = FileLog::with_storage(h.clone(), Fsync::Always).rewrite_policy(0, 0);
    let cache: Cache<u32, u32, FourWays> = Cache::builder()
        .max_capacity(1000)
        .shards(4)
        .hasher(FourWays)
        .eviction_listener(move |k: u32, _v: u32, cause| {
            if k == 1 && cause == shardcache::RemovalCause::Removed {
                listener_gate.pass();
            }
        })
        .build_persistent(log)
        .expect("load")
        .0;
    cache.durably(|| cache.insert(2, 20)).expect("healthy");
    cache.durably(|| cache.insert(4, 4)).expect("healthy");
    let (hold1, hold2) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
    let (w1, w2, repair) = std::thread::scope(|sc| {
        let w1 = parked_in_compute(sc, &cache, &hold1, 1, 11);
        let w2 = parked_in_compute(sc, &cache, &hold2, 2, 22);
        // The log fails on a third shard; that write is rolled back at once.
        h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
        assert!(cache.durably(|| cache.insert(3, 3)).is_err());
        assert_eq!(cache.get(&3), None);
        // The repair has rolled back and is about to start its rewrite.
        h.begin_gate.arm();
        let c = cache.clone();
        // The latch a given-up rewrite sets also marks the repair's end.
        let ended = h.abandoned.clone();
        let repair = sc.spawn(move || {
            let r = c.sync();
            ended.set();
            r
        });
        h.begin_gate.wait_entered();
        // W1 applies, is refused, and its rollback parks in the listener.
        lgate.arm();
        hold1.release();
        lgate.wait_entered();
        // W2 applies and is refused; its undo waits for W1's rollback.
        hold2.release();
        assert_eq!(cache.get(&2), Some(22), "W2 applied, not yet undone");
        // The repair runs until it has either ended or given up a rewrite.
        // (A repair that waited for the rollback instead would wait for the
        // listener: the time limit only keeps such a one from hanging here.)
        h.begin_gate.release();
        h.abandoned.wait_for(Duration::from_secs(10));
        lgate.release();
        (
            w1.join().expect("w1"),
            w2.join().expect("w2"),
            repair.join().expect("repair"),
        )
    });
    assert!(w1.is_err(), "{w1:?}");
    assert!(w2.is_err(), "{w2:?}");
    repair.expect("repaired");
    let memory: BTreeMap<u32, u32> = cache.iter().collect();
    // Writes go on after the repair.
    cache.durably(|| cache.insert(5, 5)).expect("repaired");
    let reopened = after_power_loss(&h, cache);
    let want: BTreeMap<u32, u32> = [(2, 20), (4, 4)].into();
    let want_reopened: BTreeMap<u32, u32> = [(2, 20), (4, 4), (5, 5)].into();
    assert_eq!(
        (memory, contents(&reopened)),
        (want, want_reopened),
        "(memory, after a power loss): a refused write was kept"
    );
}

/// A `retain` while a repair's snapshot is being written: its removals are
/// not in the snapshot's part already read, and the failed log refuses
/// their records. The repair must not swap in a log that brings them back.
#[test]
fn a_retain_during_a_repair_is_not_undone_by_it() {
    let h = Hooked::default();
    let cache = open(h.clone()).0;
    for k in 0..20 {
        cache.durably(|| cache.insert(k, k)).expect("healthy");
    }
    h.inner.inject(FaultOn::Sync, 0, ErrorKind::Other, false);
    assert!(cache.durably(|| cache.insert(100, 100)).is_err());
    std::thread::scope(|sc| {
        h.emit_gate.arm();
        let c = cache.clone();
        let repair = sc.spawn(move || c.sync());
        // The snapshot has read its first chunk and writes it out.
        h.emit_gate.wait_entered();
        cache.retain(|_, _| false);
        h.emit_gate.release();
        repair.join().expect("repair").expect("repaired");
    });
    assert_eq!(contents(&cache), BTreeMap::new());
    cache.durably(|| cache.insert(500, 500)).expect("repaired");
    drop(cache);
    let (reopened, report) = open(h.inner.clone());
    assert_eq!(
        contents(&reopened),
        BTreeMap::from([(500, 500)]),
        "removed entries came back: {report:?}"
    );
}

/// The same in the buffered modes, whose refused writes stay in memory
/// for the repair to log: one the repair's snapshot had already read past
/// must retake it.
#[test]
fn a_retain_during_a_buffered_repair_is_not_undone_by_it() {
    for fsync in [Fsync::EverySecond, Fsync::Never] {
        let open_buffered = |s: Hooked| {
            let log = FileLog::with_storage(s, fsync)
                .write_delay(Duration::ZERO)
                .rewrite_policy(0, 0);
            Cache::<u32, u32>::builder()
                .max_capacity(1000)
                .build_persistent(log)
                .expect("load")
                .0
        };
        let h = Hooked::default();
        let cache = open_buffered(h.clone());
        for k in 0..20 {
            cache.insert(k, k);
        }
        cache.sync().expect("healthy");
        h.inner.inject(FaultOn::Append, 0, ErrorKind::Other, false);
        cache.insert(100, 100);
        std::thread::scope(|sc| {
            h.emit_gate.arm();
            let c = cache.clone();
            // Reports the failed append, and repairs.
            let repair = sc.spawn(move || c.sync());
            h.emit_gate.wait_entered();
            cache.retain(|_, _| false);
            h.emit_gate.release();
            assert!(repair.join().expect("repair").is_err(), "{fsync:?}");
        });
        // Reports the retain's refused records.
        assert!(cache.sync().is_err(), "{fsync:?}");
        cache.insert(500, 500);
        cache.sync().expect("repaired");
        assert_eq!(contents(&cache), BTreeMap::from([(500, 500)]));
        drop(cache);
        let reopened = open_buffered(Hooked {
            inner: h.inner.clone(),
            ..Hooked::default()
        });
        assert_eq!(
            contents(&reopened),
            BTreeMap::from([(500, 500)]),
            "{fsync:?}: removed entries came back"
        );
    }
}
