//! Each adapter's capacity is a promise about how many keys it keeps: a
//! rate limiter forgets a key's state (and so admits it afresh) only past
//! `max_keys` keys, a session store evicts a live session only past
//! `max_sessions`, a permission cache keeps up to `max_capacity` decisions.
//! Here exactly that many keys, hashed anywhere, are held.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::{
    PermissionCache, PermissionKey, RateLimiter, SessionConfig, SessionStore,
};
use shardcache::{MockClock, Policy};
use std::time::Duration;

/// `max_keys` keys, each limited: none may be admitted again within its
/// refill time, however the keys spread over the cache's shards.
#[test]
fn a_rate_limiter_keeps_every_key_up_to_max_keys() {
    for max in [1u64, 2, 100, 5_000, 100_000] {
        let clock = MockClock::new();
        let limiter: RateLimiter<u64> = RateLimiter::builder()
            .max_keys(max)
            .clock(clock.clone())
            .token_bucket(1, Duration::from_secs(3_600), 1)
            .unwrap();
        for key in 0..max {
            assert!(limiter.check(key).allowed, "key {key}: first check refused");
        }
        let readmitted = (0..max).filter(|&key| limiter.check(key).allowed).count();
        assert_eq!(
            readmitted, 0,
            "max_keys({max}): {readmitted} of {max} limited keys were admitted again \
             (their state was evicted with no more than max_keys keys in use)"
        );
    }
}

/// The same for the sliding window.
#[test]
fn a_sliding_window_keeps_every_key_up_to_max_keys() {
    let max = 50_000u64;
    let limiter: RateLimiter<u64> = RateLimiter::builder()
        .max_keys(max)
        .clock(MockClock::new())
        .sliding_window(1, Duration::from_secs(60))
        .unwrap();
    for key in 0..max {
        assert!(limiter.check(key).allowed);
    }
    let readmitted = (0..max).filter(|&key| limiter.check(key).allowed).count();
    assert_eq!(
        readmitted, 0,
        "{readmitted} of {max} keys admitted twice in one window"
    );
}

/// `max_sessions` sessions: every one stays live.
#[test]
fn a_session_store_keeps_every_session_up_to_max_sessions() {
    for max in [1u64, 3, 100, 20_000] {
        let store: SessionStore<u32> = SessionStore::in_memory(
            SessionConfig::default()
                .max_sessions(max)
                .clock(MockClock::new()),
        )
        .unwrap();
        let ids: Vec<_> = (0..max)
            .map(|i| store.create(&format!("user{i}"), 0).unwrap())
            .collect();
        let lost = ids
            .iter()
            .filter(|id| store.get(id.as_str()).is_none())
            .count();
        assert_eq!(
            lost, 0,
            "max_sessions({max}): {lost} of {max} live sessions were evicted"
        );
        assert_eq!(store.count(), max as usize);
    }
}

/// Past `max_keys`, from four threads at once: state stays bounded by
/// `max_keys`, and a fresh key is admitted (the least recently used state
/// makes room for it; nothing is refused for want of room).
#[test]
fn past_max_keys_state_stays_bounded_and_fresh_keys_pass() {
    let max = 20_000u64;
    let limiter: RateLimiter<u64> = RateLimiter::builder()
        .max_keys(max)
        .clock(MockClock::new())
        .token_bucket(1, Duration::from_secs(3_600), 1)
        .unwrap();
    let refused = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (limiter, refused) = (&limiter, &refused);
            s.spawn(move || {
                for i in 0..3 * max {
                    if !limiter.check(i * 4 + t).allowed {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(refused.into_inner(), 0, "fresh keys refused");
    assert!(
        limiter.tracked_keys() as u64 <= max,
        "{} keys tracked",
        limiter.tracked_keys()
    );
}

/// Past `max_sessions`, sessions are evicted to stay at it, and the per-user
/// counts follow: every user's count matches the sessions still live.
#[test]
fn past_max_sessions_the_counts_follow_the_evictions() {
    let max = 10_000u64;
    let store: SessionStore<u32> = SessionStore::in_memory(
        SessionConfig::default()
            .max_sessions(max)
            .clock(MockClock::new()),
    )
    .unwrap();
    let ids: Vec<_> = (0..2 * max)
        .map(|i| store.create(&format!("user{}", i % 7), 0).unwrap())
        .collect();
    assert_eq!(store.count(), max as usize);
    let live = ids
        .iter()
        .filter(|id| store.get(id.as_str()).is_some())
        .count();
    assert_eq!(live, max as usize);
    let per_user: usize = (0..7)
        .map(|u| store.count_for_user(&format!("user{u}")))
        .sum();
    assert_eq!(per_user, max as usize);
}

/// The extreme capacities build and work: `u64::MAX` (no bound), and 1
/// (a second key evicts the first, which then starts afresh, as documented).
#[test]
fn extreme_capacities_build_and_work() {
    let clock = MockClock::new();
    let limiter: RateLimiter<u64> = RateLimiter::builder()
        .max_keys(u64::MAX)
        .clock(clock.clone())
        .token_bucket(1, Duration::from_secs(60), 1)
        .unwrap();
    assert!(limiter.check(1u64).allowed);
    assert!(!limiter.check(1u64).allowed);
    let one: RateLimiter<u64> = RateLimiter::builder()
        .max_keys(1)
        .clock(clock.clone())
        .token_bucket(1, Duration::from_secs(60), 1)
        .unwrap();
    assert!(one.check(1u64).allowed);
    assert!(!one.check(1u64).allowed);
    assert!(one.check(2u64).allowed);
    assert_eq!(one.tracked_keys(), 1);
    assert!(one.check(1u64).allowed, "evicted, so afresh");
    let store: SessionStore<u32> = SessionStore::in_memory(
        SessionConfig::default()
            .max_sessions(u64::MAX)
            .clock(clock.clone()),
    )
    .unwrap();
    let id = store.create("ann", 1).unwrap();
    assert_eq!(store.get(id.as_str()).unwrap().data, 1);
}

/// `max_keys` keys checked over and over by four threads at once, in
/// different orders: each key is admitted exactly once (none loses its
/// state to a shard's share filling while another thread writes).
#[test]
fn max_keys_keys_racing_are_each_admitted_once() {
    let max = 16_384u64;
    let limiter: RateLimiter<u64> = RateLimiter::builder()
        .max_keys(max)
        .clock(MockClock::new())
        .token_bucket(1, Duration::from_secs(3_600), 1)
        .unwrap();
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (limiter, admitted) = (&limiter, &admitted);
            s.spawn(move || {
                for round in 0..3 {
                    for i in 0..max {
                        // A different walk per thread and round.
                        let key = (i * (2 * (t + round) + 1) + t) % max;
                        if limiter.check(key).allowed {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), max);
}

/// At `max_sessions`, four threads logging in at once: every login succeeds
/// (each evicts another session), and the store stays at its bound.
#[test]
fn logins_racing_at_max_sessions_all_succeed() {
    let max = 8_192u64;
    let store: SessionStore<u32> = SessionStore::in_memory(
        SessionConfig::default()
            .max_sessions(max)
            .clock(MockClock::new()),
    )
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..6_000 {
                    store.create(&format!("user{t}"), i).unwrap();
                }
            });
        }
    });
    assert_eq!(store.count(), max as usize);
    let per_user: usize = (0..4)
        .map(|t| store.count_for_user(&format!("user{t}")))
        .sum();
    assert_eq!(per_user, max as usize);
}

/// `max_capacity` decisions, with either policy: all stay cached, so a
/// second pass over them loads nothing.
#[test]
fn a_permission_cache_keeps_every_decision_up_to_max_capacity() {
    let max = 20_000u32;
    for (name, policy) in [("lru", Policy::lru()), ("tiny_lfu", Policy::default())] {
        let perms: PermissionCache<bool> = PermissionCache::builder()
            .max_capacity(u64::from(max))
            .policy(policy)
            .build()
            .unwrap();
        let key = |i: u32| PermissionKey::new("u", "doc", i.to_string(), "read");
        for i in 0..max {
            perms.check(&key(i), || true);
        }
        let loads = perms.stats().loads;
        for i in 0..max {
            perms.check(&key(i), || true);
        }
        let reloads = perms.stats().loads - loads;
        assert_eq!(
            reloads, 0,
            "{name}: {reloads} of {max} decisions were evicted"
        );
        assert_eq!(perms.len(), max as usize);
        perms.validate_index().unwrap();
    }
}

/// Past `max_capacity`, from four threads: the cache stays at its bound and
/// the revocation index follows every eviction.
#[test]
fn past_max_capacity_the_index_follows_the_evictions() {
    let max = 8_192u64;
    let perms: PermissionCache<u64> = PermissionCache::builder()
        .max_capacity(max)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let perms = &perms;
            s.spawn(move || {
                for i in 0..3 * max {
                    let key = PermissionKey::new(
                        format!("u{}", i % 97),
                        "doc",
                        (i * 4 + t).to_string(),
                        "read",
                    );
                    perms.check(&key, || i);
                }
            });
        }
    });
    assert!(
        perms.len() as u64 <= max,
        "{} decisions cached",
        perms.len()
    );
    perms.validate_index().unwrap();
    let dropped: usize = (0..97)
        .map(|u| perms.invalidate_subject(&format!("u{u}")))
        .sum();
    assert_eq!(perms.len(), 0);
    assert!(dropped as u64 <= max);
}

/// Sessions that have ended hold no place: with `max_sessions` live ones
/// and some ended ones spread over every shard, recently used (so the
/// least recently used is live), a new session takes an ended one's place
/// and no live session is evicted.
#[test]
fn ended_sessions_give_way_before_any_live_one() {
    let (live, ended) = (4_000usize, 400usize);
    let clock = MockClock::new();
    let config = SessionConfig::default()
        .max_sessions((live + ended) as u64)
        .absolute_timeout(Duration::from_secs(24 * 3600))
        .idle_timeout(Duration::from_secs(600))
        .clock(clock.clone());
    let store: SessionStore<u32> = SessionStore::in_memory(config).unwrap();
    let doomed: Vec<_> = (0..ended)
        .map(|i| store.create("doomed", i as u32).unwrap())
        .collect();
    clock.advance(Duration::from_secs(300));
    let kept: Vec<_> = (0..live)
        .map(|i| store.create("kept", i as u32).unwrap())
        .collect();
    clock.advance(Duration::from_secs(200));
    // Read last, so the least recently used sessions are the live ones.
    for id in &doomed {
        assert!(store.get(id.as_str()).is_some());
    }
    clock.advance(Duration::from_secs(101));
    let fresh: Vec<_> = (0..ended)
        .map(|i| store.create("fresh", i as u32).unwrap())
        .collect();
    let lost = kept
        .iter()
        .filter(|id| store.get(id.as_str()).is_none())
        .count();
    assert_eq!(
        lost, 0,
        "{lost} live sessions evicted while ended ones held room"
    );
    assert!(fresh.iter().all(|id| store.get(id.as_str()).is_some()));
}

/// The same for a rate limiter: keys whose state no longer matters give
/// way before a limited key's state is evicted.
#[test]
fn idle_rate_limit_state_gives_way_before_a_limited_key() {
    let (limited, idle) = (4_000u64, 400u64);
    let clock = MockClock::new();
    let limiter: RateLimiter<u64> = RateLimiter::builder()
        .max_keys(limited + idle)
        .clock(clock.clone())
        .token_bucket(1, Duration::from_secs(1), 10)
        .unwrap();
    for key in 0..limited {
        assert!(limiter.check_n(key, 10).unwrap().allowed);
    }
    clock.advance(Duration::from_secs(5));
    // One token each: their state matters for one second, and they are
    // the most recently used.
    for key in limited..limited + idle {
        assert!(limiter.check(key).allowed);
    }
    clock.advance(Duration::from_secs(2));
    for key in limited + idle..limited + 2 * idle {
        assert!(limiter.check(key).allowed);
    }
    // Each limited key has 7 of its 10 tokens back: a burst of 10 is refused
    // unless its state was evicted.
    let readmitted = (0..limited)
        .filter(|&key| limiter.check_n(key, 10).unwrap().allowed)
        .count();
    assert_eq!(readmitted, 0, "{readmitted} limited keys lost their state");
}
