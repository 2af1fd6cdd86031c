#![allow(clippy::unwrap_used)]
//! Attacks on the adapters (`PermissionCache`, `SessionStore`,
//! `RateLimiter`) with inputs and schedules the other adapter tests do not
//! use: revocations racing `invalidate_all`, extreme TTLs and hostile keys,
//! wall clocks at their limits across restarts, and window edges hit by
//! many threads at once.

use shardcache::adapters::{
    PermissionCache, PermissionKey, RateLimiter, SessionConfig, SessionStore,
};
use shardcache::MockClock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- permissions

// A revocation that runs while `invalidate_all` is clearing the cache: the
// module docs promise that "a check that begins after an invalidation has
// returned never receives a decision loaded before it, from the cache or
// from a load in flight". `invalidate_all` used to reset the index under
// its lock but clear the cache after releasing it, so an
// `invalidate_subject` in between found nothing to remove, returned, and
// the decision loaded before it was still served.
#[test]
fn a_revoke_racing_invalidate_all_is_not_overridden_by_a_cached_decision() {
    let perms: PermissionCache<u64> = PermissionCache::builder()
        .max_capacity(200_000)
        .build()
        .unwrap();
    let victim = PermissionKey::new("victim", "doc", "1", "read");
    // The source: the decision is the version of the victim's grants.
    let source = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(2));
    // invalidate_all calls begun and finished, to tell whether one overlapped.
    let all_begun = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(AtomicU64::new(0));
    let apart = Arc::new(AtomicU64::new(0));

    // Thread 1: fills the cache (so a clear takes a while), then invalidate_all.
    let clearer = {
        let (perms, stop, start) = (perms.clone(), stop.clone(), start.clone());
        let (all_begun, all_done) = (all_begun.clone(), all_done.clone());
        thread::spawn(move || {
            start.wait();
            let t = Instant::now();
            let mut n = 0u64;
            while t.elapsed() < Duration::from_secs(8) {
                for i in 0..5_000u32 {
                    let k = PermissionKey::new(format!("u{i}"), "doc", i.to_string(), "read");
                    perms.insert(k, 0);
                }
                all_begun.fetch_add(1, Ordering::SeqCst);
                perms.invalidate_all();
                all_done.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            stop.store(true, Ordering::SeqCst);
            n
        })
    };
    // Thread 2: revokes in the source, invalidates the subject, checks.
    let revoker = {
        let (perms, stop, start, source, violations, rounds, victim) = (
            perms.clone(),
            stop.clone(),
            start.clone(),
            source.clone(),
            violations.clone(),
            rounds.clone(),
            victim.clone(),
        );
        let (all_begun, all_done, apart) = (all_begun.clone(), all_done.clone(), apart.clone());
        thread::spawn(move || {
            start.wait();
            let mut first = None;
            while !stop.load(Ordering::SeqCst) {
                // Make sure the victim's current decision is cached.
                let _ = perms.check(&victim, || source.load(Ordering::SeqCst));
                let before = (
                    all_begun.load(Ordering::SeqCst),
                    all_done.load(Ordering::SeqCst),
                );
                // Revoke: the source changes, then the cache is told.
                let v = source.fetch_add(1, Ordering::SeqCst) + 1;
                perms.invalidate_subject("victim");
                // A check that begins after the revoke returned.
                let got = perms.check(&victim, || source.load(Ordering::SeqCst));
                if got < v {
                    violations.fetch_add(1, Ordering::SeqCst);
                    let after = (
                        all_begun.load(Ordering::SeqCst),
                        all_done.load(Ordering::SeqCst),
                    );
                    // No invalidate_all ran at any moment of this round.
                    if before.0 == before.1 && before == after {
                        apart.fetch_add(1, Ordering::SeqCst);
                    }
                    first.get_or_insert((got, v, before, after, perms.validate_index()));
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            first
        })
    };
    let clears = clearer.join().unwrap();
    let first = revoker.join().unwrap();
    let n = violations.load(Ordering::SeqCst);
    eprintln!(
        "{} revokes, {clears} invalidate_all calls, {n} checks served a revoked decision \
         ({} of them in rounds no invalidate_all overlapped); first: {first:?}",
        rounds.load(Ordering::Relaxed),
        apart.load(Ordering::SeqCst)
    );
    assert_eq!(
        n, 0,
        "a check after a completed revoke got a pre-revoke decision"
    );
}

/// Stale-if-error with the longest TTL and window (TTL + window past the
/// cache's own maximum): builds, caches, serves, revokes.
#[test]
fn permission_extreme_ttls_and_hostile_keys() {
    let clock = MockClock::new();
    let max = Duration::from_secs(10 * 365 * 86_400);
    let perms: PermissionCache<bool> = PermissionCache::builder()
        .ttl(max)
        .stale_allow_if_error(max, |d: &bool| *d)
        .clock(clock.clone())
        .build()
        .unwrap();
    let keys = [
        PermissionKey::new("", "", "", ""),
        PermissionKey::new("a", "", "", ""),
        PermissionKey::new("", "a", "", ""),
        PermissionKey::new("", "", "a", ""),
        PermissionKey::new("", "", "", "a"),
        PermissionKey::new("ключ🔑", "\u{0}", "\u{ffff}", "x".repeat(1 << 20)),
    ];
    for k in &keys {
        assert!(perms.check(k, || true));
        assert!(perms.check(k, || unreachable!("cached")), "{k:?}");
    }
    assert_eq!(perms.len(), keys.len());
    clock.advance(max - Duration::from_secs(1));
    assert!(perms.check(&keys[0], || unreachable!("still fresh")));
    clock.advance(Duration::from_secs(2));
    // Past the TTL: loads; a failing load gets the kept allow.
    assert_eq!(
        perms.try_check(&keys[1], || Err::<bool, _>("down")),
        Ok(true)
    );
    assert_eq!(perms.invalidate_subject("a"), 1);
    assert!(perms
        .try_check(&keys[1], || Err::<bool, _>("down"))
        .is_err());
    assert_eq!(perms.invalidate_subject(""), 4);
    assert_eq!(perms.invalidate_resource("\u{0}", "\u{ffff}"), 1);
    assert_eq!(perms.len(), 0);
}

// ------------------------------------------------------------------ sessions

#[test]
fn session_idle_and_absolute_deadlines_at_the_exact_millisecond() {
    let clock = MockClock::new();
    let idle = Duration::from_millis(1000);
    let store: SessionStore<u32> = SessionStore::in_memory(
        SessionConfig::default()
            .absolute_timeout(Duration::from_millis(2500))
            .idle_timeout(idle)
            .clock(clock.clone()),
    )
    .unwrap();
    let id = store.create("ann", 1).unwrap();
    clock.advance(Duration::from_millis(999));
    assert!(
        store.get(id.as_str()).is_some(),
        "1 ms before the idle deadline"
    );
    assert!(store.touch(id.as_str()).unwrap());
    clock.advance(Duration::from_millis(999));
    assert!(store.touch(id.as_str()).unwrap());
    clock.advance(Duration::from_millis(501)); // 2499 ms
    assert!(
        store.get(id.as_str()).is_some(),
        "1 ms before the absolute deadline"
    );
    clock.advance(Duration::from_millis(1)); // 2500 ms
    assert!(store.get(id.as_str()).is_none(), "at the absolute deadline");
    assert!(!store.touch(id.as_str()).unwrap());
    assert_eq!(store.count_for_user("ann"), 0);

    let id = store.create("bob", 2).unwrap();
    clock.advance(idle);
    assert!(store.get(id.as_str()).is_none(), "at the idle deadline");
    assert!(!store.update(id.as_str(), 3).unwrap());
    assert_eq!(store.count(), 0);
}

#[test]
fn session_hostile_inputs() {
    let clock = MockClock::new();
    let store: SessionStore<Vec<u8>> =
        SessionStore::in_memory(SessionConfig::default().clock(clock.clone())).unwrap();
    for id in [
        "",
        " ",
        "\u{0}",
        "ключ🔑",
        &"f".repeat(32),
        &"x".repeat(1 << 20),
    ] {
        assert!(store.get(id).is_none());
        assert!(!store.touch(id).unwrap());
        assert!(!store.update(id, vec![]).unwrap());
        assert!(!store.destroy(id).unwrap());
    }
    let huge_user = "u".repeat(1 << 20);
    for user in ["", "\u{0}", "ключ🔑", huge_user.as_str()] {
        let id = store.create(user, vec![7; 1 << 16]).unwrap();
        assert_eq!(store.get(id.as_str()).unwrap().user, user);
        assert_eq!(store.count_for_user(user), 1);
        assert_eq!(store.destroy_all_for_user(user).unwrap(), 1);
        assert!(store.get(id.as_str()).is_none());
    }
    // Bad settings are errors, not panics.
    for cfg in [
        SessionConfig::default().absolute_timeout(Duration::ZERO),
        SessionConfig::default().absolute_timeout(Duration::MAX),
        SessionConfig::default().idle_timeout(Duration::MAX),
        SessionConfig::default().idle_timeout(Duration::ZERO),
        SessionConfig::default().max_sessions(0),
    ] {
        assert!(SessionStore::<u8>::in_memory(cfg).is_err());
    }
}

/// Wall clocks at the ends of their range, in memory and persisted, with a
/// restart: no panic, and sessions keep their length.
#[test]
fn session_extreme_wall_clocks_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    for (i, wall) in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(4_102_444_800), // 2100
        Duration::from_secs(u64::MAX / 1_000_000_000 - 3600 * 24 * 400), // ~2554
    ]
    .into_iter()
    .enumerate()
    {
        let clock = MockClock::new();
        clock.set_wall(wall);
        let path = dir.path().join(format!("s{i}.log"));
        let cfg = || {
            SessionConfig::default()
                .absolute_timeout(Duration::from_secs(3600))
                .idle_timeout(Duration::from_secs(600))
                .clock(clock.clone())
        };
        let id = {
            let store: SessionStore<String> = SessionStore::open(&path, cfg()).unwrap();
            let id = store.create("ann", "x".into()).unwrap();
            let s = store.get(id.as_str()).unwrap();
            assert_eq!(
                s.expires_at_ms - s.created_at_ms,
                3_600_000,
                "wall {wall:?}"
            );
            clock.advance(Duration::from_secs(300));
            assert!(store.touch(id.as_str()).unwrap());
            id
        };
        clock.advance(Duration::from_secs(500));
        let store: SessionStore<String> = SessionStore::open(&path, cfg()).unwrap();
        assert!(
            store.get(id.as_str()).is_some(),
            "wall {wall:?}: touched 500 s ago, idle 600 s"
        );
        clock.advance(Duration::from_secs(101));
        assert!(
            store.get(id.as_str()).is_none(),
            "wall {wall:?}: idle for 601 s"
        );
    }
}

/// Persisted sessions with large data, many users and a restart.
#[test]
fn session_large_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    let big = vec![0xabu8; 8 << 20];
    let (id, ids) = {
        let store: SessionStore<Vec<u8>> =
            SessionStore::open(&path, SessionConfig::default()).unwrap();
        let id = store.create("big", big.clone()).unwrap();
        let ids: Vec<_> = (0..2000)
            .map(|i| {
                store
                    .create(&format!("user{}", i % 50), vec![i as u8])
                    .unwrap()
            })
            .collect();
        (id, ids)
    };
    let store: SessionStore<Vec<u8>> = SessionStore::open(&path, SessionConfig::default()).unwrap();
    assert_eq!(store.get(id.as_str()).unwrap().data, big);
    assert_eq!(store.count(), 2001);
    assert_eq!(store.count_for_user("user7"), 40);
    assert_eq!(store.destroy_all_for_user("user7").unwrap(), 40);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.get(id.as_str()).is_some(), i % 50 != 7);
    }
}

/// Creates and destroys racing on many threads at a tiny capacity: the
/// per-user counts never exceed what is live, and nothing panics.
#[test]
fn session_capacity_pressure_with_racing_destroys() {
    let store: SessionStore<u32> =
        SessionStore::in_memory(SessionConfig::default().max_sessions(8)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..5_000u32 {
                    let user = format!("u{}", i % 3);
                    let _ = store.create(&user, i);
                    if i % 7 == t {
                        let _ = store.destroy_all_for_user(&user);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: usize = (0..3).map(|u| store.count_for_user(&format!("u{u}"))).sum();
    assert!(store.count() <= 8, "count {}", store.count());
    assert_eq!(total, store.count());
}

// --------------------------------------------------------------- rate limits

#[test]
fn rate_limits_at_the_edges() {
    let clock = MockClock::new();
    // limit 1: admissions exactly one window apart are both allowed, and
    // none in between.
    let w: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(1, Duration::from_millis(100))
        .unwrap();
    assert!(w.check("k").allowed);
    clock.advance(Duration::from_nanos(99_999_999));
    assert!(!w.check("k").allowed);
    clock.advance(Duration::from_nanos(1));
    assert!(w.check("k").allowed, "exactly one window later");
    // u32::MAX limit, one check of all of it, then nothing.
    let big: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(u32::MAX, Duration::from_secs(1))
        .unwrap();
    assert!(big.check_n("k", u32::MAX).unwrap().allowed);
    assert!(!big.check("k").allowed);
    assert!(big.check_n("k", 0).unwrap().allowed);
    clock.advance(Duration::from_secs(1));
    assert!(big.check_n("k", u32::MAX).unwrap().allowed);
    // Token bucket: the extremes.
    let tb: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(u32::MAX, Duration::from_nanos(1), u32::MAX)
        .unwrap();
    assert!(tb.check_n("k", u32::MAX).unwrap().allowed);
    assert!(!tb.check("k").allowed);
    let one: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(1, Duration::from_secs(3600), 1)
        .unwrap();
    assert!(one.check("").allowed);
    assert!(!one.check("").allowed);
    assert!(one.check("ключ🔑").allowed);
    assert!(one.check("x".repeat(1 << 20)).allowed);
    assert!(!one.check("x".repeat(1 << 20)).allowed);
    clock.advance(Duration::from_secs(3600));
    assert!(one.check("").allowed);
}

/// Eight threads racing on one key of a sliding window while the clock
/// jumps by exactly one window at a time: never more than the limit per
/// window.
#[test]
fn sliding_window_races_across_exact_window_edges() {
    let clock = MockClock::new();
    let limit = 5u32;
    let window = Duration::from_millis(10);
    let w: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(limit, window)
        .unwrap();
    for round in 0..300 {
        let admitted = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (w, admitted, barrier) = (w.clone(), admitted.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..4 {
                        if w.check("hot").allowed {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let n = admitted.load(Ordering::SeqCst);
        assert_eq!(n, u64::from(limit), "round {round}");
        clock.advance(window);
    }
}
