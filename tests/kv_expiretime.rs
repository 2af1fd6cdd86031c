//! `EXPIRETIME`/`PEXPIRETIME` answer exactly the deadline a `PEXPIREAT`,
//! `EXPIREAT`, `SET ... PXAT|EXAT` or `GETEX ... PXAT|EXAT` set, as Redis
//! does, whatever the sub-millisecond phase of the wall clock against the
//! monotonic one; a step of the wall clock moves them with it.

use shardcache::kv::{KvStore, Reply};
use shardcache::MockClock;
use std::time::Duration;

const WALL_S: u64 = 1_800_000_000;

fn int(r: Reply) -> i64 {
    match r {
        Reply::Integer(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn absolute_deadlines_read_back_exactly() {
    // The wall clock a fraction of a millisecond ahead of a millisecond
    // boundary when the monotonic one is on one, and reads taken at every
    // phase: cutting each clock to the millisecond separately is off by one
    // at some of them.
    for phase_us in (0..1000).step_by(100) {
        let clock = MockClock::new();
        clock.set_wall(Duration::from_secs(WALL_S) + Duration::from_micros(phase_us));
        let store = KvStore::builder()
            .clock(clock.clone())
            .build()
            .expect("store");
        let at_ms = (WALL_S as i64 + 100) * 1000 + 123;
        let at_s = WALL_S as i64 + 200;
        for step_us in [0, 300, 500, 700, 999, 1500] {
            clock.advance(Duration::from_micros(step_us));
            let ms = at_ms.to_string();
            let s = at_s.to_string();
            store.execute(&["SET", "k", "v"]);
            let setters: [(&[&str], i64); 6] = [
                (&["PEXPIREAT", "k", &ms], at_ms),
                (&["EXPIREAT", "k", &s], at_s * 1000),
                (&["SET", "k", "v", "PXAT", &ms], at_ms),
                (&["SET", "k", "v", "EXAT", &s], at_s * 1000),
                (&["GETEX", "k", "PXAT", &ms], at_ms),
                (&["GETEX", "k", "EXAT", &s], at_s * 1000),
            ];
            for (args, want) in setters {
                store.execute(args);
                for later_us in [0, 400, 600, 1000] {
                    clock.advance(Duration::from_micros(later_us));
                    let what = format!("{args:?}, phase {phase_us} us, then {later_us} us");
                    assert_eq!(int(store.execute(&["PEXPIRETIME", "k"])), want, "{what}");
                    assert_eq!(
                        int(store.execute(&["EXPIRETIME", "k"])),
                        (want + 500) / 1000,
                        "{what}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_wall_clock_step_moves_expiretime_and_not_the_time_left() {
    let clock = MockClock::new();
    clock.set_wall(Duration::from_secs(WALL_S));
    let store = KvStore::builder()
        .clock(clock.clone())
        .build()
        .expect("store");
    let at = (WALL_S as i64 + 100) * 1000;
    store.execute(&["SET", "k", "v", "PXAT", &at.to_string()]);
    assert_eq!(int(store.execute(&["PTTL", "k"])), 100_000);
    // The wall clock is stepped an hour ahead.
    clock.set_wall(Duration::from_secs(WALL_S + 3600));
    assert_eq!(int(store.execute(&["PTTL", "k"])), 100_000);
    assert_eq!(
        int(store.execute(&["PEXPIRETIME", "k"])),
        at + 3_600_000,
        "moved with the step"
    );
    // Deadlines set after the step count from the new wall clock.
    let later = (WALL_S as i64 + 3600 + 50) * 1000 + 7;
    store.execute(&["PEXPIREAT", "k", &later.to_string()]);
    assert_eq!(int(store.execute(&["PEXPIRETIME", "k"])), later);
    assert_eq!(int(store.execute(&["PTTL", "k"])), 50_007);
    // Drift under the threshold keeps the origin: still exact.
    clock.set_wall(Duration::from_millis((WALL_S + 3600) * 1000 + 5));
    assert_eq!(int(store.execute(&["PEXPIRETIME", "k"])), later);
}

/// Across a restart of a persistent store, `PEXPIRETIME` answers the
/// deadline set to the millisecond, whatever the sub-millisecond phase of the
/// wall clock when it was set and when the store is reopened.
#[test]
fn absolute_deadlines_survive_a_restart_exactly() {
    use shardcache::persist::{FileLog, Fsync, MemStorage};
    for phase_us in (0..1000).step_by(125) {
        for (reopen_us, rewrite) in [
            (0, false),
            (250, true),
            (500, false),
            (750, true),
            (999, false),
        ] {
            let clock = MockClock::new();
            clock.set_wall(Duration::from_secs(WALL_S) + Duration::from_micros(phase_us));
            clock.advance(Duration::from_micros(phase_us * 7 % 1000));
            let storage = MemStorage::new();
            let open = || {
                KvStore::builder()
                    .clock(clock.clone())
                    .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
                    .expect("load")
                    .0
            };
            let at_ms = (WALL_S as i64 + 100) * 1000 + 123;
            let ms = at_ms.to_string();
            let store = open();
            store.execute(&["SET", "a", "v", "PXAT", &ms]);
            store.execute(&["SET", "b", "v"]);
            store.execute(&["PEXPIREAT", "b", &ms]);
            store.execute(&["SET", "c", "v", "PX", "50000"]);
            let c = int(store.execute(&["PEXPIRETIME", "c"]));
            clock.advance(Duration::from_micros(reopen_us / 2));
            if rewrite {
                store.rewrite_log().expect("rewrite");
            }
            drop(store);
            clock.advance(Duration::from_micros(reopen_us));
            let store = open();
            let what = format!("phase {phase_us} us, reopened {reopen_us} us later");
            assert_eq!(int(store.execute(&["PEXPIRETIME", "a"])), at_ms, "{what}");
            assert_eq!(int(store.execute(&["PEXPIRETIME", "b"])), at_ms, "{what}");
            assert_eq!(int(store.execute(&["PEXPIRETIME", "c"])), c, "{what}");
        }
    }
}

/// A clock whose every monotonic read takes a millisecond: a replay that
/// reads the clock once per record takes as many milliseconds as it has
/// records.
#[derive(Clone)]
struct Slow(MockClock);

impl shardcache::Clock for Slow {
    fn monotonic(&self) -> Duration {
        self.0.advance(Duration::from_millis(1));
        self.0.monotonic()
    }
    fn wall(&self) -> Duration {
        self.0.wall()
    }
}

/// However long the replay takes, every deadline comes back on the
/// millisecond it was set to: a key does not live longer for having been
/// replayed late in a long log.
#[test]
fn a_slow_replay_moves_no_deadline() {
    use shardcache::persist::{FileLog, Fsync, MemStorage};
    let clock = MockClock::new();
    clock.set_wall(Duration::from_secs(WALL_S));
    let storage = MemStorage::new();
    let at_ms = (WALL_S as i64 + 3600) * 1000 + 7;
    {
        let store = KvStore::builder()
            .clock(clock.clone())
            .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
            .expect("load")
            .0;
        for i in 0..300 {
            store.execute(&["SET", &format!("k{i}"), "v", "PXAT", &at_ms.to_string()]);
        }
        store.execute(&["PEXPIREAT", "k0", &(at_ms + 1).to_string()]);
    }
    let store = KvStore::builder()
        .clock(Slow(clock.clone()))
        .build_persistent(FileLog::with_storage(storage, Fsync::Always))
        .expect("load")
        .0;
    for i in 0..300 {
        let want = if i == 0 { at_ms + 1 } else { at_ms };
        let got = int(store.execute(&["PEXPIRETIME", &format!("k{i}")]));
        assert_eq!(got, want, "k{i}");
    }
}

/// Writers setting deadlines while another thread rewrites the log over
/// and over: the reopened store answers every key's `PEXPIRETIME` as the
/// live store did, to the millisecond.
#[test]
fn deadlines_survive_concurrent_rewrites_exactly() {
    use shardcache::persist::{FileLog, Fsync, MemStorage};
    use std::sync::atomic::{AtomicBool, Ordering};
    let clock = MockClock::new();
    clock.set_wall(Duration::from_secs(WALL_S) + Duration::from_micros(437));
    let storage = MemStorage::new();
    let open = |clock: &MockClock| {
        KvStore::builder()
            .clock(clock.clone())
            .build_persistent(FileLog::with_storage(storage.clone(), Fsync::EverySecond))
            .expect("load")
            .0
    };
    let store = open(&clock);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                store.rewrite_log().expect("rewrite");
            }
        });
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let (store, clock) = (&store, &clock);
                s.spawn(move || {
                    for i in 0..2000u64 {
                        let key = format!("t{t}k{}", i % 97);
                        let at = (WALL_S * 1000 + 10_000 + i * 13 % 5000).to_string();
                        match i % 4 {
                            0 => store.execute(&["SET", &key, "v", "PXAT", &at]),
                            1 => store.execute(&["SET", &key, "v", "PX", "60000"]),
                            2 => store.execute(&["PEXPIREAT", &key, &at]),
                            _ => store.execute(&["PEXPIRE", &key, "30000"]),
                        };
                        if i % 100 == 0 {
                            clock.advance(Duration::from_micros(333));
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, Ordering::Relaxed);
    });
    // One more rewrite, with the clocks' sub-millisecond phases where
    // reading them separately cuts them to different milliseconds.
    clock.advance(Duration::from_micros(400));
    store.rewrite_log().expect("rewrite");
    store.sync().expect("sync");
    let keys: Vec<String> = (0..2)
        .flat_map(|t| (0..97).map(move |k| format!("t{t}k{k}")))
        .collect();
    let before: Vec<i64> = keys
        .iter()
        .map(|k| int(store.execute(&["PEXPIRETIME", k])))
        .collect();
    drop(store);
    clock.advance(Duration::from_micros(640));
    let store = open(&clock);
    for (k, want) in keys.iter().zip(before) {
        assert_eq!(int(store.execute(&["PEXPIRETIME", k])), want, "{k}");
    }
}
