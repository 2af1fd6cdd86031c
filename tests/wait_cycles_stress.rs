//! Many threads making chains of waits that never close: loaders that ask
//! for keys ranked above their own (blocking, or led by async tasks),
//! loaders that sync a log that keeps failing and being repaired, or
//! compact it (the repair and rewrite locks and rollbacks), `compute`
//! closures on one cache that wait for the other cache's loads, short
//! `compute` closures on the logged cache that the repairs' reads wait for,
//! and a thread failing and healing the disk. No wait closes a cycle, so
//! nothing may be refused: no panic, no `PersistError::InCallback`; and
//! everything finishes (under a watchdog).

use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage, PersistError};
use shardcache::{Cache, Decision, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/watchdog.rs"]
mod watchdog;
use watchdog::{bounded, message};

type C = Cache<u64, u64>;

/// Keys loaded through chains: a loader of `k` asks only for keys above `k`.
const LOADED: u64 = 48;
/// Keys the short closures and the plain reads use (none of them loaded).
const PLAIN: u64 = 1_000;

/// Steps per worker.
const STEPS: usize = 2_000;

/// What the threads share: the logged cache, the plain one, and what went
/// wrong (refusals that no cycle explains).
struct World {
    logged: C,
    plain: C,
    wrong: Mutex<Vec<String>>,
    syncs: AtomicUsize,
    /// Syncs that found the log failed (and repaired it, or tried).
    failed_syncs: AtomicUsize,
    /// Loaders run.
    loads: AtomicUsize,
}

impl World {
    fn note(&self, what: String) {
        self.wrong.lock().expect("not poisoned").push(what);
    }

    /// A sync from code no cache runs under a lock: refused only if it
    /// closed a cycle, which none of these chains does.
    fn sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        match self.logged.sync() {
            Ok(()) => {}
            Err(e @ PersistError::InCallback { .. }) => self.note(format!("sync refused: {e}")),
            Err(_) => drop(self.failed_syncs.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Loads `k` with a loader that may ask for higher keys, read plain
    /// keys, and (if `may_sync`) sync the log.
    fn load(&self, k: u64, rng: &mut Xorshift, may_sync: bool) -> u64 {
        let seed = rng.below(u64::MAX);
        self.logged.get_or_insert_with(k, || {
            self.loads.fetch_add(1, Ordering::Relaxed);
            let mut rng = Xorshift(seed | 1);
            self.chain(k, &mut rng, may_sync)
        })
    }

    /// What a loader of `k` does before it returns.
    fn chain(&self, k: u64, rng: &mut Xorshift, may_sync: bool) -> u64 {
        if may_sync && rng.below(4) == 0 {
            self.sync();
        }
        if may_sync && rng.below(8) == 0 {
            if let Err(e @ PersistError::InCallback { .. }) = self.logged.rewrite_log() {
                self.note(format!("rewrite_log refused: {e}"));
            }
        }
        let _ = self.logged.get(&(PLAIN + rng.below(16)));
        if k + 1 < LOADED && rng.below(3) != 0 {
            let next = k + 1 + rng.below(3).min(LOADED - k - 2);
            return self.load(next, rng, may_sync) + 1;
        }
        k
    }

    /// One step of a worker of `kind`.
    fn step(&self, kind: u64, rng: &mut Xorshift) {
        let k = rng.below(LOADED);
        match kind {
            0 => {
                let _ = self.load(k, rng, true);
            }
            1 => {
                let seed = rng.below(u64::MAX) | 1;
                let init = async move {
                    self.loads.fetch_add(1, Ordering::Relaxed);
                    let mut rng = Xorshift(seed);
                    self.chain(k, &mut rng, true)
                };
                let _ = futures::executor::block_on(self.logged.get_or_insert_with_async(k, init));
            }
            2 => {
                let _ = self.logged.compute(PLAIN + rng.below(16), |v| {
                    (Decision::Put(v.map_or(0, |v| *v.value + 1), Ttl::Keep), ())
                });
            }
            3 => {
                let _ = self.plain.compute(rng.below(16), |_| {
                    let v = self.load(k, rng, false);
                    (Decision::Put(v, Ttl::Keep), ())
                });
            }
            _ => {
                for key in k..LOADED.min(k + 8) {
                    let _ = self.logged.remove(&key);
                }
            }
        }
    }
}

#[test]
fn chains_of_waits_that_do_not_close_are_never_refused() {
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always).write_delay(Duration::ZERO);
    let logged: C = Cache::builder()
        .max_capacity(10_000)
        .shards(8)
        .build_persistent(log)
        .expect("the log loads")
        .0;
    let plain: C = Cache::builder()
        .max_capacity(10_000)
        .shards(8)
        .build()
        .expect("valid");
    let world = Arc::new(World {
        logged,
        plain,
        wrong: Mutex::new(Vec::new()),
        syncs: AtomicUsize::new(0),
        failed_syncs: AtomicUsize::new(0),
        loads: AtomicUsize::new(0),
    });
    let (w, disk_storage) = (world.clone(), storage.clone());
    bounded(120, move || {
        let stop = Arc::new(AtomicBool::new(false));
        let disk = {
            let (w, stop, storage) = (w.clone(), stop.clone(), disk_storage.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    storage.inject(FaultOn::Sync, 3, std::io::ErrorKind::Other, true);
                    std::thread::sleep(Duration::from_millis(3));
                    storage.heal();
                    w.sync();
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let workers: Vec<_> = (0..10u64)
            .map(|i| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15 ^ (i + 1));
                    for _ in 0..STEPS {
                        let kind = (i + rng.below(5)) % 5;
                        let r = catch_unwind(AssertUnwindSafe(|| w.step(kind, &mut rng)));
                        if let Err(p) = r {
                            w.note(format!("kind {kind} panicked: {}", message(&*p)));
                        }
                    }
                })
            })
            .collect();
        for t in workers {
            t.join().expect("caught");
        }
        stop.store(true, Ordering::Release);
        disk.join().expect("the disk thread");
    })
    .expect("chains of waits that do not close hung");
    let wrong = world.wrong.lock().expect("not poisoned");
    assert!(wrong.is_empty(), "{wrong:#?}");
    let (syncs, failed, loads) = (
        world.syncs.load(Ordering::Relaxed),
        world.failed_syncs.load(Ordering::Relaxed),
        world.loads.load(Ordering::Relaxed),
    );
    eprintln!("{syncs} syncs, {failed} on a failed log, {loads} loads");
    assert!(failed > 0 && loads > 1_000, "{syncs} {failed} {loads}");
    storage.heal();
    let _ = world.logged.sync();
    world.logged.sync().expect("repaired");
}
