#![allow(clippy::unwrap_used)]
//! Red-team attacks on the session store's removal log and folded replay
//! (`src/adapters/session.rs`, `session/{gone,destroy,reopen,user_locks}.rs`,
//! `src/cache/replay_fold.rs`, `Cache::log_gone`):
//!
//! * reopen exactness after random create / get / touch / update / destroy /
//!   destroy_all_for_user / count sequences with clock moves (none back,
//!   none lost, same data, same user index), over many reopens;
//! * ended sessions coming back on a wall clock set back before a reopen;
//! * storage faults at every call position (`fail_after(k)`, failing
//!   fsyncs): acknowledged calls kept, refused ones not, no panic or hang,
//!   and after `heal` + `sync` the reopened store matches;
//! * concurrent creates at `max_sessions`, touches, destroys,
//!   `destroy_all_for_user` of overlapping users and `count` purges while
//!   the clock moves: no deadlock, `count() <= max_sessions`, and the
//!   reopened live set equals the last observed one;
//! * hostile inputs: huge, empty and odd ids, 100k well-formed ids not
//!   live (log growth bounded by compaction), 1 MiB user names and data,
//!   heavy churn at `max_sessions` 1 and 2.

use shardcache::adapters::{SessionConfig, SessionError, SessionId, SessionStore};
use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage};
use shardcache::{Clock, MockClock};
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier};
use std::thread;
use std::time::Duration;

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; fails the test if it does not finish
/// within 60 s (a hang or deadlock), or if it panics.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => handle.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(_) => unreachable!(),
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hung for 60 s (deadlock?)"),
    }
}

fn step_wall(clock: &MockClock, forward: bool, by: Duration) {
    let wall = clock.wall();
    clock.set_wall(if forward { wall + by } else { wall - by });
}

fn mem_store(
    storage: &MemStorage,
    fsync: Fsync,
    config: SessionConfig,
) -> Result<SessionStore<u32>, SessionError> {
    let log = FileLog::with_storage(storage.clone(), fsync).write_delay(Duration::ZERO);
    SessionStore::with_log(log, config)
}

/// `(user, data)` of every id in `ids` that `store` finds live.
fn observe(store: &SessionStore<u32>, ids: &[SessionId]) -> BTreeMap<String, (String, u32)> {
    ids.iter()
        .filter_map(|id| {
            store
                .get(id.as_str())
                .map(|s| (id.as_str().to_string(), (s.user.clone(), s.data)))
        })
        .collect()
}

/// Per-user counts of `live`.
fn per_user(live: &BTreeMap<String, (String, u32)>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (user, _) in live.values() {
        *out.entry(user.clone()).or_insert(0) += 1;
    }
    out
}

/// The store's user index must agree with `live`: counts and id sets.
fn assert_index(
    store: &SessionStore<u32>,
    live: &BTreeMap<String, (String, u32)>,
    users: &[String],
    ctx: &str,
) {
    let expected = per_user(live);
    for user in users {
        let want = expected.get(user).copied().unwrap_or(0);
        assert_eq!(
            store.count_for_user(user),
            want,
            "{ctx}: count_for_user({user})"
        );
        let mut of: Vec<String> = store
            .sessions_of(user)
            .iter()
            .map(|id| id.as_str().to_string())
            .collect();
        of.sort();
        let mut want_ids: Vec<String> = live
            .iter()
            .filter(|(_, (u, _))| u == user)
            .map(|(id, _)| id.clone())
            .collect();
        want_ids.sort();
        assert_eq!(of, want_ids, "{ctx}: sessions_of({user})");
    }
}

/// As [`assert_index`], but a session whose `create` returned an error
/// may stand, unknown (documented: "its id never returned"): the index
/// must name every known live id under its user, and no known id that is
/// not live.
fn assert_index_known(
    store: &SessionStore<u32>,
    live: &BTreeMap<String, (String, u32)>,
    known: &[SessionId],
    users: &[String],
    ctx: &str,
) {
    let known: BTreeSet<&str> = known.iter().map(SessionId::as_str).collect();
    for user in users {
        let of: BTreeSet<String> = store
            .sessions_of(user)
            .iter()
            .map(|id| id.as_str().to_string())
            .collect();
        for (id, (u, _)) in live {
            if u == user {
                assert!(of.contains(id), "{ctx}: {user}'s live session not indexed");
            }
        }
        for id in &of {
            if known.contains(id.as_str()) {
                assert!(live.contains_key(id), "{ctx}: {user}: a dead id indexed");
            }
        }
        assert_eq!(store.count_for_user(user), of.len(), "{ctx}");
    }
}

// ---------------------------------------------------------------------------
// 1. Ended sessions and wall-clock steps back.
// ---------------------------------------------------------------------------

/// A session whose absolute deadline passed while the store was up, which
/// the store itself reported ended (`get` returned `None`, `count_for_user`
/// 0), and which no other call reclaimed: the `get` that found it ended
/// logs its removal, so with the wall clock then set back (2 h) before its
/// logged deadline, the reopened store does not load it. (A session no
/// call ever looked at after it ended is, on such a step, live again: the
/// documented effect of a wall clock set back before a restart.)
#[test]
fn an_ended_session_that_get_reported_gone_stays_gone_after_a_wall_step_back() {
    for idle in [false, true] {
        let storage = MemStorage::new();
        let clock = MockClock::new();
        let config = || {
            let c = SessionConfig::default()
                .absolute_timeout(HOUR)
                .clock(clock.clone());
            if idle {
                c.idle_timeout(30 * MINUTE)
            } else {
                c
            }
        };
        let id = {
            let store = mem_store(&storage, Fsync::Always, config()).unwrap();
            let id = store.create("ann", 7).unwrap();
            clock.advance(2 * HOUR);
            // The store says it ended, three ways; none of them reclaims
            // it (a `touch` or `update` would, and `count` does).
            assert!(store.get(id.as_str()).is_none(), "ended");
            assert_eq!(store.count_for_user("ann"), 0);
            assert!(store.sessions_of("ann").is_empty());
            id
        };
        step_wall(&clock, false, 2 * HOUR);
        let store = mem_store(&storage, Fsync::Always, config()).unwrap();
        assert!(
            store.get(id.as_str()).is_none(),
            "idle {idle}: a session the store reported ended is live again after the reopen"
        );
        assert_eq!(store.count_for_user("ann"), 0, "idle {idle}");
    }
}

// ---------------------------------------------------------------------------
// 2. Random operation sequences with reopens.
// ---------------------------------------------------------------------------

/// Random create / get / touch / update / destroy / destroy_all_for_user /
/// count with monotonic advances and small wall-clock steps both ways, at a
/// small `max_sessions` (evictions), with an idle timeout, reopened every
/// few dozen operations. Before each drop, `count` reclaims what ended and
/// every known id is read; after the reopen exactly those sessions are
/// live, with the same user and data, and the user index agrees. Sessions
/// whose logged deadline a net wall step moved within reach are allowed to
/// be missing (documented), never to come back.
#[test]
fn random_sequences_reopen_to_exactly_the_live_set() {
    let users: Vec<String> = (0..4).map(|u| format!("user{u}")).collect();
    for seed in 0..24u64 {
        let mut rng = Xorshift::seeded(seed + 1);
        let storage = MemStorage::new();
        let clock = MockClock::new();
        let max = 1 + rng.below(4);
        let config = || {
            SessionConfig::default()
                .absolute_timeout(HOUR)
                .idle_timeout(20 * MINUTE)
                .max_sessions(max)
                .clock(clock.clone())
        };
        let mut ids: Vec<SessionId> = Vec::new();
        let mut ever_destroyed: BTreeSet<String> = BTreeSet::new();
        let mut store = mem_store(&storage, Fsync::Always, config()).unwrap();
        // Net wall-clock step since the last reopen (ms, + forward).
        let mut wall_net: i64 = 0;
        for op in 0..200u32 {
            let ctx = format!("seed {seed} op {op} max {max}");
            let pick = |rng: &mut Xorshift, ids: &[SessionId]| -> Option<SessionId> {
                if ids.is_empty() {
                    None
                } else {
                    Some(ids[rng.below(ids.len() as u64) as usize].clone())
                }
            };
            match rng.below(12) {
                0..=2 => {
                    let user = &users[rng.below(users.len() as u64) as usize];
                    ids.push(store.create(user, op).unwrap());
                }
                3 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        let _ = store.get(id.as_str());
                    }
                }
                4 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        store.touch(id.as_str()).unwrap();
                    }
                }
                5 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        store.update(id.as_str(), 1000 + op).unwrap();
                    }
                }
                6 => {
                    if let Some(id) = pick(&mut rng, &ids) {
                        store.destroy(id.as_str()).unwrap();
                        ever_destroyed.insert(id.as_str().to_string());
                    }
                }
                7 => {
                    let user = &users[rng.below(users.len() as u64) as usize];
                    let before: Vec<SessionId> = store.sessions_of(user);
                    store.destroy_all_for_user(user).unwrap();
                    assert_eq!(store.count_for_user(user), 0, "{ctx}");
                    for id in before {
                        ever_destroyed.insert(id.as_str().to_string());
                    }
                }
                8 => {
                    assert!(store.count() as u64 <= max, "{ctx}");
                }
                9 => {
                    // Odd milliseconds: never exactly on a deadline.
                    clock.advance(Duration::from_millis(1 + rng.below(25 * 60_000)));
                }
                10 => {
                    let by = rng.below(3_000) as i64;
                    let forward = rng.below(2) == 0;
                    step_wall(&clock, forward, Duration::from_millis(by as u64));
                    wall_net += if forward { by } else { -by };
                }
                _ => {
                    // Reopen.
                    let _ = store.count();
                    let before = observe(&store, &ids);
                    assert_index(&store, &before, &users, &format!("{ctx} before drop"));
                    // Remaining time as the wall clock reads now.
                    let wall_now = clock.wall().as_millis() as u64;
                    let left: BTreeMap<String, u64> = ids
                        .iter()
                        .filter_map(|id| {
                            store.get(id.as_str()).map(|s| {
                                (
                                    id.as_str().to_string(),
                                    s.expires_at_ms.saturating_sub(wall_now),
                                )
                            })
                        })
                        .collect();
                    drop(store);
                    store = mem_store(&storage, Fsync::Always, config()).unwrap();
                    let after = observe(&store, &ids);
                    for (id, v) in &after {
                        assert!(
                            !ever_destroyed.contains(id),
                            "{ctx}: a destroyed session came back"
                        );
                        assert_eq!(before.get(id), Some(v), "{ctx}: came back or changed");
                    }
                    for (id, v) in &before {
                        if !after.contains_key(id) {
                            // Allowed only if a net forward step (plus
                            // the documented second of slack) reaches it.
                            let slack = wall_net.unsigned_abs() + 1_000;
                            assert!(
                                left.get(id).is_none_or(|l| *l <= slack),
                                "{ctx}: live session {v:?} lost ({left:?} left, net step {wall_net})"
                            );
                        }
                    }
                    assert_index(&store, &after, &users, &format!("{ctx} after reopen"));
                    assert_eq!(store.count(), after.len(), "{ctx}");
                    wall_net = 0;
                }
            }
        }
    }
}

/// Several reopens with nothing done in between: the log, rewritten at
/// opens, keeps converging to the same live set and does not grow.
#[test]
fn repeated_reopens_with_no_calls_keep_the_set_and_the_log_size() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let config = || {
        SessionConfig::default()
            .absolute_timeout(HOUR)
            .max_sessions(3)
            .clock(clock.clone())
    };
    let mut ids = Vec::new();
    {
        let store = mem_store(&storage, Fsync::Always, config()).unwrap();
        for i in 0..20 {
            ids.push(store.create(&format!("u{}", i % 2), i).unwrap());
        }
    }
    let mut first = None;
    let mut sizes = Vec::new();
    for round in 0..6 {
        let store = mem_store(&storage, Fsync::Always, config()).unwrap();
        let live = observe(&store, &ids);
        assert_eq!(live.len(), 3, "round {round}");
        match &first {
            None => first = Some(live),
            Some(f) => assert_eq!(&live, f, "round {round}"),
        }
        drop(store);
        sizes.push(storage.len());
    }
    assert!(
        sizes.windows(2).all(|w| w[1] <= w[0]),
        "log grows with bare reopens: {sizes:?}"
    );
}

// ---------------------------------------------------------------------------
// 3. Storage faults at every call position.
// ---------------------------------------------------------------------------

/// What a scripted scenario saw.
#[derive(Default, Debug)]
struct Outcome {
    ids: Vec<SessionId>,
    /// Ids whose `destroy` (or a `destroy_all_for_user` that named them)
    /// returned Ok.
    destroyed_ok: BTreeSet<String>,
    errors: usize,
}

/// A script at `max_sessions(3)` with an idle timeout: creates past the
/// capacity (evictions), touches after a wall step (re-logging),
/// updates, destroys (live and not), destroy_all_for_user, expiries
/// reclaimed by `count`.
fn script(store: &SessionStore<u32>, clock: &MockClock) -> Outcome {
    let mut out = Outcome::default();
    let mut note = |r: Result<(), SessionError>| {
        if r.is_err() {
            out.errors += 1;
        }
    };
    let mut ids = Vec::new();
    for i in 0..5u32 {
        match store.create(if i % 2 == 0 { "ann" } else { "bob" }, i) {
            Ok(id) => ids.push(id),
            Err(_) => note(Err(SessionError::Full)),
        }
    }
    for id in &ids {
        note(store.touch(id.as_str()).map(drop));
    }
    step_wall(clock, true, Duration::from_secs(5));
    if let Some(id) = ids.last() {
        note(store.touch(id.as_str()).map(drop));
        note(store.update(id.as_str(), 99).map(drop));
    }
    if let Some(id) = ids.first() {
        let r = store.destroy(id.as_str());
        if r.is_ok() {
            out.destroyed_ok.insert(id.as_str().to_string());
        }
        note(r.map(drop));
    }
    let bobs = store.sessions_of("bob");
    match store.destroy_all_for_user("bob") {
        Ok(_) => {
            for id in bobs {
                out.destroyed_ok.insert(id.as_str().to_string());
            }
        }
        Err(e) => note(Err(e)),
    }
    clock.advance(Duration::from_millis(25 * 60_000 + 7));
    match store.create("cat", 50) {
        Ok(id) => ids.push(id),
        Err(e) => note(Err(e)),
    }
    let _ = store.count();
    for i in 0..3u32 {
        match store.create("dan", 60 + i) {
            Ok(id) => ids.push(id),
            Err(e) => note(Err(e)),
        }
    }
    if let Some(id) = ids.get(ids.len().saturating_sub(2)) {
        let r = store.destroy(id.as_str());
        if r.is_ok() {
            out.destroyed_ok.insert(id.as_str().to_string());
        }
        note(r.map(drop));
    }
    out.ids = ids;
    out
}

fn fault_config(clock: &MockClock) -> SessionConfig {
    SessionConfig::default()
        .absolute_timeout(HOUR)
        .idle_timeout(20 * MINUTE)
        .max_sessions(3)
        .clock(clock.clone())
}

/// `fail_after(k)` for every k until the script meets no failure, under
/// Fsync::Always and EverySecond: no panic, no hang. Then `heal` + `sync`:
/// the store works again (a create and a destroy succeed), and a reopen
/// holds exactly the sessions it held, the index agreeing; every Ok
/// destroy stays destroyed.
#[test]
fn every_fault_position_heals_and_reopens_to_the_same_live_set() {
    for fsync in [Fsync::Always, Fsync::EverySecond] {
        within("fault loop", move || {
            let mut clean = false;
            for k in 0..400u64 {
                let storage = MemStorage::new();
                let clock = MockClock::new();
                let store = mem_store(&storage, fsync, fault_config(&clock)).unwrap();
                storage.fail_after(k);
                let out = script(&store, &clock);
                let ctx = format!("{fsync:?} fail_after({k}), {} errors", out.errors);
                storage.heal();
                assert!(
                    (0..10).any(|_| store.sync().is_ok()),
                    "{ctx}: sync does not repair"
                );
                // Works again.
                let extra = store.create("eve", 1).unwrap();
                assert!(store.destroy(extra.as_str()).unwrap(), "{ctx}");
                let _ = store.count();
                let before = observe(&store, &out.ids);
                let count = store.count();
                drop(store);
                let store = mem_store(&storage, fsync, fault_config(&clock)).unwrap();
                let after = observe(&store, &out.ids);
                assert_eq!(after, before, "{ctx}: live set changed by the reopen");
                assert_eq!(store.count(), count, "{ctx}: count");
                for id in &out.destroyed_ok {
                    assert!(!after.contains_key(id), "{ctx}: an Ok destroy came back");
                }
                assert!(store.get(extra.as_str()).is_none(), "{ctx}");
                let users: Vec<String> = ["ann", "bob", "cat", "dan", "eve"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                assert_index_known(&store, &after, &out.ids, &users, &ctx);
                if out.errors == 0 {
                    clean = true;
                    break;
                }
            }
            assert!(clean, "{fsync:?}: the script never ran clean");
        });
    }
}

/// Fsync::Always, appends or fsyncs failing from the k-th on (so the
/// failed log's cut back to the last good fsync works): the process then
/// crashes (storage healed, unsynced bytes dropped) with no repair. No
/// panic or hang; Ok-destroyed ids stay gone; no session live before the
/// crash (every write that made it so was acknowledged durable) is lost;
/// the reopened store holds no more than `max_sessions`. (Sessions coming
/// back are the defect of
/// `a_crash_after_a_failed_eviction_record_revives_the_evicted_and_loses_a_live_one`,
/// not asserted here.)
#[test]
fn failing_appends_or_fsyncs_then_a_crash_lose_no_acknowledged_session() {
    within("crash fault loop", || {
        for on in [FaultOn::Sync, FaultOn::Append] {
            let mut clean = false;
            for k in 0..200u64 {
                let storage = MemStorage::new();
                let clock = MockClock::new();
                let store = mem_store(&storage, Fsync::Always, fault_config(&clock)).unwrap();
                storage.inject(on, k, ErrorKind::Other, true);
                let out = script(&store, &clock);
                let ctx = format!("{on:?} fails after {k}, {} errors", out.errors);
                let _ = store.count();
                let before = observe(&store, &out.ids);
                drop(store);
                storage.power_loss(0);
                storage.heal();
                let store = mem_store(&storage, Fsync::Always, fault_config(&clock)).unwrap();
                let after = observe(&store, &out.ids);
                for id in &out.destroyed_ok {
                    assert!(!after.contains_key(id), "{ctx}: an Ok destroy came back");
                }
                for (id, v) in &before {
                    assert_eq!(after.get(id), Some(v), "{ctx}: a live session lost");
                }
                assert!(store.count() <= 3, "{ctx}");
                if out.errors == 0 {
                    assert_eq!(after, before, "{ctx}");
                    clean = true;
                    break;
                }
            }
            assert!(clean, "{on:?}: the script never ran clean");
        }
    });
}

/// At `max_sessions(2)`: a and b are created (Ok, durable), a is read, so
/// creating c evicts b. A fault at each append or fsync position of that
/// create (its eviction's record, its own record, their fsync), then a
/// crash before any repair: the reopened store holds a, created Ok and
/// live, and if c's `create` returned Ok, c and not b. (A `create` that
/// failed may have its eviction undone by the crash: the log holds what
/// was durable before it.) Before evictions were logged ahead of the write
/// that made them, a failure after c's record left the log with a, b and
/// c, and the open evicted a and brought b back.
#[test]
fn a_fault_then_a_crash_around_an_eviction_keeps_the_live_set() {
    for on in [FaultOn::Append, FaultOn::Sync] {
        for skip in 0..4 {
            for run in 0..4 {
                let storage = MemStorage::new();
                let clock = MockClock::new();
                let open = || -> SessionStore<u32> {
                    let config = SessionConfig::default()
                        .max_sessions(2)
                        .clock(clock.clone());
                    mem_store(&storage, Fsync::Always, config).unwrap()
                };
                let store = open();
                let a = store.create("ann", 1).unwrap();
                let b = store.create("bob", 2).unwrap();
                assert!(store.get(a.as_str()).is_some());
                storage.inject(on, skip, ErrorKind::Other, true);
                let c = store.create("cat", 3);
                let live_a = store.get(a.as_str()).is_some();
                let live_b = store.get(b.as_str()).is_some();
                drop(store);
                storage.power_loss(0);
                storage.heal();
                let store = open();
                let ctx = format!("{on:?} skip {skip} run {run}: create c {:?}", c.is_ok());
                assert!(live_a && !live_b, "{ctx}: a read last, b evicted");
                assert!(store.get(a.as_str()).is_some(), "{ctx}: a lost");
                if let Ok(c) = c {
                    assert!(store.get(c.as_str()).is_some(), "{ctx}: c lost");
                    assert!(store.get(b.as_str()).is_none(), "{ctx}: b came back");
                }
                assert!(store.count() <= 2, "{ctx}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Concurrency.
// ---------------------------------------------------------------------------

/// Five threads at `max_sessions(8)` on a file log: creators, touchers,
/// destroyers, `destroy_all_for_user` callers for overlapping users, `count`
/// callers, and one thread advancing the clock and stepping the wall
/// clock. No deadlock; `count() <= max_sessions` throughout; after the
/// threads stop, the sessions `get` finds live are exactly those live
/// after a drop and reopen, with the same data and index. Odd rounds use
/// a log whose automatic rewrite runs every few KiB, so compactions race
/// the eviction records the listener appends.
#[test]
fn concurrent_churn_reopens_to_the_last_observed_live_set() {
    const MAX: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6u64 {
        let path = dir.path().join(format!("s{round}.log"));
        let clock = MockClock::new();
        let config = {
            let clock = clock.clone();
            move || {
                SessionConfig::default()
                    .absolute_timeout(HOUR)
                    .idle_timeout(10 * MINUTE)
                    .max_sessions(MAX)
                    .clock(clock.clone())
            }
        };
        let open = || -> SessionStore<u32> {
            if round % 2 == 0 {
                SessionStore::open(&path, config()).unwrap()
            } else {
                let log = FileLog::open(&path, Fsync::Always)
                    .unwrap()
                    .rewrite_policy(10, 4 * 1024);
                SessionStore::with_log(log, config()).unwrap()
            }
        };
        let store = open();
        let ids = {
            let store = store.clone();
            let clock = clock.clone();
            within("concurrent churn", move || {
                let store = &store;
                let clock = &clock;
                let users = ["a", "b", "c"];
                let shared: std::sync::Mutex<Vec<SessionId>> = std::sync::Mutex::new(Vec::new());
                let shared = &shared;
                let stop = AtomicBool::new(false);
                let stop = &stop;
                let barrier = Barrier::new(5);
                let barrier = &barrier;
                thread::scope(|s| {
                    let mut workers = Vec::new();
                    for t in 0..3u64 {
                        workers.push(s.spawn(move || {
                            let mut rng = Xorshift::seeded(round * 100 + t + 1);
                            barrier.wait();
                            for i in 0..600u32 {
                                let user = users[rng.below(3) as usize];
                                match store.create(user, i) {
                                    Ok(id) => shared.lock().unwrap().push(id),
                                    Err(SessionError::Full) => {}
                                    Err(e) => panic!("create: {e}"),
                                }
                                let id = {
                                    let ids = shared.lock().unwrap();
                                    ids[rng.below(ids.len() as u64) as usize].clone()
                                };
                                match rng.below(6) {
                                    0 => {
                                        store.touch(id.as_str()).unwrap();
                                    }
                                    1 => {
                                        store.update(id.as_str(), 7).unwrap();
                                    }
                                    2 => {
                                        store.destroy(id.as_str()).unwrap();
                                    }
                                    3 => {
                                        store.destroy_all_for_user(user).unwrap();
                                    }
                                    4 => {
                                        assert!(store.count() as u64 <= MAX);
                                    }
                                    _ => {
                                        let _ = store.get(id.as_str());
                                    }
                                }
                            }
                        }));
                    }
                    // A destroy_all_for_user caller on overlapping users.
                    s.spawn(move || {
                        barrier.wait();
                        let mut n = 0u64;
                        while !stop.load(Ordering::Acquire) {
                            store.destroy_all_for_user(users[(n % 3) as usize]).unwrap();
                            n += 1;
                            thread::yield_now();
                        }
                    });
                    // The clock: advances (reclaims idle sessions), steps.
                    s.spawn(move || {
                        barrier.wait();
                        let mut n = 0u64;
                        while !stop.load(Ordering::Acquire) {
                            clock.advance(Duration::from_millis(60_000 + 13));
                            if n.is_multiple_of(5) {
                                step_wall(clock, n.is_multiple_of(10), Duration::from_millis(400));
                            }
                            assert!(store.count() as u64 <= MAX);
                            n += 1;
                            thread::sleep(Duration::from_millis(1));
                        }
                    });
                    for w in workers {
                        w.join().unwrap();
                    }
                    stop.store(true, Ordering::Release);
                });
                let out = shared.lock().unwrap().clone();
                out
            })
        };
        let users: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert!(store.count() as u64 <= MAX);
        let before = observe(&store, &ids);
        assert_index(&store, &before, &users, &format!("round {round} before"));
        drop(store);
        let store = open();
        let after = observe(&store, &ids);
        assert_eq!(
            after, before,
            "round {round}: live set changed by the reopen"
        );
        assert_eq!(store.count(), before.len(), "round {round}");
        assert_index(&store, &after, &users, &format!("round {round} after"));
    }
}

// ---------------------------------------------------------------------------
// 5. Hostile inputs.
// ---------------------------------------------------------------------------

/// Ill-formed ids of every kind, and a 1 MiB one: `destroy` returns
/// `Ok(false)`, logs nothing, and does not disturb live sessions; the same
/// for `get`, `touch`, `update`.
#[test]
fn hostile_ids_log_nothing_and_disturb_nothing() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let store = mem_store(&storage, Fsync::Always, fault_config(&clock)).unwrap();
    let id = store.create("ann", 1).unwrap();
    let size = storage.len();
    let huge = "A".repeat(1 << 20);
    let huge_ok_tail = format!("{}A", "B".repeat((1 << 20) - 1));
    let zero = "\0".repeat(22);
    let replacement = "\u{FFFD}".repeat(22);
    let mixed = format!("{}\u{FFFF}", &id.as_str()[..21]);
    let prefix = id.as_str()[..21].to_string();
    let plus_one = format!("{}A", id.as_str());
    for bad in [
        "",
        huge.as_str(),
        huge_ok_tail.as_str(),
        zero.as_str(),
        replacement.as_str(),
        mixed.as_str(),
        prefix.as_str(),
        plus_one.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAB", // bad final char
        "AAAAAAAAAAAAAAAAAAAA/A", // standard alphabet
    ] {
        assert!(!store.destroy(bad).unwrap());
        assert!(store.get(bad).is_none());
        assert!(!store.touch(bad).unwrap());
        assert!(!store.update(bad, 3).unwrap());
    }
    assert_eq!(storage.len(), size, "ill-formed ids grew the log");
    assert!(store.get(id.as_str()).is_some());
    assert_eq!(store.count(), 1);
}

/// 100,000 `destroy` calls of well-formed random ids that are not live (a
/// logout flood of forged cookies) on a log with a small rewrite policy:
/// each logs a ~40 byte record, and the automatic rewrites keep the log
/// bounded; after a `sync` and an explicit rewrite-worthy reopen it holds
/// the live session only.
#[test]
fn a_flood_of_well_formed_dead_ids_stays_bounded_by_compaction() {
    within("dead id flood", || {
        let storage = MemStorage::new();
        let clock = MockClock::new();
        let open = || {
            let log = FileLog::with_storage(storage.clone(), Fsync::EverySecond)
                .write_delay(Duration::ZERO)
                .rewrite_policy(100, 256 * 1024);
            SessionStore::<u32>::with_log(log, fault_config(&clock)).unwrap()
        };
        let store = open();
        let live = store.create("ann", 1).unwrap();
        let mut peak = 0;
        for i in 0..100_000u32 {
            let id = SessionId::random().unwrap();
            assert!(!store.destroy(id.as_str()).unwrap());
            if i % 1_000 == 0 {
                peak = peak.max(storage.len());
            }
        }
        store.sync().unwrap();
        peak = peak.max(storage.len());
        // 100k records of ~40 bytes is ~4 MB unbounded.
        assert!(peak < 2 * 1024 * 1024, "log grew to {peak} bytes");
        drop(store);
        let store = open();
        assert!(store.get(live.as_str()).is_some());
        assert_eq!(store.count(), 1);
    });
}

/// 1 MiB user names and 1 MiB data at `max_sessions(2)`, evicting each
/// other, with destroy_all_for_user of a huge name: reopen exact.
#[test]
fn huge_users_and_data_survive_evictions_and_reopens_exactly() {
    within("huge users", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let clock = MockClock::new();
        let config = SessionConfig::default()
            .max_sessions(2)
            .clock(clock.clone());
        let big = |c: char| c.to_string().repeat(1 << 20);
        let users = [big('x'), big('y'), big('z')];
        let mut ids = Vec::new();
        let mut expect: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
        for round in 0..3u8 {
            let store: SessionStore<Vec<u8>> = SessionStore::open(&path, config.clone()).unwrap();
            for (id, (user, data)) in &expect {
                let s = store
                    .get(id)
                    .unwrap_or_else(|| panic!("round {round}: lost"));
                assert!(&s.user == user && &s.data == data, "round {round}");
            }
            for (i, user) in users.iter().enumerate() {
                let data = vec![round ^ i as u8; 1 << 20];
                ids.push(store.create(user, data).unwrap());
            }
            assert!(store.destroy_all_for_user(&users[1]).unwrap() <= 1);
            expect.clear();
            for id in &ids {
                if let Some(s) = store.get(id.as_str()) {
                    expect.insert(id.as_str().to_string(), (s.user.clone(), s.data.clone()));
                }
            }
            assert!(expect.len() <= 2, "round {round}");
            for user in &users {
                let n = expect.values().filter(|(u, _)| u == user).count();
                assert_eq!(store.count_for_user(user), n, "round {round}");
            }
        }
        let store: SessionStore<Vec<u8>> = SessionStore::open(&path, config).unwrap();
        assert_eq!(store.count(), expect.len());
        for (id, (user, data)) in &expect {
            let s = store.get(id).unwrap();
            assert!(&s.user == user && &s.data == data);
        }
    });
}

/// `max_sessions` 1 and 2, thousands of creates with destroys of old and
/// current ids, reopening every 250 calls: the reopened store holds exactly
/// the sessions held, never more than the capacity, and no destroyed or
/// evicted id is ever live again (every id seen is checked at each reopen).
#[test]
fn heavy_churn_at_tiny_capacity_never_revives_anything() {
    within("churn", || {
        for max in [1u64, 2] {
            let storage = MemStorage::new();
            let clock = MockClock::new();
            let config = || {
                SessionConfig::default()
                    .max_sessions(max)
                    .clock(clock.clone())
            };
            let mut store = mem_store(&storage, Fsync::Always, config()).unwrap();
            let mut ids: Vec<SessionId> = Vec::new();
            let mut rng = Xorshift::seeded(max);
            for i in 0..3_000u32 {
                ids.push(store.create(&format!("u{}", i % 3), i).unwrap());
                if rng.below(3) == 0 {
                    let id = &ids[rng.below(ids.len() as u64) as usize];
                    store.destroy(id.as_str()).unwrap();
                }
                if rng.below(4) == 0 {
                    store
                        .destroy_all_for_user(&format!("u{}", rng.below(3)))
                        .unwrap();
                }
                if i % 250 == 249 {
                    let before = observe(&store, &ids);
                    assert!(before.len() as u64 <= max);
                    drop(store);
                    store = mem_store(&storage, Fsync::Always, config()).unwrap();
                    let after = observe(&store, &ids);
                    assert_eq!(after, before, "max {max}, call {i}");
                    assert_eq!(store.count(), after.len(), "max {max}, call {i}");
                }
            }
        }
    });
}
