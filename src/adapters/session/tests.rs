//! A log whose touches logged idle deadlines only (each an `Expire` record,
//! with no absolute deadline beside it): opening it still ends a session at
//! the absolute deadline the log holds.

use super::{SessionConfig, SessionStore};
use crate::clock::Clock;
use crate::MockClock;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn an_idle_deadline_logged_past_the_absolute_one_is_brought_back_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.log");
    let clock = MockClock::new();
    let config = || {
        SessionConfig::default()
            .absolute_timeout(10 * HOUR)
            .idle_timeout(2 * HOUR)
            .clock(clock.clone())
    };
    let store: SessionStore<u32> = SessionStore::open(&path, config()).expect("open");
    let id = store.create("ann", 1).expect("created");
    clock.advance(MINUTE);
    for _ in 0..9 {
        clock.advance(HOUR);
        assert!(store.touch(id.as_str()).expect("logged"));
    }
    // The wall clock steps forward 5 h; the idle deadline alone is logged,
    // on the stepped clock: 4 h past the logged absolute deadline.
    clock.set_wall(clock.wall() + 5 * HOUR);
    store
        .cache
        .durably(|| store.cache.set_ttl(id.as_str(), Some(59 * MINUTE)))
        .expect("logged");
    drop(store);

    let store: SessionStore<u32> = SessionStore::open(&path, config()).expect("reopen");
    // Gone for the counts (asked first: `get` removes what it finds dead).
    assert_eq!(store.count_for_user("ann"), 0);
    assert_eq!(store.count(), 0);
    assert!(store.get(id.as_str()).is_none());
}

/// Under a buffering log, the removal a log failure meets stays in memory
/// (the log keeps no undo records): `destroy_all_for_user` reports the
/// failure, and indexes again only the sessions still live, so the index
/// holds no id of a session that is gone. The repair then logs the
/// removal: after `sync`, a retry and a reopen, no session of the user is
/// left.
#[test]
fn a_failed_destroy_all_under_a_buffering_log_reindexes_only_live_sessions() {
    use crate::persist::{FileLog, Fsync, MemStorage};
    let storage = MemStorage::new();
    let open = || -> SessionStore<u32> {
        let log =
            FileLog::with_storage(storage.clone(), Fsync::EverySecond).write_delay(Duration::ZERO);
        SessionStore::with_log(log, SessionConfig::default()).expect("open")
    };
    let store = open();
    let ids: Vec<_> = (0..3)
        .map(|i| store.create("ann", i).expect("healthy"))
        .collect();
    store.sync().expect("healthy");
    storage.fail_after(0);
    assert!(store.destroy_all_for_user("ann").is_err());
    let live: Vec<_> = ids
        .iter()
        .filter(|id| store.get(id.as_str()).is_some())
        .collect();
    assert_eq!(live.len(), 2, "the first removal stands, the rest refused");
    let indexed = store.users.lock().get("ann").cloned().unwrap_or_default();
    assert_eq!(indexed.len(), 2, "indexed: {indexed:?}");
    assert!(live.iter().all(|id| indexed.contains(id.as_str())));

    storage.heal();
    // The first `sync` may report a failure no caller was told of yet (a
    // background repair that ran while the storage still failed).
    assert!((0..10).any(|_| store.sync().is_ok()), "repaired");
    assert_eq!(store.destroy_all_for_user("ann").expect("healthy"), 2);
    drop(store);
    let store = open();
    assert_eq!(store.count_for_user("ann"), 0);
    assert_eq!(store.count(), 0);
}
