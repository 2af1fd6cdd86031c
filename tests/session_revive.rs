//! SessionStore: a destroyed session does not come back. A session that
//! ended while the process was down, destroyed after the reopen (which finds
//! it not live), stays gone after the wall clock steps back before its
//! logged deadline and the store is reopened again; so does one that ended
//! while the store was up and was destroyed while the store still held it.
//! And `destroy_all_for_user` called from many threads at once: when any
//! call returns, none of the user's sessions created before it is live,
//! whichever call did the removing.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::{SessionConfig, SessionError, SessionId, SessionStore};
use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage};
use shardcache::{Clock, MockClock};
use std::io::ErrorKind;
use std::path::Path;
use std::sync::{Barrier, RwLock};
use std::thread;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Steps only the wall clock (as NTP does), forward or back.
fn step_wall(clock: &MockClock, forward: bool, by: Duration) {
    let wall = clock.wall();
    clock.set_wall(if forward { wall + by } else { wall - by });
}

fn open(path: &Path, clock: &MockClock, idle: bool) -> SessionStore<u32> {
    let config = SessionConfig::default()
        .absolute_timeout(HOUR)
        .clock(clock.clone());
    let config = if idle {
        config.idle_timeout(30 * MINUTE)
    } else {
        config
    };
    SessionStore::open(path, config).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Destroy {
    One,
    AllForUser,
    /// Not destroyed at all: reopening is enough.
    Nothing,
}

/// Ends `id` (of "ann") as `how` says, on a store that no longer holds it
/// live: nothing to report.
fn destroy_ended(store: &SessionStore<u32>, id: &SessionId, how: Destroy) {
    match how {
        Destroy::One => assert!(!store.destroy(id.as_str()).unwrap(), "not live"),
        Destroy::AllForUser => assert_eq!(store.destroy_all_for_user("ann").unwrap(), 0),
        Destroy::Nothing => {}
    }
}

/// The session ends (its absolute deadline, or its idle one, passes) while
/// the process is down; the reopened store finds it gone, and it is
/// destroyed (or not). The wall clock then steps back before the deadline
/// the log holds for it, and the store is reopened: it is still gone.
#[test]
fn a_session_that_ended_while_down_stays_gone_after_the_wall_clock_steps_back() {
    let dir = tempfile::tempdir().unwrap();
    for (n, (how, idle)) in [
        (Destroy::One, false),
        (Destroy::AllForUser, false),
        (Destroy::Nothing, false),
        (Destroy::One, true),
        (Destroy::AllForUser, true),
        (Destroy::Nothing, true),
    ]
    .into_iter()
    .enumerate()
    {
        let case = format!("{how:?}, idle timeout: {idle}");
        let clock = MockClock::new();
        let path = dir.path().join(format!("down{n}.log"));
        let (id, kept) = {
            let store = open(&path, &clock, idle);
            (
                store.create("ann", 1).unwrap(),
                store.create("bob", 2).unwrap(),
            )
        };
        // Down for two hours: past both deadlines.
        clock.advance(2 * HOUR);
        {
            let store = open(&path, &clock, idle);
            assert!(store.get(id.as_str()).is_none(), "{case}");
            assert_eq!(store.count_for_user("ann"), 0, "{case}");
            destroy_ended(&store, &id, how);
            // Another session created after the reopen is untouched.
            let later = store.create("bob", 3).unwrap();
            assert!(store.get(later.as_str()).is_some(), "{case}");
        }
        // The wall clock steps back to before the logged deadlines.
        step_wall(&clock, false, 2 * HOUR);
        let store = open(&path, &clock, idle);
        assert!(store.get(id.as_str()).is_none(), "{case}: came back");
        assert_eq!(store.count_for_user("ann"), 0, "{case}");
        assert!(
            store.get(kept.as_str()).is_none(),
            "{case}: the other ended session came back"
        );
        assert_eq!(store.count(), 1, "{case}: only the later session");
        // And it stays so on a further reopen.
        drop(store);
        let store = open(&path, &clock, idle);
        assert!(store.get(id.as_str()).is_none(), "{case}");
        assert_eq!(store.count(), 1, "{case}");
    }
}

/// The session ends while the store is up, is destroyed after that (not
/// live: `false`) while the store still holds it (nothing reclaimed it: the
/// removal is logged), and the wall clock steps back before the restart.
#[test]
fn a_session_destroyed_after_it_ended_while_up_stays_gone_after_a_step_back() {
    let dir = tempfile::tempdir().unwrap();
    for (n, how) in [Destroy::One, Destroy::AllForUser].into_iter().enumerate() {
        let clock = MockClock::new();
        let path = dir.path().join(format!("up{n}.log"));
        let id = {
            let store = open(&path, &clock, false);
            let id = store.create("ann", 1).unwrap();
            clock.advance(HOUR + MINUTE);
            destroy_ended(&store, &id, how);
            id
        };
        step_wall(&clock, false, 2 * HOUR);
        let store = open(&path, &clock, false);
        assert!(store.get(id.as_str()).is_none(), "{how:?}: came back");
        assert_eq!(store.count(), 0, "{how:?}");
    }
}

/// The open cannot rewrite the log without the session that ended while
/// the process was down: it opens all the same, and `destroy` and
/// `destroy_all_for_user` try again and report the failure rather than
/// return `Ok` while the session could still come back. Once the storage
/// heals they succeed, and the session stays gone.
#[test]
fn destroy_reports_a_log_that_still_holds_a_session_ended_while_down() {
    let storage = MemStorage::new();
    let clock = MockClock::new();
    let open = || -> SessionStore<u32> {
        let log = FileLog::with_storage(storage.clone(), Fsync::Always);
        let config = SessionConfig::default()
            .absolute_timeout(HOUR)
            .clock(clock.clone());
        SessionStore::with_log(log, config).unwrap()
    };
    let id = open().create("ann", 1).unwrap();
    clock.advance(2 * HOUR);
    storage.inject(FaultOn::Sync, 0, ErrorKind::StorageFull, true);
    let store = open();
    assert!(store.get(id.as_str()).is_none());
    assert!(matches!(
        store.destroy(id.as_str()),
        Err(SessionError::Persist(_))
    ));
    assert!(matches!(
        store.destroy_all_for_user("ann"),
        Err(SessionError::Persist(_))
    ));
    storage.heal();
    assert!(!store.destroy(id.as_str()).unwrap());
    assert_eq!(store.destroy_all_for_user("ann").unwrap(), 0);
    drop(store);
    step_wall(&clock, false, 2 * HOUR);
    let store = open();
    assert!(store.get(id.as_str()).is_none(), "came back");
    assert_eq!(store.count(), 0);
}

/// Several threads log "ann" out everywhere at once, round after round:
/// each, as soon as its call returns, finds none of her earlier sessions
/// live, whichever call removed them.
#[test]
fn concurrent_destroy_all_for_user_returns_only_once_the_sessions_are_gone() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 300;
    const SESSIONS: usize = 500;
    let store: SessionStore<u32> =
        SessionStore::in_memory(SessionConfig::default().clock(MockClock::new())).unwrap();
    let barrier = Barrier::new(THREADS + 1);
    // The round's sessions: written before the first barrier, read between.
    let ids: RwLock<Vec<SessionId>> = RwLock::new(Vec::new());
    thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (store, barrier, ids) = (&store, &barrier, &ids);
                s.spawn(move || {
                    let mut early = 0;
                    for _ in 0..ROUNDS {
                        barrier.wait(); // the round's sessions are created
                        store.destroy_all_for_user("ann").unwrap();
                        let indexed = store.sessions_of("ann").len();
                        let ids = ids.read().unwrap();
                        let live = ids.iter().filter(|id| store.get(id.as_str()).is_some());
                        if indexed > 0 || live.count() > 0 {
                            early += 1;
                        }
                        drop(ids);
                        barrier.wait(); // all checked
                    }
                    early
                })
            })
            .collect();
        for _ in 0..ROUNDS {
            {
                let mut ids = ids.write().unwrap();
                ids.clear();
                ids.extend((0..SESSIONS).map(|i| store.create("ann", i as u32).unwrap()));
            }
            barrier.wait();
            barrier.wait();
        }
        let early: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(early, 0, "calls that returned with sessions still live");
    });
    assert_eq!(store.count(), 0);
}
