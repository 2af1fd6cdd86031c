//! SessionStore: the lifecycle (create / get / update / touch / destroy /
//! destroy_all_for_user / counts), absolute and idle timeouts on a MockClock,
//! wall-clock steps (which neither end nor extend a session within a
//! process; across a restart the wall clock is the link), and restarts with
//! `Fsync::Always`: no acknowledged session is lost, the absolute deadline
//! and slid idle deadlines survive, the user index is rebuilt, and destroyed
//! sessions stay destroyed.
#![allow(clippy::unwrap_used)]

use serde::{Deserialize, Serialize};
use shardcache::adapters::{SessionConfig, SessionError, SessionId, SessionStore};
use shardcache::persist::Fsync;
use shardcache::{Clock, MockClock};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

fn cart(items: &[&str]) -> Cart {
    Cart {
        items: items.iter().map(|s| s.to_string()).collect(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);
const MS: Duration = Duration::from_millis(1);

/// Steps only the wall clock (as NTP does), forward or back.
fn step_wall(clock: &MockClock, forward: bool, by: Duration) {
    let wall = clock.wall();
    clock.set_wall(if forward { wall + by } else { wall - by });
}

fn wall_ms(clock: &MockClock) -> u64 {
    clock.wall().as_millis() as u64
}

#[test]
fn lifecycle_in_memory() {
    let clock = MockClock::new();
    let store: SessionStore<Cart> =
        SessionStore::in_memory(SessionConfig::default().clock(clock.clone())).unwrap();
    let a1 = store.create("ann", cart(&["tea"])).unwrap();
    let a2 = store.create("ann", cart(&[])).unwrap();
    let b1 = store.create("bob", cart(&["milk"])).unwrap();
    assert_ne!(a1, a2);
    assert_eq!(store.count(), 3);
    assert_eq!(store.count_for_user("ann"), 2);
    assert_eq!(store.sessions_of("bob"), vec![b1.clone()]);

    let s = store.get(a1.as_str()).unwrap();
    assert_eq!((s.user.as_str(), &s.data), ("ann", &cart(&["tea"])));
    assert_eq!(s.expires_at_ms - s.created_at_ms, 86_400_000);

    assert!(store.update(a1.as_str(), cart(&["tea", "cake"])).unwrap());
    assert_eq!(store.get(a1.as_str()).unwrap().data, cart(&["tea", "cake"]));
    assert!(!store.update("no-such-session", cart(&[])).unwrap());
    assert!(store.touch(a1.as_str()).expect("logged"));
    assert!(!store.touch("no-such-session").expect("logged"));

    assert!(store.destroy(b1.as_str()).expect("logged"));
    assert!(!store.destroy(b1.as_str()).expect("logged"));
    assert!(store.get(b1.as_str()).is_none());
    assert_eq!(store.count_for_user("bob"), 0);

    assert_eq!(store.destroy_all_for_user("ann").expect("logged"), 2);
    assert_eq!(store.count(), 0);
    assert!(store.get(a2.as_str()).is_none());

    // Default absolute timeout: 24 h.
    let c = store.create("cid", cart(&[])).unwrap();
    clock.advance(24 * HOUR - Duration::from_millis(1));
    assert!(store.get(c.as_str()).is_some());
    clock.advance(Duration::from_millis(1));
    assert!(store.get(c.as_str()).is_none());
    assert_eq!(store.count(), 0);
}

#[test]
fn idle_timeout_slides_but_never_past_the_absolute_deadline() {
    let clock = MockClock::new();
    let config = SessionConfig::default()
        .absolute_timeout(10 * HOUR)
        .idle_timeout(HOUR)
        .clock(clock.clone());
    let store: SessionStore<u32> = SessionStore::in_memory(config).unwrap();
    let id = store.create("ann", 1).unwrap();
    let idle = store.create("ann", 2).unwrap();
    for _ in 0..9 {
        clock.advance(HOUR - Duration::from_secs(1));
        assert!(store.touch(id.as_str()).expect("logged"));
    }
    assert!(store.get(idle.as_str()).is_none()); // went idle
    assert!(store.get(id.as_str()).is_some()); // kept alive by touches
    clock.advance(HOUR - Duration::from_secs(1)); // 9h59m51s since creation
    assert!(store.touch(id.as_str()).expect("logged"));
    clock.advance(Duration::from_secs(10)); // past the absolute deadline
    assert!(store.get(id.as_str()).is_none());
    assert!(!store.touch(id.as_str()).expect("logged"));
}

#[test]
fn a_wall_clock_step_forward_neither_ends_nor_shortens_a_session() {
    let clock = MockClock::new();
    let config = SessionConfig::default()
        .absolute_timeout(HOUR)
        .idle_timeout(30 * MINUTE)
        .clock(clock.clone());
    let store: SessionStore<u32> = SessionStore::in_memory(config).unwrap();
    let id = store.create("ann", 1).unwrap();
    clock.advance(MINUTE);
    step_wall(&clock, true, 3 * HOUR); // far past the absolute deadline on the wall clock
    let s = store
        .get(id.as_str())
        .expect("a wall-clock step does not end a session");
    // The wall fields read on the stepped clock: the time left is the real one.
    assert_eq!(
        s.expires_at_ms - wall_ms(&clock),
        (HOUR - MINUTE).as_millis() as u64
    );
    assert_eq!(s.expires_at_ms - s.created_at_ms, 3_600_000);
    assert!(store.touch(id.as_str()).expect("logged"));
    assert!(store.update(id.as_str(), 2).unwrap());
    assert_eq!(store.count(), 1);
    assert_eq!(store.count_for_user("ann"), 1);

    // The idle timeout counts real time: 30 min after the last touch.
    clock.advance(30 * MINUTE - MS);
    assert_eq!(store.get(id.as_str()).map(|s| s.data), Some(2));
    assert!(store.touch(id.as_str()).expect("logged")); // 31 min after creation
                                                        // The absolute one too: one hour after creation, not earlier, not later.
    clock.advance(29 * MINUTE);
    assert!(store.get(id.as_str()).is_some());
    clock.advance(MS);
    assert!(store.get(id.as_str()).is_none());
    assert!(!store.touch(id.as_str()).expect("logged"));
    assert_eq!(store.count(), 0);
}

#[test]
fn wall_clock_steps_back_and_touches_never_stretch_the_absolute_timeout() {
    let clock = MockClock::new();
    let config = SessionConfig::default()
        .absolute_timeout(HOUR)
        .idle_timeout(30 * MINUTE)
        .clock(clock.clone());
    let store: SessionStore<u32> = SessionStore::in_memory(config).unwrap();
    let id = store.create("ann", 1).unwrap();
    let other = store.create("bob", 1).unwrap();
    // Every 10 minutes the wall clock is stepped back 20 and the session
    // touched: the wall clock never reaches the absolute deadline.
    for _ in 0..5 {
        clock.advance(10 * MINUTE);
        step_wall(&clock, false, 20 * MINUTE);
        assert!(store.touch(id.as_str()).expect("logged"));
        assert!(store.touch(other.as_str()).expect("logged"));
    }
    clock.advance(10 * MINUTE - MS); // a millisecond before the absolute timeout
    step_wall(&clock, false, 20 * MINUTE);
    assert!(store.get(id.as_str()).is_some());
    assert!(store.touch(id.as_str()).expect("logged"));
    clock.advance(MS); // one hour of real time since creation
    assert!(store.get(id.as_str()).is_none());
    assert!(!store.touch(other.as_str()).expect("logged"));
    assert!(!store.update(other.as_str(), 2).unwrap());
    assert_eq!(store.count(), 0);
    assert_eq!(store.count_for_user("bob"), 0);
    for _ in 0..3 {
        step_wall(&clock, false, HOUR);
        assert!(!store.touch(id.as_str()).expect("logged"));
        assert!(store.get(id.as_str()).is_none());
    }
}

#[test]
fn across_a_restart_the_wall_clock_is_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let clock = MockClock::new();
    let config = || {
        SessionConfig::default()
            .absolute_timeout(10 * HOUR)
            .idle_timeout(2 * HOUR)
            .clock(clock.clone())
    };
    let open = |name: &str| -> SessionStore<u32> {
        SessionStore::open(dir.path().join(name), config()).unwrap()
    };
    // An hour at a time, touched after each.
    let keep_alive = |store: &SessionStore<u32>, id: &SessionId, hours: u32| {
        for _ in 0..hours {
            clock.advance(HOUR);
            assert!(store.touch(id.as_str()).expect("logged"));
        }
    };
    let created = |name: &str| {
        let id = open(name).create("ann", 1).unwrap();
        clock.advance(MINUTE);
        id
    };

    // Down while the wall clock steps forward past the logged deadline: gone.
    let id = created("forward.log");
    step_wall(&clock, true, 10 * HOUR);
    let store = open("forward.log");
    assert!(store.get(id.as_str()).is_none());
    assert_eq!(store.count(), 0);

    // Down while it steps back: the session ends when the wall clock reaches
    // its logged deadline, so it gets the step back (the only link there is).
    let id = created("back.log");
    step_wall(&clock, false, HOUR);
    let store = open("back.log");
    keep_alive(&store, &id, 10);
    clock.advance(59 * MINUTE - MS);
    assert!(store.get(id.as_str()).is_some()); // 11 h real, 10 h on the wall
    clock.advance(MS);
    assert!(store.get(id.as_str()).is_none());
    drop(store);

    // Stepped forward while up, then touched or updated: the write logs the
    // deadline on the stepped wall clock, so a restart keeps the real time
    // left.
    for (name, touch) in [("touched.log", true), ("updated.log", false)] {
        let id = created(name);
        let store = open(name);
        keep_alive(&store, &id, 9);
        step_wall(&clock, true, 5 * HOUR);
        if touch {
            assert!(store.touch(id.as_str()).expect("logged"));
        } else {
            assert!(store.update(id.as_str(), 2).unwrap());
        }
        drop(store);
        let store = open(name);
        let s = store.get(id.as_str()).unwrap();
        assert_eq!(
            s.expires_at_ms - wall_ms(&clock),
            (HOUR - MINUTE).as_millis() as u64,
            "{name}"
        );
        clock.advance(HOUR - MINUTE - MS);
        assert!(store.get(id.as_str()).is_some(), "{name}");
        assert_eq!(store.count_for_user("ann"), 1, "{name}");
        clock.advance(MS);
        assert!(store.get(id.as_str()).is_none(), "{name}");
        assert_eq!(store.count(), 0, "{name}");
        assert_eq!(store.count_for_user("ann"), 0, "{name}");
    }
}

/// A touch after a wall-clock step logs the absolute deadline on the
/// stepped clock: reopened on that clock, the session ends when its absolute
/// timeout says, whether the step was forward or back, with or without an
/// idle timeout.
#[test]
fn a_touch_after_a_wall_clock_step_keeps_the_absolute_deadline_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    for (n, (forward, idle)) in [(true, true), (false, true), (true, false), (false, false)]
        .into_iter()
        .enumerate()
    {
        let clock = MockClock::new();
        let config = || {
            let config = SessionConfig::default()
                .absolute_timeout(10 * HOUR)
                .clock(clock.clone());
            if idle {
                config.idle_timeout(2 * HOUR)
            } else {
                config
            }
        };
        let path = dir.path().join(format!("{n}.log"));
        let open = || -> SessionStore<u32> { SessionStore::open(&path, config()).unwrap() };
        let case = format!("forward: {forward}, idle timeout: {idle}");
        let store = open();
        let id = store.create("ann", 1).unwrap();
        clock.advance(HOUR);
        step_wall(&clock, forward, 3 * HOUR);
        assert!(store.touch(id.as_str()).expect("logged"));
        drop(store);
        clock.advance(30 * MINUTE); // down, on the stepped wall clock

        let store = open();
        let s = store.get(id.as_str()).unwrap_or_else(|| panic!("{case}"));
        let left = 10 * HOUR - HOUR - 30 * MINUTE;
        assert_eq!(
            s.expires_at_ms - wall_ms(&clock),
            left.as_millis() as u64,
            "{case}"
        );
        // Kept alive to a millisecond before the absolute deadline.
        for _ in 0..8 {
            clock.advance(HOUR);
            assert!(store.touch(id.as_str()).expect("logged"), "{case}");
        }
        clock.advance(30 * MINUTE - MS);
        assert!(store.get(id.as_str()).is_some(), "{case}");
        assert_eq!(store.count(), 1, "{case}");
        clock.advance(MS);
        assert!(store.get(id.as_str()).is_none(), "{case}");
        assert_eq!(store.count(), 0, "{case}");
    }
}

#[test]
fn sessions_survive_a_restart_with_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.log");
    let clock = MockClock::new();
    let config = || {
        SessionConfig::default()
            .fsync(Fsync::Always)
            .idle_timeout(2 * HOUR)
            .clock(clock.clone())
    };
    let (ids, destroyed, touched) = {
        let store: SessionStore<Cart> = SessionStore::open(&path, config()).unwrap();
        // 4 threads create 100 sessions each, concurrently.
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (store, barrier) = (store.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    (0..100)
                        .map(|i| {
                            let user = format!("user{}", i % 10);
                            let id = store.create(&user, cart(&[&format!("{t}-{i}")])).unwrap();
                            (id, user, format!("{t}-{i}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let destroyed = store.destroy_all_for_user("user3").expect("logged");
        assert_eq!(destroyed, 40);
        store.update(ids[0].0.as_str(), cart(&["updated"])).unwrap();
        clock.advance(HOUR);
        let touched = ids[1].0.clone();
        assert!(store.touch(touched.as_str()).expect("logged"));
        store.sync().unwrap();
        (ids, destroyed, touched)
    }; // dropped: the process "restarts"

    let store: SessionStore<Cart> = SessionStore::open(&path, config()).unwrap();
    assert!(store.recovery_report().unwrap().records >= 400);
    assert_eq!(store.count(), 400 - destroyed);
    for (id, user, item) in &ids {
        let got = store.get(id.as_str());
        if user == "user3" {
            assert!(got.is_none(), "a destroyed session came back");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("session of {user} lost"));
        assert_eq!(&got.user, user);
        if id != &ids[0].0 {
            assert_eq!(got.data, cart(&[item]));
        } else {
            assert_eq!(got.data, cart(&["updated"]));
        }
    }
    // The user index is rebuilt from the log.
    assert_eq!(store.count_for_user("user5"), 40);
    assert_eq!(store.count_for_user("user3"), 0);
    assert_eq!(store.destroy_all_for_user("user5").expect("logged"), 40);

    // The touched session's idle deadline slid (to 3 h from creation); the
    // others still end 2 h after creation.
    drop(store);
    clock.advance(HOUR + Duration::from_secs(1));
    let store: SessionStore<Cart> = SessionStore::open(&path, config()).unwrap();
    let touched_user = &ids[1].1;
    if touched_user != "user3" && touched_user != "user5" {
        assert!(store.get(touched.as_str()).is_some());
    }
    assert_eq!(store.count(), 1);
}

#[test]
fn the_absolute_deadline_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.log");
    let clock = MockClock::new();
    let config = || {
        SessionConfig::default()
            .absolute_timeout(HOUR)
            .clock(clock.clone())
    };
    let id = {
        let store: SessionStore<u32> = SessionStore::open(&path, config()).unwrap();
        store.create("ann", 7).unwrap()
    };
    clock.advance(HOUR / 2);
    {
        let store: SessionStore<u32> = SessionStore::open(&path, config()).unwrap();
        let s = store.get(id.as_str()).unwrap();
        assert_eq!(s.expires_at_ms - s.created_at_ms, 3_600_000);
        store.update(id.as_str(), 8).unwrap(); // an update does not extend it
    }
    clock.advance(HOUR / 2);
    let store: SessionStore<u32> = SessionStore::open(&path, config()).unwrap();
    assert!(store.get(id.as_str()).is_none());
    assert_eq!(store.count(), 0);
    assert_eq!(store.count_for_user("ann"), 0);
}

#[test]
fn destroy_all_racing_with_create_leaves_nothing_indexed_behind() {
    let store: SessionStore<u32> = SessionStore::in_memory(SessionConfig::default()).unwrap();
    let creators: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..2_000 {
                    store.create("ann", i).unwrap();
                }
            })
        })
        .collect();
    let mut destroyed = 0;
    for _ in 0..200 {
        destroyed += store.destroy_all_for_user("ann").expect("logged");
        thread::yield_now();
    }
    creators.into_iter().for_each(|h| h.join().unwrap());
    destroyed += store.destroy_all_for_user("ann").expect("logged");
    // Every session was either destroyed or ... nothing else: none escaped the index.
    assert_eq!(store.count(), 0);
    assert!(destroyed <= 4_000);
}

#[test]
fn bad_settings_and_foreign_logs_are_errors() {
    let zero = SessionStore::<u32>::in_memory(SessionConfig::default().max_sessions(0));
    assert!(matches!(zero, Err(SessionError::Build(_))));
    let idle =
        SessionStore::<u32>::in_memory(SessionConfig::default().idle_timeout(Duration::ZERO));
    assert!(matches!(idle, Err(SessionError::Build(_))));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.log");
    drop(SessionStore::<u32>::open(&path, SessionConfig::default()).unwrap());
    let other = SessionStore::<String>::open(&path, SessionConfig::default());
    assert!(matches!(other, Err(SessionError::Persist(_))), "{other:?}");
    std::fs::write(dir.path().join("junk.log"), b"not a log at all").unwrap();
    let junk = SessionStore::<u32>::open(dir.path().join("junk.log"), SessionConfig::default());
    assert!(matches!(junk, Err(SessionError::Persist(_))), "{junk:?}");
}

/// A session write the log cannot keep returns an error and changes
/// nothing, across a restart too: a failed destroy leaves the session valid
/// (and says so), a failed create leaves no session.
#[test]
fn session_writes_the_log_cannot_keep_are_errors() {
    use shardcache::persist::{FaultOn, FileLog, MemStorage};
    let storage = MemStorage::new();
    let open = || -> SessionStore<u32> {
        let log = FileLog::with_storage(storage.clone(), Fsync::Always);
        SessionStore::with_log(
            log,
            SessionConfig::default().idle_timeout(Duration::from_secs(60)),
        )
        .expect("open")
    };
    let store = open();
    let victim = store.create("ann", 1).expect("healthy");
    let kept = store.create("bob", 2).expect("healthy");
    storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::StorageFull, true);
    assert!(matches!(
        store.destroy(victim.as_str()),
        Err(SessionError::Persist(_))
    ));
    assert!(
        store.get(victim.as_str()).is_some(),
        "still live, and said so"
    );
    assert!(store.create("cat", 3).is_err());
    assert_eq!(store.count_for_user("cat"), 0);
    assert!(store.touch(kept.as_str()).is_err());
    assert!(store.destroy_all_for_user("ann").is_err());
    assert_eq!(store.count_for_user("ann"), 1, "re-indexed for a retry");
    drop(store);
    storage.heal();
    storage.power_loss(usize::MAX);
    let store = open();
    assert!(store.get(victim.as_str()).is_some());
    assert_eq!(store.count(), 2, "no refused create came back");
    assert!(store.destroy(victim.as_str()).expect("healthy again"));
    drop(store);
    assert!(
        open().get(victim.as_str()).is_none(),
        "a destroy that returned stuck"
    );
}
