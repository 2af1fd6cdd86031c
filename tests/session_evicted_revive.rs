//! SessionStore: a session that left memory without an explicit removal
//! (evicted at `max_sessions`, or expired and reclaimed while the store was
//! up) does not come back when the store is reopened, whether or not it was
//! destroyed afterwards, and even on a wall clock set back before its
//! deadline. The reopened store holds exactly the sessions the store held
//! before the restart: none comes back, none is lost.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::{SessionConfig, SessionError, SessionId, SessionStore};
use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage};
use shardcache::{Clock, MockClock};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn open(path: &Path, clock: &MockClock, max: u64) -> SessionStore<u32> {
    let config = SessionConfig::default()
        .absolute_timeout(HOUR)
        .max_sessions(max)
        .clock(clock.clone());
    SessionStore::open(path, config).unwrap()
}

/// The ids of `ids` that `store` finds live.
fn live(store: &SessionStore<u32>, ids: &[SessionId]) -> BTreeSet<String> {
    ids.iter()
        .filter(|id| store.get(id.as_str()).is_some())
        .map(|id| id.as_str().to_string())
        .collect()
}

/// How many times each eviction scenario runs: which session an insert
/// evicts depends on the shards the ids hash to (a random hasher per
/// store), so one run may evict the same session the replay would.
const RUNS: usize = 16;

/// At `max_sessions(2)`: a and b are created, a is read, and c evicts one
/// of them (b, the least recently used, when the two shards allow it).
/// Returns the two live sessions and the evicted one.
fn evict_one(store: &SessionStore<u32>, users: [&str; 3]) -> (Vec<SessionId>, SessionId) {
    let a = store.create(users[0], 1).unwrap();
    let b = store.create(users[1], 2).unwrap();
    assert!(store.get(a.as_str()).is_some());
    let c = store.create(users[2], 3).unwrap();
    assert!(store.get(c.as_str()).is_some(), "the new session is kept");
    let (kept, evicted) = match (store.get(a.as_str()), store.get(b.as_str())) {
        (Some(_), None) => (a, b),
        (None, Some(_)) => (b, a),
        other => panic!(
            "one of a and b is evicted: {:?}",
            (other.0.is_some(), other.1.is_some())
        ),
    };
    (vec![kept, c], evicted)
}

/// A session evicted at `max_sessions`, then destroyed (not live: `false`),
/// stays gone after a restart, with no clock change; the sessions that were
/// live are all back.
#[test]
fn an_evicted_session_that_was_destroyed_stays_gone_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = MockClock::new();
    for run in 0..RUNS {
        let path = dir.path().join(format!("sessions{run}.log"));
        let (kept, evicted) = {
            let store = open(&path, &clock, 2);
            let (kept, evicted) = evict_one(&store, ["ann", "ann", "ann"]);
            assert!(!store.destroy(evicted.as_str()).unwrap(), "not live");
            (kept, evicted)
        };
        let store = open(&path, &clock, 2);
        assert!(
            store.get(evicted.as_str()).is_none(),
            "run {run}: the destroyed session came back"
        );
        assert_eq!(store.count(), 2, "run {run}");
        assert_eq!(store.count_for_user("ann"), 2, "run {run}");
        for id in &kept {
            assert!(
                store.get(id.as_str()).is_some(),
                "run {run}: a live session was lost"
            );
        }
        // And on a further reopen.
        drop(store);
        let store = open(&path, &clock, 2);
        assert!(store.get(evicted.as_str()).is_none(), "run {run}");
        assert_eq!(store.count(), 2, "run {run}");
    }
}

/// A session evicted and never destroyed stays gone too: the reopened
/// store holds the sessions the store held before the restart, no more, no
/// fewer.
#[test]
fn an_evicted_session_stays_gone_after_a_reopen_and_the_live_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = MockClock::new();
    for run in 0..RUNS {
        let path = dir.path().join(format!("sessions{run}.log"));
        let (ids, before) = {
            let store = open(&path, &clock, 2);
            let (mut ids, evicted) = evict_one(&store, ["ann", "ann", "bob"]);
            ids.push(evicted);
            let before = live(&store, &ids);
            assert_eq!(before.len(), 2);
            (ids, before)
        };
        let store = open(&path, &clock, 2);
        assert_eq!(store.count(), before.len(), "run {run}");
        assert_eq!(live(&store, &ids), before, "run {run}");
        assert_eq!(
            store.count_for_user("ann") + store.count_for_user("bob"),
            2,
            "run {run}"
        );
    }
}

/// More sessions than room, read in an order of their own: after each of
/// several restarts, the store holds exactly the sessions it held before.
#[test]
fn the_live_set_survives_restarts_exactly_whatever_was_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.log");
    let clock = MockClock::new();
    let mut ids = Vec::new();
    for round in 0..4u32 {
        let store = open(&path, &clock, 5);
        for i in 0..7 {
            ids.push(
                store
                    .create(&format!("user{}", i % 3), round * 10 + i)
                    .unwrap(),
            );
            // Reads of older sessions reorder the least recently used.
            if i % 2 == 0 {
                let old = &ids[(ids.len() * 7 + i as usize) % ids.len()];
                let _ = store.get(old.as_str());
            }
        }
        let before = live(&store, &ids);
        assert_eq!(before.len(), 5);
        drop(store);
        let store = open(&path, &clock, 5);
        assert_eq!(store.count(), before.len(), "round {round}");
        assert_eq!(live(&store, &ids), before, "round {round}");
    }
}

/// `destroy_all_for_user` after one of the user's sessions was evicted (the
/// index no longer names it): none of the user's sessions is back after a
/// restart.
#[test]
fn destroy_all_for_user_after_an_eviction_leaves_none_behind_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = MockClock::new();
    for run in 0..RUNS {
        let path = dir.path().join(format!("sessions{run}.log"));
        let (ids, bobs) = {
            let store = open(&path, &clock, 2);
            let a = store.create("ann", 1).unwrap();
            let b = store.create("ann", 2).unwrap();
            assert!(store.get(a.as_str()).is_some());
            let c = store.create("bob", 3).unwrap();
            assert!(store.get(c.as_str()).is_some());
            let anns = usize::from(store.get(a.as_str()).is_some())
                + usize::from(store.get(b.as_str()).is_some());
            assert_eq!(anns, 1, "one of ann's sessions was evicted");
            assert_eq!(store.destroy_all_for_user("ann").unwrap(), 1);
            assert_eq!(store.count_for_user("ann"), 0);
            (vec![a, b], c)
        };
        let store = open(&path, &clock, 2);
        assert_eq!(
            store.count_for_user("ann"),
            0,
            "run {run}: a session of ann came back"
        );
        for id in &ids {
            assert!(store.get(id.as_str()).is_none(), "run {run}");
        }
        assert!(store.get(bobs.as_str()).is_some(), "run {run}");
        assert_eq!(store.count(), 1, "run {run}");
    }
}

/// Ill-formed ids (not 22 characters of URL-safe base64) log nothing:
/// logout requests with garbage ids do not grow the log.
#[test]
fn destroying_ill_formed_ids_does_not_grow_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.log");
    let clock = MockClock::new();
    let store = open(&path, &clock, 2);
    let id = store.create("ann", 1).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let long = "A".repeat(10_000);
    for garbage in [
        "",
        "x",
        "not a session id at all",
        "AAAAAAAAAAAAAAAAAAAAA",   // 21
        "AAAAAAAAAAAAAAAAAAAAAAA", // 23
        "AAAAAAAAAAAAAAAAAAAAA=",  // 22, padding
        "AAAAAAAAAAAAAAAAAAAA+/",  // 22, standard alphabet
        long.as_str(),
    ] {
        assert!(!store.destroy(garbage).unwrap());
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert!(store.get(id.as_str()).is_some());
}

/// How a test session that expired while the store was up leaves memory.
#[derive(Clone, Copy, Debug)]
enum Reclaim {
    /// `count` reclaims every expired session.
    Count,
    /// `count`, then `destroy` of the reclaimed session (not live).
    CountThenDestroy,
    /// `count`, then `destroy_all_for_user` of its user.
    CountThenDestroyAll,
}

/// A session expires (absolute or idle timeout) while the store is up and
/// is reclaimed from memory; the wall clock is then set back before its
/// logged deadline and the store reopened: it stays gone.
#[test]
fn a_session_expired_while_up_stays_gone_after_the_wall_clock_steps_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for idle in [false, true] {
        for how in [
            Reclaim::Count,
            Reclaim::CountThenDestroy,
            Reclaim::CountThenDestroyAll,
        ] {
            n += 1;
            let case = format!("{how:?}, idle timeout: {idle}");
            let clock = MockClock::new();
            let path = dir.path().join(format!("expired{n}.log"));
            let config = || {
                let config = SessionConfig::default()
                    .absolute_timeout(HOUR)
                    .clock(clock.clone());
                if idle {
                    config.idle_timeout(30 * MINUTE)
                } else {
                    config
                }
            };
            let (id, later) = {
                let store: SessionStore<u32> = SessionStore::open(&path, config()).unwrap();
                let id = store.create("ann", 1).unwrap();
                clock.advance(2 * HOUR);
                let later = store.create("bob", 2).unwrap();
                assert_eq!(store.count(), 1, "{case}");
                match how {
                    Reclaim::Count => {}
                    Reclaim::CountThenDestroy => {
                        assert!(!store.destroy(id.as_str()).unwrap(), "{case}")
                    }
                    Reclaim::CountThenDestroyAll => {
                        assert_eq!(store.destroy_all_for_user("ann").unwrap(), 0, "{case}")
                    }
                }
                (id, later)
            };
            // Back to before the expired session's logged deadline.
            clock.set_wall(clock.wall() - 2 * HOUR);
            let store: SessionStore<u32> = SessionStore::open(&path, config()).unwrap();
            assert_eq!(store.count_for_user("ann"), 0, "{case}: came back");
            assert!(store.get(id.as_str()).is_none(), "{case}: came back");
            assert!(store.get(later.as_str()).is_some(), "{case}");
            assert_eq!(store.count(), 1, "{case}");
        }
    }
}

/// Four threads create sessions at `max_sessions` (and read some, so the
/// least recently used is not the oldest), on a file log. After the store
/// is dropped and reopened, the live sessions are exactly those `get`
/// found live just before the drop: none reappears, none is lost.
#[test]
fn many_threads_evicting_at_max_sessions_leave_the_live_set_as_it_was() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 150;
    const MAX: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.log");
    let clock = MockClock::new();
    let mut ids: Vec<SessionId> = Vec::new();
    for round in 0..3 {
        let store = open(&path, &clock, MAX);
        let barrier = Barrier::new(THREADS);
        let created: Vec<SessionId> = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (store, barrier) = (&store, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut mine = Vec::new();
                        for i in 0..PER_THREAD {
                            let user = format!("user{}", (t * PER_THREAD + i) % 7);
                            mine.push(store.create(&user, i as u32).unwrap());
                            // A recent session of this thread, likely
                            // still live: made the most recently used.
                            if i % 2 == 1 {
                                let _ = store.get(mine[i - 1].as_str());
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        ids.extend(created);
        let before = live(&store, &ids);
        assert_eq!(before.len(), MAX as usize, "round {round}");
        drop(store);
        let store = open(&path, &clock, MAX);
        let after = live(&store, &ids);
        let back: Vec<_> = after.difference(&before).collect();
        let lost: Vec<_> = before.difference(&after).collect();
        assert!(back.is_empty(), "round {round}: {} came back", back.len());
        assert!(lost.is_empty(), "round {round}: {} lost", lost.len());
        assert_eq!(store.count(), before.len(), "round {round}");
        let per_user: usize = (0..7)
            .map(|u| store.count_for_user(&format!("user{u}")))
            .sum();
        assert_eq!(per_user, before.len(), "round {round}");
    }
}

/// Sessions the open cannot hold (the log holds more than `max_sessions`,
/// here because the setting was lowered) are dropped by that open, oldest
/// first, and stay gone at a later open with room for them all.
#[test]
fn sessions_an_open_drops_for_room_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.log");
    let clock = MockClock::new();
    let ids: Vec<SessionId> = {
        let store = open(&path, &clock, 10);
        (0..10).map(|i| store.create("ann", i).unwrap()).collect()
    };
    let kept = {
        let store = open(&path, &clock, 3);
        assert_eq!(store.count(), 3);
        let kept = live(&store, &ids);
        let newest: BTreeSet<String> = ids[7..].iter().map(|id| id.as_str().to_string()).collect();
        assert_eq!(kept, newest, "the newest are kept");
        kept
    };
    let store = open(&path, &clock, 10);
    assert_eq!(
        live(&store, &ids),
        kept,
        "sessions dropped at open came back"
    );
    assert_eq!(store.count_for_user("ann"), 3);
}

/// The log fails at each append or fsync of a `create` that evicts (its
/// eviction's removal, its own record, their fsync): the `create` reports
/// it (no panic), and once the log is repaired the evicted session does not
/// come back at a later open; a `create` that returned Ok is kept.
#[test]
fn a_failure_to_log_an_eviction_is_the_calls_error_and_the_session_stays_gone() {
    for on in [FaultOn::Append, FaultOn::Sync] {
        let mut refused = 0;
        for skip in 0..3 {
            let storage = MemStorage::new();
            let clock = MockClock::new();
            let open = || -> SessionStore<u32> {
                let log = FileLog::with_storage(storage.clone(), Fsync::Always);
                let config = SessionConfig::default()
                    .max_sessions(1)
                    .clock(clock.clone());
                SessionStore::with_log(log, config).unwrap()
            };
            let store = open();
            let a = store.create("ann", 1).unwrap();
            storage.inject(on, skip, ErrorKind::StorageFull, true);
            let bob = store.create("bob", 2);
            let ctx = format!("{on:?} skip {skip}: create {:?}", bob.is_ok());
            if bob.is_err() {
                assert!(matches!(bob, Err(SessionError::Persist(_))), "{ctx}");
                refused += 1;
            }
            assert!(store.get(a.as_str()).is_none(), "{ctx}: evicted");
            storage.heal();
            assert!((0..10).any(|_| store.sync().is_ok()), "{ctx}: repaired");
            drop(store);
            let store = open();
            assert!(
                store.get(a.as_str()).is_none(),
                "{ctx}: the evicted session came back"
            );
            assert_eq!(store.count_for_user("ann"), 0, "{ctx}");
            if let Ok(bob) = bob {
                assert!(store.get(bob.as_str()).is_some(), "{ctx}: bob lost");
            }
        }
        assert!(refused > 0, "{on:?}: no fault position reached the create");
    }
}
