//! Dropping a persistent cache while a background rewrite (compaction) of
//! its log runs. The drop of the last handle stops the rewrite (or lets it
//! end its swap, once its snapshot is written) and closes the log before it
//! returns: the same path reopens at once, as a restarted component reopens
//! it, with every acknowledged write. Whatever step the rewrite is at,
//! whichever handle drops last, on whichever thread, with writes going on.
//!
//! Every scenario runs under a watchdog: a drop that deadlocks fails its
//! test instead of hanging it.

#[path = "support/gated_storage.rs"]
mod gated_storage;

use gated_storage::{Gate, GatedStorage, ReleaseOnDrop, Step};
use shardcache::persist::{FileLog, Fsync, MemStorage};
use shardcache::Cache;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type C = Cache<u32, String>;

/// How long a scenario may run before it counts as deadlocked.
const WATCHDOG: Duration = Duration::from_secs(120);

/// How long the test lets a drop wait for a rewrite stopped at the gate
/// before letting the rewrite go on.
const LET_WAIT: Duration = Duration::from_millis(300);

/// Runs `f` on a thread of its own; fails if it has not ended within
/// [`WATCHDOG`] (a drop that deadlocked), and passes its panic on.
fn watchdog<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: still running after {WATCHDOG:?}: deadlocked"),
    }
}

fn value(k: u32, round: u32) -> String {
    format!("value {k:>6} of round {round:>6}")
}

/// Writes keys `0..n` (round 0) to a new log at `path`, with no rewrite.
fn prepare(path: &Path, n: u32) {
    let log = FileLog::open(path, Fsync::Never)
        .expect("new log")
        .rewrite_policy(0, 0);
    let (cache, _) = C::builder()
        .max_capacity(1_000_000)
        .build_persistent(log)
        .expect("load");
    for k in 0..n {
        cache.insert(k, value(k, 0));
    }
}

/// The log at `path` behind `gate`, rewritten in the background once it has
/// doubled since it was opened.
fn open_gated(path: &Path, gate: &Arc<Gate>, fsync: Fsync) -> C {
    let storage = GatedStorage::open(path, gate.clone()).expect("open");
    let log = FileLog::with_storage(storage, fsync).rewrite_policy(100, 0);
    C::builder()
        .max_capacity(1_000_000)
        .build_persistent(log)
        .expect("load")
        .0
}

fn rewrite_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rewrite");
    PathBuf::from(name)
}

/// Reopens `path` now: its lock is free at once (taken with no retry), no
/// replacement is left beside it, and its log loads; what it holds.
fn reopen(path: &Path) -> BTreeMap<u32, String> {
    let file = std::fs::File::open(path).expect("the log");
    if let Err(e) = file.try_lock() {
        panic!("the log is still locked after the drop returned: {e}");
    }
    drop(file);
    assert!(
        !rewrite_file(path).exists(),
        "the stopped rewrite's replacement is removed"
    );
    let log = FileLog::open(path, Fsync::Never).expect("reopen right after the drop");
    let (cache, _) = C::builder()
        .max_capacity(1_000_000)
        .build_persistent(log)
        .expect("load");
    cache.iter().collect()
}

/// Whether `thread` ends within `within`.
fn ends_within<T>(thread: &JoinHandle<T>, within: Duration) -> bool {
    let until = Instant::now() + within;
    while !thread.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    thread.is_finished()
}

/// Overwrites keys `0..n` round after round on a thread of its own, through
/// a clone of `cache`, until `stop`; what it wrote that was acknowledged
/// (round 0 was). The clone drops as the thread ends.
fn writer(cache: &C, n: u32, stop: &Arc<AtomicBool>) -> JoinHandle<BTreeMap<u32, String>> {
    let cache = cache.clone();
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut acked: BTreeMap<u32, String> = (0..n).map(|k| (k, value(k, 0))).collect();
        'rounds: for round in 1.. {
            for k in 0..n {
                if stop.load(Ordering::Acquire) {
                    break 'rounds;
                }
                let v = value(k, round);
                if cache.durably(|| cache.insert(k, v.clone())).is_ok() {
                    acked.insert(k, v);
                }
            }
        }
        acked
    })
}

/// Which handle drops last.
#[derive(Clone, Copy, Debug)]
enum Last {
    /// The test's own, once the writer has stopped and dropped its clone.
    Main,
    /// The writer's clone, on its thread: the test's handle drops (on a
    /// thread of its own) while the writer still writes.
    Writer,
}

/// Prepares `n` keys, reopens them behind a gate armed at `step`, and
/// overwrites them on a writer thread until the log's background rewrite
/// stops at `step`. Then drops both handles, `last` last, lets the rewrite
/// go on once the last drop has waited for it a while, and reopens the
/// path as soon as that drop returned: every acknowledged write is there.
fn drop_during(step: Step, last: Last, fsync: Fsync, n: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    prepare(&path, n);
    let gate = Arc::new(Gate::default());
    let _release = ReleaseOnDrop(gate.clone());
    gate.arm(step);
    let cache = open_gated(&path, &gate, fsync);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(&cache, n, &stop);
    assert!(
        gate.wait_reached(Duration::from_secs(60)),
        "no background rewrite reached {step:?}"
    );
    // At the catch-up and the swap the rewrite holds the log's append lock,
    // so the writer may be stopped too: the drops run on a thread of their
    // own.
    let drops = std::thread::spawn(move || match last {
        Last::Main => {
            stop.store(true, Ordering::Release);
            let acked = writes.join().expect("writer");
            drop(cache);
            acked
        }
        Last::Writer => {
            let mine = std::thread::spawn(move || drop(cache));
            mine.join().expect("the first drop");
            stop.store(true, Ordering::Release);
            writes.join().expect("writer")
        }
    });
    // The last drop waits for the rewrite, which waits at the gate: a drop
    // that ended meanwhile did not wait for it, and left the log open.
    let returned_early = ends_within(&drops, LET_WAIT);
    if !returned_early {
        gate.release();
    }
    let acked = drops.join().expect("drops");
    let got = reopen(&path);
    assert!(
        !returned_early,
        "the drop returned while the rewrite was still running"
    );
    assert_eq!(got.len(), acked.len(), "{step:?}: entries after the reopen");
    assert!(got == acked, "{step:?}: an acknowledged write is missing");
}

const N: u32 = 3_000;

/// The defect this file is about: a drop in the middle of the rewrite's
/// copy returned while the rewrite went on holding the log, and the reopen
/// right after failed with `PersistError::Locked`.
#[test]
fn a_cache_dropped_during_a_background_rewrite_reopens_at_once() {
    watchdog("drop mid-copy", || {
        drop_during(Step::Append(N as usize / 2), Last::Main, Fsync::Never, N);
    });
}

#[test]
fn a_drop_as_the_rewrite_starts_discards_its_replacement() {
    watchdog("drop at the start", || {
        drop_during(Step::Begin, Last::Main, Fsync::Never, N);
    });
}

#[test]
fn a_drop_at_the_first_record_of_the_copy() {
    watchdog("drop at the first record", || {
        drop_during(Step::Append(2), Last::Main, Fsync::Never, N);
    });
}

/// Past its snapshot the rewrite has nothing left to read from the cache:
/// it ends its swap, and the drop waits for that.
#[test]
fn a_drop_during_the_catch_up_waits_for_the_swap() {
    watchdog("drop during the catch-up", || {
        drop_during(Step::Append(N as usize + 2), Last::Main, Fsync::Never, N);
    });
}

#[test]
fn a_drop_during_the_rename_waits_for_it() {
    watchdog("drop during the rename", || {
        drop_during(Step::Commit, Last::Main, Fsync::Never, N);
    });
}

#[test]
fn a_drop_on_a_thread_while_another_writes() {
    for step in [
        Step::Begin,
        Step::Append(N as usize / 2),
        Step::Append(N as usize + 2),
        Step::Commit,
    ] {
        watchdog("the writer's drop is the last", move || {
            drop_during(step, Last::Writer, Fsync::Never, N);
        });
    }
}

#[test]
fn a_drop_during_a_rewrite_of_a_log_synced_on_every_write() {
    let n = 400;
    for step in [Step::Append(n as usize / 2), Step::Commit] {
        for last in [Last::Main, Last::Writer] {
            watchdog("fsync always", move || {
                drop_during(step, last, Fsync::Always, n);
            });
        }
    }
}

/// A log whose background rewrite is stopped in the middle of its copy.
struct StoppedMidCopy {
    _dir: tempfile::TempDir,
    path: PathBuf,
    gate: Arc<Gate>,
    /// Clones of the cache (the original among them).
    handles: Vec<C>,
    /// What the cache holds.
    want: BTreeMap<u32, String>,
}

fn stopped_mid_copy(handles: usize) -> StoppedMidCopy {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.log");
    let n = 2_000;
    prepare(&path, n);
    let gate = Arc::new(Gate::default());
    gate.arm(Step::Append(n as usize / 2));
    let cache = open_gated(&path, &gate, Fsync::Never);
    let mut want: BTreeMap<u32, String> = (0..n).map(|k| (k, value(k, 0))).collect();
    'rounds: for round in 1.. {
        for k in 0..n {
            if gate.reached() {
                break 'rounds;
            }
            cache.insert(k, value(k, round));
            want.insert(k, value(k, round));
        }
    }
    StoppedMidCopy {
        _dir: dir,
        path,
        gate,
        handles: (0..handles).map(|_| cache.clone()).collect(),
        want,
    }
}

/// Clones dropped one after another, in every order: each drop but the
/// last returns at once (the rewrite goes on for the others); the last one
/// waits for the rewrite, and the path reopens right after it.
#[test]
fn clones_dropped_in_any_order() {
    let orders: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        watchdog("clones in order", move || {
            let s = stopped_mid_copy(3);
            let _release = ReleaseOnDrop(s.gate.clone());
            let mut slots: Vec<Option<C>> = s.handles.into_iter().map(Some).collect();
            for &i in &order[..2] {
                let handle = slots[i].take().expect("not dropped yet");
                let dropping = std::thread::spawn(move || drop(handle));
                assert!(
                    ends_within(&dropping, Duration::from_secs(20)),
                    "order {order:?}: dropping clone {i}, not the last, waited"
                );
            }
            let last = slots[order[2]].take().expect("the last");
            let dropping = std::thread::spawn(move || drop(last));
            let returned_early = ends_within(&dropping, LET_WAIT);
            s.gate.release();
            dropping.join().expect("the last drop");
            assert!(
                !returned_early,
                "order {order:?}: the last drop returned while the rewrite ran"
            );
            assert!(reopen(&s.path) == s.want, "order {order:?}: entries lost");
        });
    }
}

/// Clones dropped at the same moment on threads of their own: whichever
/// drop is the last waits for the rewrite.
#[test]
fn clones_dropped_at_once_on_many_threads() {
    for round in 0..5 {
        watchdog("clones at once", move || {
            let s = stopped_mid_copy(4);
            let _release = ReleaseOnDrop(s.gate.clone());
            let start = Arc::new(Barrier::new(s.handles.len()));
            let drops: Vec<_> = s
                .handles
                .into_iter()
                .map(|handle| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        drop(handle);
                    })
                })
                .collect();
            std::thread::sleep(LET_WAIT);
            assert!(
                drops.iter().any(|d| !d.is_finished()),
                "round {round}: every drop returned while the rewrite ran"
            );
            s.gate.release();
            for d in drops {
                d.join().expect("drop");
            }
            assert!(reopen(&s.path) == s.want, "round {round}: entries lost");
        });
    }
}

/// A drop right after the write that starts a background rewrite: before
/// its thread runs, as it starts, or in its copy, depending on the round.
#[test]
fn a_drop_right_after_a_rewrite_is_started() {
    for extra in 0..24u32 {
        watchdog("drop as the rewrite starts", move || {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("c.log");
            let n = 1_500;
            prepare(&path, n);
            let log = FileLog::open(&path, Fsync::Never)
                .expect("open")
                .rewrite_policy(100, 0);
            let (cache, _) = C::builder()
                .max_capacity(1_000_000)
                .build_persistent(log)
                .expect("load");
            let mut want: BTreeMap<u32, String> = (0..n).map(|k| (k, value(k, 0))).collect();
            // The log has doubled after about n overwrites.
            for i in 0..n + extra * 4 {
                let k = i % n;
                cache.insert(k, value(k, 1 + i / n));
                want.insert(k, value(k, 1 + i / n));
            }
            drop(cache);
            assert!(reopen(&path) == want, "{extra}: entries lost");
        });
    }
}

fn mem_cache(storage: &MemStorage, rewrite: bool) -> C {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    let log = if rewrite {
        log.rewrite_policy(100, 0)
    } else {
        log.rewrite_policy(0, 0)
    };
    C::builder()
        .max_capacity(100_000)
        .build_persistent(log)
        .expect("load")
        .0
}

/// A storage fault at each point around a background rewrite (in its copy,
/// its swap, or the writes it races), then the drop at once, and a power
/// loss: the drop ends, and every acknowledged write is in the log.
#[test]
fn a_fault_around_a_background_rewrite_then_a_drop_keeps_every_acknowledged_write() {
    for fail_at in 0..40u64 {
        for keep in [0usize, 5] {
            watchdog("fault, then drop", move || {
                let n = 100u32;
                let storage = MemStorage::new();
                let mut acked = BTreeMap::new();
                {
                    let cache = mem_cache(&storage, false);
                    for k in 0..n {
                        cache.insert(k, value(k, 0));
                        acked.insert(k, value(k, 0));
                    }
                    cache.sync().expect("nothing failed yet");
                }
                let cache = mem_cache(&storage, true);
                // Per key, the overwrites since its last acknowledged one.
                let mut unacked: BTreeMap<u32, Vec<String>> = BTreeMap::new();
                // The log doubles (and a background rewrite starts) at
                // about the n-th overwrite; the fault comes near it.
                for i in 0..2 * n {
                    if i == n - 10 {
                        storage.fail_after(fail_at);
                    }
                    let (k, v) = (i % n, value(i % n, 1 + i / n));
                    if cache.durably(|| cache.insert(k, v.clone())).is_ok() {
                        acked.insert(k, v);
                        unacked.remove(&k);
                    } else {
                        unacked.entry(k).or_default().push(v);
                    }
                }
                drop(cache);
                storage.power_loss(keep);
                let reopened = mem_cache(&storage, false);
                for (k, v) in &acked {
                    let got = reopened.get(k);
                    // An unacknowledged overwrite may or may not have landed.
                    let landed = |got: &String| unacked.get(k).is_some_and(|u| u.contains(got));
                    assert!(
                        got.as_ref() == Some(v) || got.as_ref().is_some_and(landed),
                        "fault at {fail_at}, keep {keep}: key {k} is {got:?}, acknowledged {v}"
                    );
                }
            });
        }
    }
}
