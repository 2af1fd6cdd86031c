#![allow(clippy::unwrap_used)]
//! Red-team attacks on recently changed code: ordered deadlines
//! (`expired_first`, used by `SessionStore` and `RateLimiter`), the session
//! store's reopen rewriting and per-user locks, weights computed once in
//! batches (`KvStore` under `max_memory`), and `FileLog` buffer shrinking.

use shardcache::adapters::{RateLimiter, SessionConfig, SessionId, SessionStore};
use shardcache::{Clock, MockClock};
use std::path::Path;

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use std::time::Duration;
use xorshift::Xorshift;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn step_wall_back(clock: &MockClock, by: Duration) {
    let wall = clock.wall();
    clock.set_wall(wall - by);
}

/// How an ended session is reclaimed by the cache while the store is up,
/// before it is destroyed.
#[derive(Debug, Clone, Copy)]
enum Reclaim {
    /// `count()` purges every ended session.
    Count,
    /// Another session is created in the same shard (a small store has one
    /// shard): the write reclaims the shard's ended sessions first.
    OtherCreate,
}

/// A session ends while the store is up, is reclaimed by the cache, and is
/// then destroyed (`false`: not live). The wall clock then steps back before
/// its logged deadline (as NTP may) and the store is reopened: the
/// destroyed session is live again.
#[test]
fn a_session_reclaimed_while_up_then_destroyed_stays_gone_after_a_step_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut back = Vec::new();
    for (n, how) in [Reclaim::Count, Reclaim::OtherCreate]
        .into_iter()
        .enumerate()
    {
        let clock = MockClock::new();
        let path = dir.path().join(format!("s{n}.log"));
        let config = SessionConfig::default()
            .absolute_timeout(HOUR)
            .max_sessions(100)
            .clock(clock.clone());
        let id: SessionId = {
            let store: SessionStore<u32> = SessionStore::open(&path, config.clone()).unwrap();
            let id = store.create("ann", 1).unwrap();
            clock.advance(HOUR + MINUTE);
            match how {
                Reclaim::Count => assert_eq!(store.count(), 0),
                Reclaim::OtherCreate => drop(store.create("bob", 2).unwrap()),
            }
            assert!(!store.destroy(id.as_str()).unwrap());
            assert_eq!(store.destroy_all_for_user("ann").unwrap(), 0);
            id
        };
        step_wall_back(&clock, 2 * HOUR);
        let store: SessionStore<u32> = SessionStore::open(&path, config).unwrap();
        if store.get(id.as_str()).is_some() {
            back.push((how, store.count_for_user("ann")));
        }
    }
    assert!(
        back.is_empty(),
        "destroyed sessions came back live: {back:?}"
    );
}

/// Runs `f` on a thread and fails if it does not finish within `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("hung (deadlock?) or panicked")
}

/// `max_keys` keys whose state stopped mattering fill the limiter (spread
/// over several shards: 16,384 keys make 8 shards), then as many new keys
/// are checked from several threads while other threads keep the shards'
/// locks busy. Every new key's state still matters at the end (a window
/// limit of 1, clock not moved), and there are never more of them than
/// `max_keys`: a second check of each must be refused.
#[test]
fn rate_limiter_no_mattering_state_evicted_under_concurrency() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MAX: u64 = 16_384;
    const WORKERS: u64 = 4;
    const ROUNDS: u64 = 8;
    within(60, || {
        let clock = MockClock::new();
        let rl: RateLimiter<u64> = RateLimiter::builder()
            .clock(clock.clone())
            .max_keys(MAX)
            .sliding_window(1, Duration::from_secs(1))
            .unwrap();
        let mut base = 0u64;
        let mut lost_total = 0u64;
        for round in 0..ROUNDS {
            // Every key so far stops mattering.
            clock.advance(Duration::from_secs(2));
            let stop = Arc::new(AtomicBool::new(false));
            let noise: Vec<_> = (0..2u64)
                .map(|n| {
                    let (rl, stop) = (rl.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut k = u64::MAX - n * 1_000_000_000;
                        while !stop.load(Ordering::Relaxed) {
                            rl.reset(&k);
                            k = k.wrapping_sub(1);
                        }
                    })
                })
                .collect();
            let workers: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let rl = rl.clone();
                    std::thread::spawn(move || {
                        let mut refused = 0u64;
                        for k in (base..base + MAX).filter(|k| k % WORKERS == w) {
                            if !rl.check(k).allowed {
                                refused += 1;
                            }
                        }
                        refused
                    })
                })
                .collect();
            let refused: u64 = workers.into_iter().map(|h| h.join().unwrap()).sum();
            stop.store(true, Ordering::Relaxed);
            for h in noise {
                h.join().unwrap();
            }
            assert_eq!(refused, 0, "round {round}: a fresh key was refused");
            assert!(rl.tracked_keys() as u64 <= MAX);
            let lost = (base..base + MAX).filter(|&k| rl.check(k).allowed).count() as u64;
            lost_total += lost;
            base += MAX;
        }
        assert_eq!(
            lost_total, 0,
            "keys whose state still mattered were evicted while stale state was held"
        );
    });
}

/// Token bucket, `max_keys(2)`: `L` spends its whole burst at 0 s (its
/// state matters until 5 s); `A` spends one token at 0.5 s (its state
/// matters until exactly 1.5 s, when its bucket is full again). At 1.5 s
/// (and a little after) only `L`'s state still matters, so a new key `B`
/// must take `A`'s place, not `L`'s: `L` must still be refused its burst.
#[test]
fn token_bucket_state_that_just_stopped_mattering_gives_way_first() {
    let mut lost = Vec::new();
    for lag_us in [0u64, 1, 500, 999, 1_000, 1_500, 2_000, 3_000] {
        let clock = MockClock::new();
        let rl: RateLimiter<&'static str> = RateLimiter::builder()
            .clock(clock.clone())
            .max_keys(2)
            .token_bucket(1, Duration::from_secs(1), 5)
            .unwrap();
        assert!(rl.check_n("L", 5).unwrap().allowed);
        clock.advance(Duration::from_millis(500));
        assert!(rl.check("A").allowed);
        clock.advance(Duration::from_millis(1000) + Duration::from_micros(lag_us));
        assert!(rl.check("B").allowed);
        // L has had 1.5 s to refill: 1 token, not 5.
        if rl.check_n("L", 5).unwrap().allowed {
            lost.push(lag_us);
        }
    }
    assert!(
        lost.is_empty(),
        "L's state (still limiting) was evicted for B while A's (no longer limiting) \
         was kept, at these microseconds past A's end: {lost:?}"
    );
}

/// Sliding window of 1 per 10 s, `max_keys(4096)` (two shards): 2,048
/// "old" keys admitted at 0 s, 2,048 "mid" keys at 5 s. Just after 10 s the
/// old keys' state stops limiting them; 2,048 new keys are then admitted.
/// That makes exactly 4,096 keys whose state matters (mid and new), so every
/// old key must give way and no mid key may be evicted. (In its own shard an
/// old key is the least recently used, so only a shard that runs out of old
/// keys while the other still holds some can get this wrong.) Returns 1
/// if a key whose state still limits it lost it.
fn sliding_window_cross_shard_lost(lag: Duration) -> usize {
    const HALF: u64 = 2048;
    let clock = MockClock::new();
    let rl: RateLimiter<u64> = RateLimiter::builder()
        .clock(clock.clone())
        .max_keys(2 * HALF)
        .sliding_window(1, Duration::from_secs(10))
        .unwrap();
    for k in 0..HALF {
        assert!(rl.check(k).allowed);
    }
    clock.advance(Duration::from_secs(5));
    for k in HALF..2 * HALF {
        assert!(rl.check(k).allowed);
    }
    clock.advance(Duration::from_secs(5) + lag);
    for k in 2 * HALF..3 * HALF {
        assert!(rl.check(k).allowed, "a new key was refused");
    }
    assert!(rl.tracked_keys() as u64 <= 2 * HALF);
    // Stops at the first loss: an admitted check makes state, which at
    // `max_keys` evicts another key's.
    usize::from((HALF..3 * HALF).any(|k| rl.check(k).allowed))
}

#[test]
fn sliding_window_cross_shard_old_state_gives_way_after_its_deadline() {
    for lag in [
        Duration::from_millis(1),
        Duration::from_millis(2),
        Duration::from_millis(50),
        Duration::from_secs(1),
        Duration::from_millis(4_900),
    ] {
        assert_eq!(sliding_window_cross_shard_lost(lag), 0, "lag {lag:?}");
    }
}

#[test]
fn sliding_window_cross_shard_old_state_gives_way_at_once() {
    let lost: Vec<_> = [0u64, 1, 500, 999]
        .into_iter()
        .map(|us| {
            (
                us,
                sliding_window_cross_shard_lost(Duration::from_micros(us)),
            )
        })
        .collect();
    assert!(
        lost.iter().all(|&(_, n)| n == 0),
        "(µs past the old keys' end, 1 if a mid or new key's still-limiting state was lost): {lost:?}"
    );
}

/// Huge `max_keys` (64 shards on this machine's default shard count, fewer
/// elsewhere): the cross-shard attack above, past the old keys' deadline.
#[test]
fn sliding_window_many_shards_old_state_gives_way() {
    const QUARTER: u64 = 32_768;
    let clock = MockClock::new();
    let rl: RateLimiter<u64> = RateLimiter::builder()
        .clock(clock.clone())
        .max_keys(4 * QUARTER)
        .sliding_window(1, Duration::from_secs(10))
        .unwrap();
    // Old keys in two waves (the second leaves the window 2 ms after the first).
    for k in 0..QUARTER {
        assert!(rl.check(k).allowed);
    }
    clock.advance(Duration::from_millis(2));
    for k in QUARTER..2 * QUARTER {
        assert!(rl.check(k).allowed);
    }
    clock.advance(Duration::from_secs(5));
    for k in 2 * QUARTER..4 * QUARTER {
        assert!(rl.check(k).allowed);
    }
    // First wave out of the window (by 1 ms: past the lag), second not yet.
    clock.advance(Duration::from_millis(4_999));
    for k in 4 * QUARTER..5 * QUARTER {
        assert!(rl.check(k).allowed, "a new key was refused");
    }
    // Second wave out: another quarter of new keys.
    clock.advance(Duration::from_millis(3));
    for k in 5 * QUARTER..6 * QUARTER {
        assert!(rl.check(k).allowed, "a new key was refused");
    }
    assert!(rl.tracked_keys() as u64 <= 4 * QUARTER);
    let first_lost = (2 * QUARTER..6 * QUARTER).find(|&k| rl.check(k).allowed);
    assert_eq!(first_lost, None, "a still-limiting key lost its state");
}

fn session_config(clock: &MockClock, max: u64) -> SessionConfig {
    SessionConfig::default()
        .absolute_timeout(HOUR)
        .idle_timeout(Duration::from_secs(10))
        .max_sessions(max)
        .clock(clock.clone())
}

/// `max_sessions(1)` and `(2)`: a session whose idle deadline is exactly
/// now (or a nanosecond, or a millisecond past) has ended, and gives its
/// place to a new one; a session kept alive by `touch` is never evicted
/// while fewer than max are live.
#[test]
fn sessions_ending_exactly_now_give_way_at_max_1_and_2() {
    for lag_ns in [0u64, 1, 999_999, 1_000_000, 1_000_001] {
        let clock = MockClock::new();
        // max 1
        let store: SessionStore<u32> = SessionStore::in_memory(session_config(&clock, 1)).unwrap();
        let a = store.create("a", 1).unwrap();
        clock.advance(Duration::from_secs(10) + Duration::from_nanos(lag_ns));
        assert!(store.get(a.as_str()).is_none(), "lag {lag_ns}: a ended");
        let b = store.create("b", 2).unwrap();
        assert!(store.get(b.as_str()).is_some());
        assert_eq!(store.count(), 1);
        // max 2: L is touched (live until 15 s + lag), A ends at 10 s + lag,
        // and A is the most recently used (updated at 9 s).
        let clock = MockClock::new();
        let store: SessionStore<u32> = SessionStore::in_memory(session_config(&clock, 2)).unwrap();
        let a = store.create("a", 1).unwrap();
        let l = store.create("l", 1).unwrap();
        clock.advance(Duration::from_secs(5));
        assert!(store.touch(l.as_str()).unwrap());
        clock.advance(Duration::from_secs(4));
        assert!(store.update(a.as_str(), 7).unwrap());
        clock.advance(Duration::from_secs(1) + Duration::from_nanos(lag_ns));
        let b = store.create("b", 2).unwrap();
        assert!(store.get(a.as_str()).is_none(), "lag {lag_ns}");
        assert!(
            store.get(l.as_str()).is_some(),
            "lag {lag_ns}: live L evicted"
        );
        assert!(store.get(b.as_str()).is_some(), "lag {lag_ns}");
        assert_eq!(store.count(), 2);
    }
}

/// Cross-shard (`max_sessions(8192)`: four shards): 4,096 sessions idle
/// out at 10 s, 4,096 are touched at 5 s; at 10 s plus a lag, 4,096 new
/// sessions are created. Exactly 8,192 are then live: no live one may be
/// evicted.
#[test]
fn sessions_cross_shard_ended_give_way_first() {
    const HALF: usize = 4096;
    for lag_us in [0u64, 1, 999, 1_000, 50_000] {
        let clock = MockClock::new();
        let store: SessionStore<u32> =
            SessionStore::in_memory(session_config(&clock, 2 * HALF as u64)).unwrap();
        let old: Vec<_> = (0..HALF)
            .map(|i| store.create("old", i as u32).unwrap())
            .collect();
        let mid: Vec<_> = (0..HALF)
            .map(|i| store.create("mid", i as u32).unwrap())
            .collect();
        clock.advance(Duration::from_secs(5));
        for id in &mid {
            assert!(store.touch(id.as_str()).unwrap());
        }
        clock.advance(Duration::from_secs(5) + Duration::from_micros(lag_us));
        let new: Vec<_> = (0..HALF)
            .map(|i| store.create("new", i as u32).unwrap())
            .collect();
        let dead_mid = mid
            .iter()
            .filter(|id| store.get(id.as_str()).is_none())
            .count();
        let dead_new = new
            .iter()
            .filter(|id| store.get(id.as_str()).is_none())
            .count();
        assert_eq!(
            (dead_mid, dead_new),
            (0, 0),
            "lag {lag_us} µs: live sessions evicted"
        );
        assert!(old.iter().all(|id| store.get(id.as_str()).is_none()));
        assert_eq!(store.count(), 2 * HALF);
        assert_eq!(store.count_for_user("old"), 0);
        assert_eq!(store.count_for_user("mid"), HALF);
    }
}

/// Many reopens of one file log, with the monotonic clock advancing and the
/// wall clock stepping both ways (within the absolute timeout) while the
/// store is up and while it is down, and random creates, touches, updates,
/// destroys and `destroy_all_for_user`s. A session that `destroy` found live
/// (or that was live just before a `destroy_all_for_user` of its user
/// returned) never comes back, at any later open; a live session's data is
/// what was last written.
#[test]
fn destroyed_sessions_never_come_back_over_many_reopens() {
    use shardcache::persist::Fsync;
    use std::collections::{HashMap, HashSet};
    within(60, || {
        let dir = tempfile::tempdir().unwrap();
        for seed in 1..=4u64 {
            let mut rng = Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let clock = MockClock::new();
            let path = dir.path().join(format!("cycle{seed}.log"));
            let fsync = [Fsync::Always, Fsync::EverySecond, Fsync::Never][seed as usize % 3];
            let config = SessionConfig::default()
                .absolute_timeout(HOUR)
                .idle_timeout(20 * MINUTE)
                .max_sessions(if seed % 2 == 0 { 64 } else { 5000 })
                .fsync(fsync)
                .clock(clock.clone());
            let users = ["ann", "bob", "cy"];
            let mut destroyed: HashSet<String> = HashSet::new();
            let mut ids: Vec<(String, &str)> = Vec::new();
            let mut data: HashMap<String, u32> = HashMap::new();
            for epoch in 0..25 {
                let store: SessionStore<u32> = SessionStore::open(&path, config.clone()).unwrap();
                for id in &destroyed {
                    assert!(
                        store.get(id).is_none(),
                        "seed {seed} epoch {epoch}: destroyed session {id} came back"
                    );
                }
                for u in users {
                    for id in store.sessions_of(u) {
                        assert!(!destroyed.contains(id.as_str()), "indexed again: {id:?}");
                    }
                }
                for (id, _) in &ids {
                    if let Some(s) = store.get(id) {
                        assert_eq!(Some(&s.data), data.get(id), "seed {seed}: stale data");
                    }
                }
                for _ in 0..40 {
                    match rng.below(10) {
                        0..=2 => {
                            let u = users[rng.below(3) as usize];
                            let v = rng.below(1000) as u32;
                            let id = store.create(u, v).unwrap();
                            data.insert(id.as_str().to_string(), v);
                            ids.push((id.as_str().to_string(), u));
                        }
                        3 if !ids.is_empty() => {
                            let (id, _) = &ids[rng.below(ids.len() as u64) as usize];
                            let _ = store.touch(id).unwrap();
                        }
                        4 if !ids.is_empty() => {
                            let (id, _) = ids[rng.below(ids.len() as u64) as usize].clone();
                            let v = rng.below(1000) as u32;
                            if store.update(&id, v).unwrap() {
                                data.insert(id, v);
                            }
                        }
                        5 if !ids.is_empty() => {
                            let (id, _) = ids[rng.below(ids.len() as u64) as usize].clone();
                            if store.destroy(&id).unwrap() {
                                destroyed.insert(id);
                            }
                        }
                        6 => {
                            let u = users[rng.below(3) as usize];
                            let live: Vec<String> = ids
                                .iter()
                                .filter(|(id, owner)| *owner == u && store.get(id).is_some())
                                .map(|(id, _)| id.clone())
                                .collect();
                            let n = store.destroy_all_for_user(u).unwrap();
                            assert_eq!(n, live.len(), "seed {seed}: destroy_all count");
                            destroyed.extend(live);
                        }
                        7 => clock.advance(Duration::from_secs(rng.below(15 * 60))),
                        8 => {
                            let by = Duration::from_secs(rng.below(30 * 60));
                            if rng.below(2) == 0 {
                                step_wall_back(&clock, by);
                            } else {
                                clock.set_wall(clock.wall() + by);
                            }
                        }
                        _ => {
                            let _ = store.count();
                        }
                    }
                }
                if fsync != Fsync::Always {
                    store.sync().unwrap();
                }
                drop(store);
                // Down for a while; the wall clock may step either way.
                clock.advance(Duration::from_secs(rng.below(20 * 60)));
                if rng.below(3) == 0 {
                    step_wall_back(&clock, Duration::from_secs(rng.below(40 * 60)));
                }
            }
        }
    });
}

/// Creators and `destroy_all_for_user` callers for the same user race
/// (plus `destroy` of random ids and readers): each `destroy_all_for_user`
/// that returns `Ok` leaves none of the sessions whose `create` returned
/// before it began live; nothing deadlocks; at the end the index and the
/// cache agree.
#[test]
fn destroy_all_for_user_races_creates_for_the_same_user() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    within(60, || {
        let clock = MockClock::new();
        let config = SessionConfig::default()
            .absolute_timeout(HOUR)
            .max_sessions(20_000)
            .clock(clock);
        let store: SessionStore<u32> = SessionStore::in_memory(config).unwrap();
        let created: Arc<Mutex<Vec<SessionId>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let creators: Vec<_> = (0..3u32)
            .map(|c| {
                let (store, created) = (store.clone(), created.clone());
                std::thread::spawn(move || {
                    for n in 0..6_000u32 {
                        let user = if n % 4 == 3 { "bob" } else { "ann" };
                        let id = store.create(user, c * 1_000_000 + n).unwrap();
                        if user == "ann" {
                            created.lock().unwrap().push(id);
                        }
                    }
                })
            })
            .collect();
        let destroyers: Vec<_> = (0..2)
            .map(|_| {
                let (store, created, done) = (store.clone(), created.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut early = 0usize;
                    let mut from = 0;
                    let mut last = false;
                    while !last {
                        last = done.load(Ordering::Acquire);
                        let before: Vec<SessionId> = created.lock().unwrap()[from..].to_vec();
                        store.destroy_all_for_user("ann").unwrap();
                        early += before
                            .iter()
                            .filter(|id| store.get(id.as_str()).is_some())
                            .count();
                        from += before.len();
                    }
                    early
                })
            })
            .collect();
        let other = {
            let (store, created, stop) = (store.clone(), created.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let id = created.lock().unwrap().get(i * 7).cloned();
                    i += 1;
                    if let Some(id) = id {
                        let _ = store.destroy(id.as_str()).unwrap();
                        if i.is_multiple_of(64) {
                            let _ = store.sessions_of("bob");
                        }
                    }
                }
            })
        };
        for h in creators {
            h.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let early: usize = destroyers.into_iter().map(|h| h.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        other.join().unwrap();
        assert_eq!(
            early, 0,
            "sessions created before a destroy_all_for_user outlived it"
        );
        // The index and the cache agree.
        let live_ann = created
            .lock()
            .unwrap()
            .iter()
            .filter(|id| store.get(id.as_str()).is_some())
            .count();
        assert_eq!(
            live_ann, 0,
            "the last destroy_all_for_user began after every create"
        );
        assert_eq!(store.count_for_user("ann"), live_ann);
        assert_eq!(store.count(), live_ann + store.count_for_user("bob"));
        store.destroy_all_for_user("ann").unwrap();
        assert_eq!(store.count_for_user("ann"), 0);
    });
}

/// The open cannot rewrite the log without a session that ended while the
/// process was down (sync fails); then, while it still fails and after it
/// heals, many threads create, destroy and `destroy_all_for_user` at once
/// (each destroy retries the rewrite). No deadlock, no panic, errors only
/// while the storage fails, and the ended session stays gone after a
/// step back and reopen.
#[test]
fn lapsed_rewrite_retried_by_racing_destroys() {
    use shardcache::adapters::SessionError;
    use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage};
    use std::io::ErrorKind;
    within(60, || {
        let storage = MemStorage::new();
        let clock = MockClock::new();
        let open = {
            let (storage, clock) = (storage.clone(), clock.clone());
            move || -> SessionStore<u32> {
                let log = FileLog::with_storage(storage.clone(), Fsync::Always);
                let config = SessionConfig::default()
                    .absolute_timeout(HOUR)
                    .clock(clock.clone());
                SessionStore::with_log(log, config).unwrap()
            }
        };
        let (ended, kept) = {
            let store = open();
            let ended = store.create("ann", 1).unwrap();
            clock.advance(30 * MINUTE);
            (ended, store.create("bob", 2).unwrap())
        };
        clock.advance(45 * MINUTE); // ann's ended while down, bob's not
        storage.inject(FaultOn::Sync, 0, ErrorKind::StorageFull, true);
        let store = open();
        assert!(store.get(ended.as_str()).is_none());
        assert!(store.get(kept.as_str()).is_some());
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..200u32 {
                        let r = match (t + i) % 3 {
                            0 => store.create("cy", i).map(drop),
                            1 => store.destroy("no-such-session").map(drop),
                            _ => store.destroy_all_for_user("cy").map(drop),
                        };
                        match r {
                            Ok(()) => ok += 1,
                            Err(SessionError::Persist(_)) => {}
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        storage.heal();
        for h in threads {
            h.join().unwrap();
        }
        // The first sync may report the failure the open swallowed.
        let _ = store.sync();
        store.sync().unwrap();
        assert!(!store.destroy(ended.as_str()).unwrap());
        assert!(store.get(kept.as_str()).is_some());
        drop(store);
        step_wall_back(&clock, 2 * HOUR);
        let store = open();
        assert!(
            store.get(ended.as_str()).is_none(),
            "ended session came back"
        );
    });
}

/// A key of the universe the KV attack uses: lengths from 1 to 40 bytes, so
/// that a RENAME or COPY changes the weight by the key's length.
fn kv_key(i: u64) -> String {
    let len = [1usize, 3, 8, 17, 40][(i % 5) as usize];
    let mut k = format!("k{i}");
    while k.len() < len {
        k.push('_');
    }
    k
}

/// One random KV run: SET (some with EX), MSET (keys given twice too),
/// RENAME, COPY [REPLACE], DEL, GETDEL and, when `appends`, APPEND, on a
/// store that is nearly full, checked after every command against a model
/// (a value the store holds is the model's; only an evicting policy may
/// drop keys, and only a successful command changes the model), with
/// `used_memory` never over `max_memory`, equal to the sum of the keys'
/// accounted sizes when no APPEND left spare capacity, and 0 once every key
/// is deleted.
fn kv_model_run(policy: shardcache::RedisPolicy, shards: usize, seed: u64, appends: bool) {
    use bytes::Bytes;
    use shardcache::kv::{KvStore, Reply, ENTRY_OVERHEAD};
    use shardcache::RedisPolicy;
    use std::collections::BTreeMap;
    const MAX: u64 = 6_000;
    const KEYS: u64 = 30;
    let evicting = policy != RedisPolicy::NoEviction;
    let store = KvStore::builder()
        .max_memory(MAX)
        .policy(shardcache::Policy::redis(policy))
        .shards(shards)
        .clock(MockClock::new())
        .build()
        .unwrap();
    let mut rng = Xorshift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ooms = 0u64;
    let ctx = |op: &str| format!("{policy:?} shards {shards} seed {seed} appends {appends}: {op}");
    for step in 0..1500 {
        let val = |rng: &mut Xorshift| {
            let len = [0usize, 5, 60, 300, 900][rng.below(5) as usize];
            vec![b'a' + (rng.below(26) as u8); len]
        };
        let a = kv_key(rng.below(KEYS));
        let b = kv_key(rng.below(KEYS));
        let op;
        let ok: bool;
        match rng.below(if appends { 9 } else { 8 }) {
            0 | 1 => {
                let v = val(&mut rng);
                let ex = rng.below(3) == 0;
                let vs = String::from_utf8(v.clone()).unwrap();
                let r = if ex {
                    store.execute(&["SET", &a, &vs, "EX", "1000"])
                } else {
                    store.execute(&["SET", &a, &vs])
                };
                op = format!("step {step} SET {a} <{}> ex={ex} -> {r:?}", v.len());
                ok = r == Reply::ok();
                if ok {
                    model.insert(a.clone(), v);
                }
            }
            2 => {
                let n = 1 + rng.below(5);
                let mut args = vec!["MSET".to_string()];
                let mut pairs = Vec::new();
                for _ in 0..n {
                    let k = kv_key(rng.below(KEYS));
                    let v = val(&mut rng);
                    args.push(k.clone());
                    args.push(String::from_utf8(v.clone()).unwrap());
                    pairs.push((k, v));
                }
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let r = store.execute(&argv);
                op = format!("step {step} MSET {n} pairs -> {r:?}");
                ok = r == Reply::ok();
                if ok {
                    for (k, v) in pairs {
                        model.insert(k, v);
                    }
                }
            }
            3 => {
                let r = store.execute(&["RENAME", &a, &b]);
                op = format!("step {step} RENAME {a} {b} -> {r:?}");
                ok = r == Reply::ok();
                if ok {
                    let v = model.remove(&a).expect("renamed a key the model lacks");
                    model.insert(b.clone(), v);
                } else if let Reply::Error(e) = &r {
                    if e.contains("no such key") {
                        assert!(!model.contains_key(&a), "{}", ctx(&op));
                    }
                }
            }
            4 => {
                let replace = rng.below(2) == 0;
                let r = if replace {
                    store.execute(&["COPY", &a, &b, "REPLACE"])
                } else {
                    store.execute(&["COPY", &a, &b])
                };
                op = format!("step {step} COPY {a} {b} replace={replace} -> {r:?}");
                ok = r == Reply::Integer(1);
                if ok {
                    let v = model.get(&a).expect("copied a key the model lacks").clone();
                    model.insert(b.clone(), v);
                }
            }
            5 => {
                let r = store.execute(&["DEL", &a, &b]);
                op = format!("step {step} DEL {a} {b} -> {r:?}");
                let had = usize::from(model.remove(&a).is_some())
                    + usize::from(model.remove(&b).is_some());
                assert_eq!(r, Reply::Integer(had as i64), "{}", ctx(&op));
                ok = true;
            }
            6 => {
                let r = store.execute(&["GETDEL", &a]);
                op = format!("step {step} GETDEL {a} -> {r:?}");
                let had = model.remove(&a);
                assert_eq!(r, Reply::from_option(had.map(Bytes::from)), "{}", ctx(&op));
                ok = true;
            }
            7 => {
                // Touch a key so the LRU order changes.
                let r = store.execute(&["GET", &a]);
                op = format!("step {step} GET {a}");
                assert_eq!(
                    r,
                    Reply::from_option(model.get(&a).cloned().map(Bytes::from)),
                    "{}",
                    ctx(&op)
                );
                ok = true;
            }
            _ => {
                let v = val(&mut rng);
                let r = store.execute(&["APPEND", &a, std::str::from_utf8(&v).unwrap()]);
                op = format!("step {step} APPEND {a} <{}> -> {r:?}", v.len());
                ok = matches!(r, Reply::Integer(_));
                if ok {
                    model.entry(a.clone()).or_default().extend_from_slice(&v);
                }
            }
        }
        if !ok && op.contains("OOM") {
            ooms += 1;
        }
        // Reconcile: the store holds only model keys, with the model's value;
        // a model key may be missing only under an evicting policy.
        let mut sum = 0u64;
        for i in 0..KEYS {
            let k = kv_key(i);
            let got = store.get(&k);
            match (model.get(&k), got) {
                (Some(want), Some(got)) => {
                    assert_eq!(&got[..], &want[..], "{}: value of {k}", ctx(&op));
                    sum += (k.len() + want.len()) as u64 + u64::from(ENTRY_OVERHEAD);
                }
                (Some(_), None) => {
                    assert!(evicting, "{}: {k} vanished under noeviction", ctx(&op));
                    model.remove(&k);
                }
                (None, Some(got)) => panic!(
                    "{}: {k} holds {} bytes the model lacks",
                    ctx(&op),
                    got.len()
                ),
                (None, None) => {}
            }
        }
        let used = store.stats().used_memory;
        assert!(used <= MAX, "{}: used_memory {used} over {MAX}", ctx(&op));
        if appends {
            assert!(
                used >= sum,
                "{}: used_memory {used} under the keys' {sum}",
                ctx(&op)
            );
        } else {
            assert_eq!(used, sum, "{}: used_memory", ctx(&op));
        }
    }
    // The attack reached a full store.
    let evicted = store.stats().evicted_keys;
    match policy {
        RedisPolicy::NoEviction => assert!(ooms > 0 && evicted == 0, "{}", ctx("full")),
        RedisPolicy::VolatileTtl | RedisPolicy::VolatileLru => {
            assert!(ooms > 0 || evicted > 0, "{}", ctx("never full"));
        }
        _ => assert!(evicted > 0, "{}", ctx("no eviction happened")),
    }
    for i in 0..KEYS {
        store.execute(&["DEL", &kv_key(i)]);
    }
    assert_eq!(
        store.stats().used_memory,
        0,
        "{}",
        ctx("after deleting every key")
    );
    assert_eq!(store.dbsize(), 0);
}

#[test]
fn kv_weights_and_content_follow_a_model_under_every_policy() {
    use shardcache::RedisPolicy;
    for policy in [
        RedisPolicy::AllKeysLru,
        RedisPolicy::NoEviction,
        RedisPolicy::VolatileTtl,
        RedisPolicy::VolatileLru,
        RedisPolicy::AllKeysRandom,
    ] {
        for shards in [1usize, 4, 16] {
            for seed in 1..=3u64 {
                for appends in [false, true] {
                    kv_model_run(policy, shards, seed, appends);
                }
            }
        }
    }
}

/// Every record of one FileLog, replayed from a fresh open of `path`.
fn replay_all(path: &Path, fingerprint: u64) -> Vec<Vec<u8>> {
    use shardcache::persist::{FileLog, Fsync, WriteAheadLog};
    let log = FileLog::open(path, Fsync::Always).unwrap();
    let mut out = Vec::new();
    let report = log
        .replay(fingerprint, &mut |r: &[u8]| {
            out.push(r.to_vec());
            Ok(())
        })
        .unwrap();
    let _ = report;
    out
}

/// A record: 8 bytes of (writer, sequence), then `len - 8` bytes derived
/// from them, so a replayed record's content can be checked.
fn log_record(writer: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(len.max(8));
    r.extend_from_slice(&u32::from(writer).to_le_bytes());
    r.extend_from_slice(&seq.to_le_bytes());
    let fill = writer.wrapping_mul(31).wrapping_add(seq as u8);
    r.resize(len.max(8), fill);
    r
}

/// Large records (up to 24 MiB, past the 4 MiB the emptied buffers keep)
/// mixed with small ones, appended by three threads at once under each
/// fsync policy; every record whose `wait` returned (and, after a final
/// `sync`, or the clean shutdown of a drop, every record) is replayed, whole, in each writer's order, after
/// a reopen; and again after a second round of appends to the reopened log.
#[test]
fn file_log_large_and_small_records_all_replay() {
    use shardcache::persist::{FileLog, Fsync, WriteAheadLog};
    use std::sync::Arc;
    const FP: u64 = 0x5EED_CAFE;
    let sizes = [
        9usize,
        24 << 20,
        1,
        100,
        (4 << 20) + 1,
        (1 << 20) - 3,
        12 << 20,
        17,
        5 << 20,
        0,
        3 << 20,
    ];
    within(120, move || {
        let dir = tempfile::tempdir().unwrap();
        for (n, fsync) in [Fsync::Always, Fsync::EverySecond, Fsync::Never]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("big{n}.log"));
            let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
            for round in 0..2u32 {
                let log = Arc::new(FileLog::open(&path, fsync).unwrap());
                let mut seen = 0;
                log.replay(FP, &mut |_: &[u8]| {
                    seen += 1;
                    Ok(())
                })
                .unwrap();
                assert_eq!(seen, expected.iter().map(Vec::len).sum::<usize>());
                let handles: Vec<_> = (0..3u8)
                    .map(|w| {
                        let log = log.clone();
                        std::thread::spawn(move || {
                            let mut mine = Vec::new();
                            for (i, &len) in sizes.iter().enumerate() {
                                // Writers take turns with the large ones.
                                let len = if i % 3 == usize::from(w) {
                                    len
                                } else {
                                    len % 4096
                                };
                                let seq = round * 1000 + i as u32;
                                let rec = log_record(w, seq, len);
                                let lsn = log.append(&rec).unwrap();
                                if i.is_multiple_of(2) {
                                    log.wait(lsn).unwrap();
                                }
                                mine.push(rec);
                            }
                            mine
                        })
                    })
                    .collect();
                for (w, h) in handles.into_iter().enumerate() {
                    expected[w].extend(h.join().unwrap());
                }
                // Round 1 relies on the clean shutdown of `drop` alone.
                if round == 0 {
                    log.sync().unwrap();
                }
                drop(log);
                let replayed = replay_all(&path, FP);
                let mut per_writer: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
                for r in replayed {
                    let w = u32::from_le_bytes(r[0..4].try_into().unwrap()) as usize;
                    per_writer[w].push(r);
                }
                for w in 0..3 {
                    assert_eq!(
                        per_writer[w].len(),
                        expected[w].len(),
                        "{fsync:?} round {round}: writer {w}'s record count"
                    );
                    for (got, want) in per_writer[w].iter().zip(&expected[w]) {
                        assert!(
                            got == want,
                            "{fsync:?} round {round}: writer {w}: a record differs"
                        );
                    }
                }
            }
        }
    });
}

/// A persistent cache of large values (5 to 12 MiB) and small ones, with
/// overwrites, removals and a log rewrite in the middle, under each fsync
/// policy: after a reopen it holds exactly what the model holds.
#[test]
fn persistent_cache_with_large_values_reopens_exactly() {
    use shardcache::persist::{FileLog, Fsync};
    use shardcache::Cache;
    use std::collections::BTreeMap;
    within(120, || {
        let dir = tempfile::tempdir().unwrap();
        for (n, fsync) in [Fsync::Always, Fsync::EverySecond, Fsync::Never]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("cache{n}.log"));
            let open = |path: &Path| {
                let log = FileLog::open(path, fsync).unwrap();
                let (cache, _report) = Cache::<String, Vec<u8>>::builder()
                    .build_persistent(log)
                    .unwrap();
                cache
            };
            let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut rng = Xorshift(0xABCD + n as u64);
            for round in 0..3 {
                let cache = open(&path);
                assert_eq!(cache.len(), model.len(), "{fsync:?} round {round}");
                for (k, v) in &model {
                    assert!(
                        cache.get(k).as_ref() == Some(v),
                        "{fsync:?} round {round}: {k}"
                    );
                }
                for step in 0..8 {
                    let k = format!("key{}", rng.below(6));
                    match rng.below(4) {
                        0 => {
                            cache.remove(&k);
                            model.remove(&k);
                        }
                        1 => {
                            let v = vec![step as u8; (rng.below(8) as usize + 5) << 20];
                            cache.insert(k.clone(), v.clone());
                            model.insert(k, v);
                        }
                        _ => {
                            let v = vec![step as u8 ^ 0x55; rng.below(300) as usize];
                            cache.insert(k.clone(), v.clone());
                            model.insert(k, v);
                        }
                    }
                    if step == 4 {
                        cache.rewrite_log().unwrap();
                    }
                }
                if round != 1 {
                    cache.sync().unwrap();
                }
            }
        }
    });
}

/// `max_sessions(8192)` (four shards) full of sessions that have ended;
/// four threads create 8,192 new ones while two readers keep reading the
/// ended ones (holding shard read locks) and a third calls `count()`. No
/// create is refused and every new session is still live at the end.
#[test]
fn sessions_created_concurrently_at_max_evict_only_ended_ones() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MAX: usize = 8192;
    within(60, || {
        let clock = MockClock::new();
        let store: SessionStore<u32> =
            SessionStore::in_memory(session_config(&clock, MAX as u64)).unwrap();
        let mut ended: Vec<SessionId> = (0..MAX)
            .map(|i| store.create("old", i as u32).unwrap())
            .collect();
        for round in 0..4 {
            clock.advance(Duration::from_secs(11));
            let ended_now = Arc::new(std::mem::take(&mut ended));
            let stop = Arc::new(AtomicBool::new(false));
            let readers: Vec<_> = (0..3usize)
                .map(|r| {
                    let (store, ids, stop) = (store.clone(), ended_now.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut i = r;
                        while !stop.load(Ordering::Relaxed) {
                            if r == 2 {
                                assert!(store.count() <= MAX);
                            } else {
                                assert!(store.get(ids[i % ids.len()].as_str()).is_none());
                            }
                            i += 7;
                        }
                    })
                })
                .collect();
            let creators: Vec<_> = (0..4usize)
                .map(|c| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        (0..MAX / 4)
                            .map(|i| store.create("new", (c * MAX + i) as u32).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let new: Vec<SessionId> = creators
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            stop.store(true, Ordering::Relaxed);
            for h in readers {
                h.join().unwrap();
            }
            let dead = new
                .iter()
                .filter(|id| store.get(id.as_str()).is_none())
                .count();
            assert_eq!(
                dead, 0,
                "round {round}: live sessions evicted while ended ones were held"
            );
            assert_eq!(store.count(), MAX);
            ended = new;
        }
    });
}

/// A flood of distinct keys (one check each, the clock creeping forward)
/// never tracks more than `max_keys`, and a flood of sessions never holds
/// more than `max_sessions`; once everything has ended, nothing is left.
#[test]
fn floods_of_distinct_keys_stay_bounded() {
    let clock = MockClock::new();
    let rl: RateLimiter<u64> = RateLimiter::builder()
        .clock(clock.clone())
        .max_keys(5000)
        .token_bucket(10, Duration::from_secs(1), 3)
        .unwrap();
    for k in 0..200_000u64 {
        let _ = rl.check(k);
        if k.is_multiple_of(7) {
            clock.advance(Duration::from_micros(900));
        }
        if k.is_multiple_of(1000) {
            assert!(rl.tracked_keys() <= 5000, "tracked {}", rl.tracked_keys());
        }
    }
    clock.advance(Duration::from_secs(2));
    rl.purge_idle();
    assert_eq!(rl.tracked_keys(), 0);

    let store: SessionStore<u32> = SessionStore::in_memory(session_config(&clock, 700)).unwrap();
    for i in 0..30_000u32 {
        let _ = store
            .create(if i.is_multiple_of(2) { "x" } else { "y" }, i)
            .unwrap();
        clock.advance(Duration::from_millis(1));
        if i.is_multiple_of(500) {
            assert!(store.count() <= 700);
        }
    }
    assert!(store.count_for_user("x") + store.count_for_user("y") <= 700);
    clock.advance(Duration::from_secs(11));
    assert_eq!(store.count(), 0);
    assert_eq!(store.count_for_user("x"), 0);
    assert!(store.sessions_of("y").is_empty());
}
