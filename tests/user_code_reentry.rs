//! User code that calls back into the cache that runs it: every public call
//! that takes a lock, from inside every kind of callback (a listener told of
//! an eviction, a removal, an expiry, a replacement, a clear, or of a write
//! undone after the log failed; a loader; a weigher; an expiry rule), with
//! and without a log, under each fsync mode. Each call returns (its result
//! or a clear error) and never hangs. Code the cache runs with no lock held
//! (listeners, loaders) never panics; code it runs under a shard's lock (a
//! weigher) panics with the cache's message when its call would wait for
//! that lock, as its documentation says.

use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage, PersistError};
use shardcache::{Cache, Decision, MockClock, RemovalCause, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

#[path = "support/watchdog.rs"]
mod watchdog;
use watchdog::{bounded, message};

type C = Cache<u64, u64>;

/// A public call that takes one of the cache's locks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    Get,
    Insert,
    Remove,
    Compute,
    Clear,
    Retain,
    Sync,
    RewriteLog,
    Durably,
    Load,
    SetTtl,
    PurgeExpired,
    Len,
    Iter,
    Stats,
}

const CALLS: [Call; 15] = [
    Call::Get,
    Call::Insert,
    Call::Remove,
    Call::Compute,
    Call::Clear,
    Call::Retain,
    Call::Sync,
    Call::RewriteLog,
    Call::Durably,
    Call::Load,
    Call::SetTtl,
    Call::PurgeExpired,
    Call::Len,
    Call::Iter,
    Call::Stats,
];

/// A key no scenario writes before its callback runs.
const OTHER: u64 = 1_000_003;

/// Makes `call` on `c`; what it answered, if it can fail.
fn make(c: &C, call: Call) -> Result<(), String> {
    let e = |e: PersistError| e.to_string();
    match call {
        Call::Get => drop(c.get(&OTHER)),
        Call::Insert => c.insert(OTHER, 1),
        Call::Remove => drop(c.remove(&OTHER)),
        Call::Compute => {
            let _ = c.compute(OTHER, |cur| {
                (
                    Decision::Put(cur.map_or(1, |v| *v.value + 1), Ttl::Keep),
                    (),
                )
            });
        }
        Call::Clear => c.clear(),
        Call::Retain => c.retain(|k, _| *k != OTHER),
        Call::Sync => return c.sync().map_err(e),
        Call::RewriteLog => return c.rewrite_log().map_err(e),
        Call::Durably => return c.durably(|| c.insert(OTHER, 2)).map_err(e),
        Call::Load => drop(c.get_or_insert_with(OTHER + 1, || 5)),
        Call::SetTtl => drop(c.set_ttl(&OTHER, Some(Duration::from_secs(60)))),
        Call::PurgeExpired => c.purge_expired(),
        Call::Len => drop((c.len(), c.weighted_size())),
        Call::Iter => drop(c.iter().count()),
        Call::Stats => drop(c.stats()),
    }
    Ok(())
}

/// Where a callback's call is made from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum From {
    Listener,
    Weigher,
    ExpiryRule,
}

/// The call a callback of one kind is to make, once, and what came of it.
#[derive(Default)]
struct Hook {
    cache: OnceLock<C>,
    armed: Mutex<Option<(From, Call)>>,
    /// The call's outcome: its answer, or its panic's message.
    outcome: Mutex<Option<Result<Result<(), String>, String>>>,
    /// The causes the listener was told of while armed.
    causes: Mutex<Vec<RemovalCause>>,
}

impl Hook {
    /// Makes the armed call if `from` is the kind it waits for.
    fn fire(&self, from: From) {
        let call = {
            let mut armed = self.armed.lock().expect("not poisoned");
            match *armed {
                Some((f, call)) if f == from => {
                    *armed = None;
                    call
                }
                _ => return,
            }
        };
        let c = self.cache.get().expect("set").clone();
        let r = catch_unwind(AssertUnwindSafe(|| make(&c, call))).map_err(|p| message(&*p));
        *self.outcome.lock().expect("not poisoned") = Some(r);
    }

    fn arm(&self, from: From, call: Call) {
        *self.armed.lock().expect("not poisoned") = Some((from, call));
        *self.outcome.lock().expect("not poisoned") = None;
    }

    /// What the armed call came to; fails if it was never made.
    fn outcome(&self, what: &str) -> Result<Result<(), String>, String> {
        self.outcome
            .lock()
            .expect("not poisoned")
            .take()
            .unwrap_or_else(|| panic!("{what}: the callback never ran"))
    }
}

/// A cache of one shard (every call reaches the callback's shard) whose
/// listener, weigher and expiry rule make `hook`'s call, on `storage`'s log
/// under `fsync` if any.
fn open(hook: &Arc<Hook>, log: Option<(&MemStorage, Fsync)>, clock: &MockClock) -> C {
    let (l, w, x) = (hook.clone(), hook.clone(), hook.clone());
    let b = Cache::builder()
        .max_capacity(8)
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |_, _, cause| {
            if l.armed.lock().expect("not poisoned").is_some() {
                l.causes.lock().expect("not poisoned").push(cause);
            }
            l.fire(From::Listener);
        })
        .weigher(move |_, _| {
            w.fire(From::Weigher);
            1
        })
        .expire_after(move |_, _| {
            x.fire(From::ExpiryRule);
            None
        });
    let cache = match log {
        None => b.build().expect("valid"),
        Some((storage, fsync)) => {
            let log = FileLog::with_storage(storage.clone(), fsync).write_delay(Duration::ZERO);
            b.build_persistent(log).expect("the log loads").0
        }
    };
    let _ = hook.cache.set(cache.clone());
    cache
}

/// How a listener is made to run: what the scenario does once armed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Trigger {
    Evicted,
    Removed,
    Expired,
    Replaced,
    Cleared,
    /// A write under `Fsync::Always` whose fsync fails: its undo notifies.
    Undone,
}

const TRIGGERS: [Trigger; 6] = [
    Trigger::Evicted,
    Trigger::Removed,
    Trigger::Expired,
    Trigger::Replaced,
    Trigger::Cleared,
    Trigger::Undone,
];

/// The logs a scenario runs on: none, and each fsync mode.
const MODES: [Option<Fsync>; 4] = [
    None,
    Some(Fsync::Always),
    Some(Fsync::EverySecond),
    Some(Fsync::Never),
];

/// One scenario: a cache on `mode`'s log whose listener makes `call` when
/// `trigger` notifies it. Returns the call's outcome; the cache must work
/// on afterwards.
fn listener_scenario(
    mode: Option<Fsync>,
    trigger: Trigger,
    call: Call,
) -> Result<Result<(), String>, String> {
    let what = format!("{call:?} from a listener on {trigger:?} under {mode:?}");
    let hook = Arc::new(Hook::default());
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let cache = open(&hook, mode.map(|m| (&storage, m)), &clock);
    for k in 0..4 {
        cache.insert(k, k);
    }
    match trigger {
        Trigger::Evicted => {
            hook.arm(From::Listener, call);
            let mut k = 100;
            while hook.armed.lock().expect("not poisoned").is_some() && k < 200 {
                cache.insert(k, k);
                k += 1;
            }
        }
        Trigger::Removed => {
            hook.arm(From::Listener, call);
            cache.remove(&1);
        }
        Trigger::Expired => {
            cache.insert_with_ttl(50, 50, Duration::from_secs(1));
            clock.advance(Duration::from_secs(2));
            hook.arm(From::Listener, call);
            cache.purge_expired();
        }
        Trigger::Replaced => {
            hook.arm(From::Listener, call);
            cache.insert(2, 20);
        }
        Trigger::Cleared => {
            hook.arm(From::Listener, call);
            cache.clear();
        }
        Trigger::Undone => {
            storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
            hook.arm(From::Listener, call);
            assert!(cache.durably(|| cache.insert(3, 30)).is_err(), "{what}");
            assert_eq!(cache.get(&3), Some(3), "{what}: the write is undone");
            storage.heal();
        }
    }
    let causes = hook.causes.lock().expect("not poisoned").clone();
    let outcome = hook.outcome(&what);
    let expected = match trigger {
        Trigger::Evicted => RemovalCause::Evicted,
        Trigger::Removed | Trigger::Cleared => RemovalCause::Removed,
        Trigger::Expired => RemovalCause::Expired,
        Trigger::Replaced | Trigger::Undone => RemovalCause::Replaced,
    };
    assert_eq!(causes.first(), Some(&expected), "{what}");
    // The cache works on, and its log (if any) is repaired and kept.
    let _ = cache.sync();
    cache.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
    cache.insert(7, 77);
    assert_eq!(cache.get(&7), Some(77), "{what}");
    cache.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
    outcome
}

#[test]
fn a_listener_may_call_the_cache_from_every_notice() {
    let mut failures = Vec::new();
    for mode in MODES {
        for trigger in TRIGGERS {
            if trigger == Trigger::Undone && mode != Some(Fsync::Always) {
                // Only a log that waits for the disk undoes writes.
                continue;
            }
            for call in CALLS {
                let what = format!("{call:?} from a listener on {trigger:?} under {mode:?}");
                match bounded(10, move || {
                    catch_unwind(AssertUnwindSafe(|| listener_scenario(mode, trigger, call)))
                }) {
                    Err(()) => failures.push(format!("{what}: hung")),
                    Ok(Err(_)) => failures.push(format!("{what}: the scenario failed")),
                    Ok(Ok(Err(panic))) => failures.push(format!("{what}: panicked: {panic}")),
                    Ok(Ok(Ok(answer))) => {
                        // Waiting for the log's recovery from inside the
                        // recovery is refused, and says why.
                        let waits = matches!(call, Call::Sync | Call::RewriteLog);
                        if trigger == Trigger::Undone && waits {
                            match answer {
                                Err(e) if e.contains("called from a listener") => {}
                                other => failures.push(format!("{what}: answered {other:?}")),
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// User code the cache runs other than a listener.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Code {
    Loader,
    Compute,
    Retain,
    Weigher,
    ExpiryRule,
}

/// One scenario: a cache on `mode`'s log whose `code` makes `call` (a
/// loader or `compute` closure of a new key, a `retain` predicate, the
/// weigher or expiry rule of an insert).
fn inner_scenario(
    mode: Option<Fsync>,
    code: Code,
    call: Call,
) -> Result<Result<(), String>, String> {
    let what = format!("{call:?} from {code:?} under {mode:?}");
    let hook = Arc::new(Hook::default());
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let cache = open(&hook, mode.map(|m| (&storage, m)), &clock);
    for k in 0..4 {
        cache.insert(k, k);
    }
    let c = cache.clone();
    let mut outcome = None;
    let mut run = || {
        if outcome.is_none() {
            let r = catch_unwind(AssertUnwindSafe(|| make(&c, call)));
            outcome = Some(r.map_err(|p| message(&*p)));
        }
    };
    match code {
        Code::Loader => {
            let v = cache.get_or_insert_with(60, || {
                run();
                60
            });
            assert_eq!(v, 60, "{what}");
        }
        Code::Compute => {
            let _ = cache.compute(60, |_| {
                run();
                (Decision::Put(60, Ttl::Keep), ())
            });
        }
        Code::Retain => cache.retain(|_, _| {
            run();
            true
        }),
        Code::Weigher | Code::ExpiryRule => {
            let from = match code {
                Code::Weigher => From::Weigher,
                _ => From::ExpiryRule,
            };
            hook.arm(from, call);
            cache.insert(60, 60);
            outcome = Some(hook.outcome(&what));
        }
    }
    let _ = cache.sync();
    cache.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
    cache.insert(7, 77);
    assert_eq!(cache.get(&7), Some(77), "{what}");
    outcome.unwrap_or_else(|| panic!("{what}: the code never ran"))
}

#[test]
fn code_the_cache_runs_may_call_it_or_is_told_why_not() {
    let mut failures = Vec::new();
    let codes = [
        Code::Loader,
        Code::Compute,
        Code::Retain,
        Code::Weigher,
        Code::ExpiryRule,
    ];
    for mode in MODES {
        for code in codes {
            for call in CALLS {
                let what = format!("{call:?} from {code:?} under {mode:?}");
                let locked = matches!(code, Code::Compute | Code::Retain | Code::Weigher);
                let waits = matches!(call, Call::Sync | Call::RewriteLog);
                match bounded(10, move || {
                    catch_unwind(AssertUnwindSafe(|| inner_scenario(mode, code, call)))
                }) {
                    Err(()) => failures.push(format!("{what}: hung")),
                    Ok(Err(_)) => failures.push(format!("{what}: the scenario failed")),
                    // Code run under its shard's lock (every call here
                    // reaches that shard): a call that would wait for the
                    // lock panics, saying so.
                    Ok(Ok(Err(panic))) if locked && panic.contains("wait for itself") => {}
                    Ok(Ok(Err(panic))) => failures.push(format!("{what}: panicked: {panic}")),
                    // Code that may run under a shard's lock is refused the
                    // calls that could wait for a rollback, log or not.
                    Ok(Ok(Ok(answer))) if waits && code != Code::Loader && mode.is_some() => {
                        match answer {
                            Err(e) if e.contains("under a shard's lock") => {}
                            other => failures.push(format!("{what}: answered {other:?}")),
                        }
                    }
                    Ok(Ok(Ok(_))) => {}
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn loaders_on_two_threads_that_ask_for_each_others_key_do_not_hang() {
    for _ in 0..20 {
        let cache: C = Cache::builder().max_capacity(100).build().expect("valid");
        let both_loading = Arc::new(std::sync::Barrier::new(2));
        // Loads `mine`, whose loader asks for `theirs`, which the other
        // thread is loading and whose loader asks for `mine`.
        let load = |mine: u64, theirs: u64| {
            let (c, b) = (cache.clone(), both_loading.clone());
            move || {
                catch_unwind(AssertUnwindSafe(|| {
                    c.get_or_insert_with(mine, || {
                        b.wait();
                        c.get_or_insert_with(theirs, || theirs * 10) + mine
                    })
                }))
                .map_err(|p| message(&*p))
            }
        };
        let (one, two) = (load(1, 2), load(2, 1));
        let (one, two) = bounded(10, move || {
            let t = std::thread::spawn(one);
            let two = two();
            (t.join().expect("caught"), two)
        })
        .expect("two loaders waiting for each other hung");
        // One wait closes the cycle and is refused; the other thread then
        // loads both keys itself.
        let (survivor, refused) = match (one, two) {
            (Ok(v), Err(e)) | (Err(e), Ok(v)) => (v, e),
            other => panic!("{other:?}"),
        };
        assert!(refused.contains("wait for each other"), "{refused}");
        let expected = match survivor {
            21 => (21, 20),
            12 => (10, 12),
            v => panic!("{v}"),
        };
        assert_eq!(
            (cache.get(&1), cache.get(&2)),
            (Some(expected.0), Some(expected.1))
        );
    }
}

#[test]
fn sync_from_a_compute_closure_on_a_failed_log_is_refused_at_once() {
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always).write_delay(Duration::ZERO);
    let cache: C = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .build_persistent(log)
        .expect("the log loads")
        .0;
    cache.insert(1, 1);
    storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
    assert!(
        cache.durably(|| cache.insert(2, 2)).is_err(),
        "the log failed"
    );
    storage.heal();
    // The repair `sync` would run reads the shard the closure holds.
    let c = cache.clone();
    let answer = bounded(10, move || {
        catch_unwind(AssertUnwindSafe(|| {
            c.compute(3, |_| (Decision::Put(3, Ttl::Keep), c.sync()))
        }))
        .map_err(|p| message(&*p))
    })
    .expect("hung");
    match answer {
        Ok(Ok(Err(PersistError::InCallback { call: "sync", .. }))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.get(&3), None, "refused: the log is failed");
    // Outside the closure, the same call repairs the log.
    let _ = cache.sync();
    cache.sync().expect("repaired");
    cache.insert(3, 3);
    assert_eq!(
        (cache.get(&1), cache.get(&2), cache.get(&3)),
        (Some(1), None, Some(3))
    );
}

#[test]
fn a_listener_told_of_an_undo_may_wait_for_a_load_whose_loader_syncs() {
    type Answer = Option<Result<u64, String>>;
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always).write_delay(Duration::ZERO);
    let handle: Arc<OnceLock<C>> = Arc::new(OnceLock::new());
    let (told_tx, told_rx) = mpsc::channel::<()>();
    let told_tx = Mutex::new(Some(told_tx));
    let heard: Arc<Mutex<Answer>> = Arc::new(Mutex::new(None));
    let (h, seen) = (handle.clone(), heard.clone());
    let cache: C = Cache::builder()
        .max_capacity(100)
        .eviction_listener(move |_, _, _| {
            // Once: tells the loader, then waits for its load.
            let Some(tx) = told_tx.lock().expect("not poisoned").take() else {
                return;
            };
            let _ = tx.send(());
            let c = h.get().expect("set");
            let r = catch_unwind(AssertUnwindSafe(|| c.get_or_insert_with(99, || 0)));
            *seen.lock().expect("not poisoned") = Some(r.map_err(|p| message(&*p)));
        })
        .build_persistent(log)
        .expect("the log loads")
        .0;
    let _ = handle.set(cache.clone());
    cache.insert(1, 1);
    let (leading_tx, leading_rx) = mpsc::channel::<()>();
    let c = cache.clone();
    // Leads the load of 99; its loader syncs once the listener has begun.
    let loader = std::thread::spawn(move || {
        let mut synced = None;
        let v = c.get_or_insert_with(99, || {
            let _ = leading_tx.send(());
            let _ = told_rx.recv_timeout(Duration::from_secs(20));
            synced = Some(c.sync());
            5
        });
        (v, synced)
    });
    leading_rx.recv().expect("the loader runs");
    storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
    let c = cache.clone();
    let undone = bounded(10, move || c.durably(|| c.insert(1, 11)).is_err())
        .expect("a rollback and a load waiting for each other hung");
    assert!(undone, "the fsync failed");
    let (v, synced) = loader.join().expect("the loader's thread");
    assert_eq!(v, 5);
    let heard = heard.lock().expect("not poisoned").take().expect("told");
    // Of the two waits, the one that would close the cycle is refused: the
    // sync's wait for the rollback, or the listener's for the load.
    match (&heard, &synced) {
        (Ok(5), Some(Err(PersistError::InCallback { call: "sync", .. }))) => {}
        (Err(panic), Some(_)) if panic.contains("wait for") => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.get(&1), Some(1), "the write is undone");
    storage.heal();
    let _ = cache.sync();
    cache.sync().expect("repaired");
    cache.insert(1, 12);
    assert_eq!(cache.get(&1), Some(12));
}
