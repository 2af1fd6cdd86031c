//! Hostile settings at the edges of the core cache and the adapters: a
//! clock whose origin is far away, a test clock pushed to its end, weights
//! that outgrow a shard, a `volatile-*` policy whose newest entry is gone,
//! rates that do not divide their period, sub-millisecond timeouts.

use shardcache::adapters::{RateLimiter, SessionConfig, SessionStore};
use shardcache::{Cache, Clock, Decision, MockClock, Policy, RedisPolicy, Ttl};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock whose monotonic origin is the Unix epoch (the trait lets a
/// clock choose any origin): over 2^40 ms away.
struct EpochClock;

impl Clock for EpochClock {
    fn monotonic(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
    }
    fn wall(&self) -> Duration {
        self.monotonic()
    }
}

#[test]
fn a_clock_with_a_far_origin_keeps_ttls() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .time_to_live(Duration::from_secs(300))
        .clock(EpochClock)
        .build()
        .expect("valid");
    cache.insert(1, 1);
    cache.insert_with_ttl(2, 2, Duration::from_secs(60));
    assert_eq!((cache.get(&1), cache.get(&2)), (Some(1), Some(2)));

    // The rate limiter fails closed with it, and a session lives.
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(EpochClock)
        .token_bucket(1, Duration::from_secs(60), 1)
        .expect("valid");
    let admitted = (0..100).filter(|_| limiter.check("k").allowed).count();
    assert_eq!(admitted, 1);
    let store: SessionStore<u32> =
        SessionStore::in_memory(SessionConfig::default().clock(EpochClock)).expect("valid");
    let id = store.create("a", 1).expect("created");
    assert!(store.get(id.as_str()).is_some());
}

#[test]
fn a_test_clock_pushed_to_its_end_never_goes_back() {
    let clock = MockClock::new();
    clock.advance(Duration::from_secs(10));
    let before = clock.monotonic();
    clock.advance(Duration::MAX);
    assert!(clock.monotonic() >= before);
    // A limiter built there still limits: its times count from its start.
    let clock = MockClock::new();
    clock.advance(Duration::from_nanos(u64::MAX - 1_000));
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(1, Duration::from_micros(1), 1)
        .expect("valid");
    assert_eq!((0..100).filter(|_| limiter.check("k").allowed).count(), 1);
}

/// The policies that evict only keys with an expiry, falling back on any.
const VOLATILE: [RedisPolicy; 4] = [
    RedisPolicy::VolatileLru,
    RedisPolicy::VolatileLfu,
    RedisPolicy::VolatileTtl,
    RedisPolicy::VolatileRandom,
];

#[test]
fn a_volatile_policy_keeps_the_capacity_after_its_newest_entry_left() {
    for policy in VOLATILE {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(10)
            .shards(1)
            .policy(Policy::redis(policy))
            .weigher(|_, v: &u64| *v as u32)
            .build()
            .expect("valid");
        cache.insert(1, 3);
        cache.insert(2, 3);
        cache.insert(3, 3);
        cache.remove(&3);
        // Grows key 1 by 5: 11 > 10, with no entry that has a deadline.
        cache.insert(1, 8);
        assert!(cache.weighted_size() <= 10, "{policy:?}");
    }
}

#[test]
fn a_replacement_heavier_than_the_shard_is_refused_and_evicts_nothing() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .weigher(|_, v: &u64| *v as u32)
        .build()
        .expect("valid");
    for k in 0..50 {
        cache.insert(k, 1);
    }
    assert!(cache.try_insert(1000, 101).is_err());
    assert!(cache.try_insert(7, 101).is_err());
    assert!(cache
        .compute(7, |_| (Decision::Put(101, Ttl::Keep), ()))
        .is_err());
    assert_eq!(cache.len(), 50);
    assert_eq!(cache.get(&7), Some(1));
}

#[test]
fn a_token_bucket_never_refills_faster_than_its_rate() {
    // 2 tokens per 3 ns, burst 1: in 3000 ns at most 1 + 2000 admissions.
    let clock = MockClock::new();
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(2, Duration::from_nanos(3), 1)
        .expect("valid");
    let mut admitted = 0;
    for _ in 0..3000 {
        clock.advance(Duration::from_nanos(1));
        admitted += u32::from(limiter.check("k").allowed);
    }
    // The time per token is rounded up to whole nanoseconds (2 ns here):
    // never faster than the rate, slower only where `per / rate` is a few
    // nanoseconds.
    assert!(admitted <= 2001, "{admitted}");
}

#[test]
fn a_sub_millisecond_session_timeout_does_not_end_the_session_at_birth() {
    let clock = MockClock::new();
    let store = SessionStore::<u32>::in_memory(
        SessionConfig::default()
            .absolute_timeout(Duration::from_micros(500))
            .clock(clock.clone()),
    )
    .expect("valid");
    let id = store.create("a", 1).expect("created");
    assert!(store.get(id.as_str()).is_some());
    clock.advance(Duration::from_millis(1));
    assert!(store.get(id.as_str()).is_none());
}

#[test]
fn a_loader_that_asks_for_its_own_key_panics_instead_of_waiting_forever() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_or_insert_with(1, || cache.get_or_insert_with(1, || 5) + 1)
    }));
    let message = outcome.expect_err("a panic, not a hang");
    let text = message
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| message.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(text.contains("the key it is loading"), "{text}");
    // The key is not left loading; other keys from a loader are fine.
    assert_eq!(cache.get_or_insert_with(1, || 7), 7);
    assert_eq!(
        cache.get_or_insert_with(2, || cache.get_or_insert_with(3, || 4) + 1),
        5
    );
}

#[test]
fn a_listener_that_panics_costs_no_other_removal_its_notice() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    for shards in [1, 8] {
        let heard = Arc::new(AtomicUsize::new(0));
        let h = heard.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1000)
            .shards(shards)
            .eviction_listener(move |k: u64, _v: u64, _cause| {
                h.fetch_add(1, Ordering::SeqCst);
                assert!(k != 3, "a listener that panics on key 3");
            })
            .build()
            .expect("valid");
        for k in 0..200 {
            cache.insert(k, k);
        }
        let cleared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.clear()));
        assert!(cleared.is_err(), "the listener's panic goes on");
        assert_eq!(cache.len(), 0, "{shards} shards: every shard cleared");
        assert_eq!(heard.load(Ordering::SeqCst), 200, "every removal heard");
    }
}

#[test]
fn a_closure_that_panics_costs_no_removal_its_notice() {
    use shardcache::RemovalCause;
    use std::sync::{Arc, Mutex};
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1000)
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |k: u64, _v: u64, cause| h.lock().expect("log").push((k, cause)))
        .build()
        .expect("valid");
    cache.insert_with_ttl(1, 1, Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    // The lookup removes the expired entry, then the closure panics.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.compute(1, |_| -> (Decision<u64>, ()) { panic!("closure") })
    }));
    assert!(r.is_err());
    assert_eq!(*heard.lock().expect("log"), [(1, RemovalCause::Expired)]);

    heard.lock().expect("log").clear();
    for k in 10..20 {
        cache.insert(k, k);
    }
    let mut calls = 0;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.retain(|_, _| {
            calls += 1;
            assert!(calls < 6, "a predicate that panics on its 6th call");
            false
        })
    }));
    assert!(r.is_err());
    assert_eq!(cache.len(), 5, "five removed before the panic");
    assert_eq!(heard.lock().expect("log").len(), 5, "and all five heard");
}

/// Runs `get_or_insert_with(1, ..)` on another thread with a loader that
/// returns `loaded` only once `during` (run on this thread while the loader
/// is inside) has returned. Gives back what the load returned.
fn load_around(
    cache: &Cache<u64, &'static str>,
    loaded: &'static str,
    during: impl FnOnce(),
) -> &'static str {
    use std::sync::mpsc::channel;
    let (inside, started) = channel();
    let (release, go) = channel::<()>();
    let loader = {
        let cache = cache.clone();
        std::thread::spawn(move || {
            cache.get_or_insert_with(1, move || {
                inside.send(()).expect("test waits");
                go.recv().expect("test releases");
                loaded
            })
        })
    };
    started.recv().expect("loader started");
    during();
    release.send(()).expect("loader waits");
    loader.join().expect("loader returns")
}

#[test]
fn a_load_overtaken_by_an_insert_and_a_remove_does_not_bring_back_its_value() {
    let cache: Cache<u64, &str> = Cache::new(100);
    let returned = load_around(&cache, "old", || {
        cache.insert(1, "new");
        assert_eq!(cache.remove(&1), Some("new"));
    });
    // The caller may have the value it loaded; the cache must not.
    assert_eq!(returned, "old");
    assert_eq!(cache.get(&1), None, "the removal came after the load began");
}

#[test]
fn a_load_overtaken_by_an_insert_does_not_overwrite_it() {
    let cache: Cache<u64, &str> = Cache::new(100);
    load_around(&cache, "old", || cache.insert(1, "new"));
    assert_eq!(cache.get(&1), Some("new"));
}

#[test]
fn a_load_overtaken_by_a_remove_or_a_clear_is_not_stored() {
    let cache: Cache<u64, &str> = Cache::new(100);
    // Invalidating a key that is being loaded (and so is absent).
    load_around(&cache, "old", || assert_eq!(cache.remove(&1), None));
    assert_eq!(cache.get(&1), None);
    load_around(&cache, "old", || cache.clear());
    assert_eq!(cache.get(&1), None);
    load_around(&cache, "old", || {
        cache.insert(1, "new");
        cache.invalidate_if(|_, v| *v == "new");
    });
    assert_eq!(cache.get(&1), None);
    // A load nothing overtook is stored as before.
    load_around(&cache, "loaded", || cache.insert(2, "other key"));
    assert_eq!(cache.get(&1), Some("loaded"));
}

/// A load overtaken by a write, whose own store the failed log then
/// refuses: its waiters look again (and find the write) rather than being
/// handed the overtaken value as if it had been stored.
#[test]
fn an_overtaken_load_whose_store_the_log_refuses_is_not_handed_on() {
    use shardcache::persist::{FileLog, Fsync, MemStorage};
    use std::sync::mpsc::channel;
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    let cache: Cache<u64, String> = Cache::builder()
        .max_capacity(100)
        .build_persistent(log)
        .expect("opens")
        .0;
    let (inside, started) = channel();
    let (release, go) = channel::<()>();
    let leader = {
        let cache = cache.clone();
        std::thread::spawn(move || {
            cache.get_or_insert_with(1, move || {
                inside.send(()).expect("test waits");
                go.recv().expect("test releases");
                "old".to_string()
            })
        })
    };
    started.recv().expect("loader started");
    let misses = cache.stats().misses;
    let waiter = {
        let cache = cache.clone();
        std::thread::spawn(move || cache.get_or_insert_with(1, || "fresh".to_string()))
    };
    while cache.stats().misses == misses {
        std::thread::yield_now();
    }
    // Give the waiter time to wait on the load; the assertions below hold
    // whether or not it did.
    std::thread::sleep(Duration::from_millis(20));
    cache
        .durably(|| cache.insert(1, "new".to_string()))
        .expect("durable before the failure");
    storage.fail_after(0);
    assert!(cache.durably(|| cache.insert(2, "x".to_string())).is_err());
    release.send(()).expect("loader waits");
    assert_eq!(leader.join().expect("leader"), "old");
    assert_eq!(waiter.join().expect("waiter"), "new");
    assert_eq!(cache.get(&1).as_deref(), Some("new"));
}

#[test]
fn a_caller_arriving_after_a_remove_is_not_handed_an_older_load() {
    let cache: Cache<u64, &str> = Cache::new(100);
    let mut later = None;
    let first = load_around(&cache, "old", || {
        cache.insert(1, "new");
        cache.remove(&1);
        // A caller that starts after the removal, while the old load still
        // runs: it may wait for that load, but must not be handed its value.
        let misses = cache.stats().misses;
        let c = cache.clone();
        later = Some(std::thread::spawn(move || {
            c.get_or_insert_with(1, || "fresh")
        }));
        while cache.stats().misses == misses {
            std::thread::yield_now();
        }
        // Give it time to reach the load and wait on it; the assertions
        // below hold whether or not it did.
        std::thread::sleep(Duration::from_millis(20));
    });
    assert_eq!(first, "old");
    let later = later.expect("spawned").join().expect("returns");
    assert_eq!(later, "fresh");
    assert_eq!(cache.get(&1), Some("fresh"));
}

/// `volatile-*` with no key that has an expiry evicts a key picked at
/// random, the newest last: the keys written first do not stay for good
/// while each new key pushes out the one written just before it.
#[test]
fn a_volatile_policy_without_expiring_keys_evicts_any_key_not_the_newest() {
    for policy in VOLATILE {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .shards(1)
            .policy(Policy::redis(policy))
            .build()
            .expect("valid");
        for k in 0..2_000 {
            cache.insert(k, k);
        }
        let first_half = (0..1_000).filter(|k| cache.contains_key(k)).count();
        let last_ten = (1_990..2_000).filter(|k| cache.contains_key(k)).count();
        assert!(
            first_half <= 5,
            "{policy:?}: {first_half} of the first 1,000 keys still cached"
        );
        assert!(
            last_ten >= 5,
            "{policy:?}: {last_ten} of the last 10 keys cached"
        );
    }
}
