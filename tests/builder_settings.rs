//! Builder settings at their limits: every combination either builds a
//! cache that works or returns a `BuildError`; none panics.

use shardcache::{BuildError, Cache, CacheBuilder, MockClock, Policy};
use std::time::Duration;

const DURATIONS: [Option<Duration>; 7] = [
    None,
    Some(Duration::ZERO),
    Some(Duration::from_nanos(1)),
    Some(Duration::from_micros(999)),
    Some(Duration::from_millis(1)),
    Some(Duration::from_secs(10 * 365 * 86_400)),
    Some(Duration::MAX),
];

fn exercise(cache: &Cache<u64, u64>, clock: &MockClock) {
    for k in 0..50 {
        cache.insert(k, k);
        let _ = cache.get(&k);
    }
    let _ = cache.get_or_insert_with(1_000, || 1);
    cache.insert_with_ttl(2_000, 2, Duration::MAX);
    cache.insert_with_ttl(2_001, 2, Duration::ZERO);
    clock.advance(Duration::from_secs(1));
    let _ = cache.get(&1);
    clock.advance(Duration::from_secs(u64::MAX / 4));
    let _ = cache.get(&1);
    cache.purge_expired();
    let _ = cache.len();
    let _ = cache.iter().count();
    cache.clear();
}

#[test]
fn every_combination_builds_or_errs_and_never_panics() {
    let capacities = [None, Some(0), Some(1), Some(2), Some(u64::MAX)];
    let shards = [
        None,
        Some(0),
        Some(1),
        Some(3),
        Some(1 << 16),
        Some(1 << 17),
    ];
    let weighers: [Option<u32>; 4] = [None, Some(0), Some(10), Some(u32::MAX)];
    let mut built = 0;
    let mut refused = 0;
    for cap in capacities {
        for sh in shards {
            for w in weighers {
                for (i, ttl) in DURATIONS.iter().enumerate() {
                    // TTI over a subset, to keep the run short.
                    let tti = DURATIONS[(i * 3) % DURATIONS.len()];
                    let clock = MockClock::new();
                    let mut b: CacheBuilder<u64, u64> = Cache::builder().clock(clock.clone());
                    if let Some(c) = cap {
                        b = b.max_capacity(c);
                    }
                    if let Some(s) = sh {
                        b = b.shards(s);
                    }
                    if let Some(w) = w {
                        b = b.weigher(move |_, _| w);
                    }
                    if let Some(t) = ttl {
                        b = b.time_to_live(*t);
                    }
                    if let Some(t) = tti {
                        b = b.time_to_idle(t);
                    }
                    let what =
                        format!("cap {cap:?} shards {sh:?} weight {w:?} ttl {ttl:?} tti {tti:?}");
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match b
                        .build()
                    {
                        Ok(cache) => {
                            exercise(&cache, &clock);
                            true
                        }
                        Err(_) => false,
                    }));
                    match result {
                        Ok(true) => built += 1,
                        Ok(false) => refused += 1,
                        Err(_) => panic!("panicked: {what}"),
                    }
                }
            }
        }
    }
    assert!(built > 0 && refused > 0);
}

#[test]
fn refresh_settings_at_their_limits_build_or_err() {
    let ok = |k: &u64| Ok::<_, std::io::Error>(*k);
    for ttl in DURATIONS {
        for after in DURATIONS {
            for stale in [
                None,
                Some(Duration::ZERO),
                Some(Duration::from_nanos(1)),
                Some(Duration::MAX),
            ] {
                for threads in [0usize, 1, 64, 65, usize::MAX] {
                    let clock = MockClock::new();
                    let mut b: CacheBuilder<u64, u64> = Cache::builder()
                        .clock(clock.clone())
                        .refresh_threads(threads)
                        .refresh_loader(ok);
                    if let Some(t) = ttl {
                        b = b.time_to_live(t);
                    }
                    if let Some(a) = after {
                        b = b.refresh_after(a);
                    }
                    if let Some(s) = stale {
                        b = b.serve_stale_for(s).stale_if_error_for(s);
                    }
                    let what =
                        format!("ttl {ttl:?} after {after:?} stale {stale:?} threads {threads}");
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        match b.build() {
                            Ok(cache) => {
                                for k in 0..5 {
                                    cache.insert(k, k);
                                }
                                clock.advance(Duration::from_secs(10 * 365 * 86_400));
                                for k in 0..5 {
                                    let _ = cache.get(&k);
                                }
                                true
                            }
                            Err(e) => {
                                assert!(
                                    matches!(
                                        e,
                                        BuildError::InvalidRefresh(_)
                                            | BuildError::ZeroDuration(_)
                                            | BuildError::DurationTooLong(_)
                                    ),
                                    "{what}: {e:?}"
                                );
                                false
                            }
                        }
                    }));
                    assert!(r.is_ok(), "panicked: {what}");
                }
            }
        }
    }
}

#[test]
fn an_entry_heavier_than_the_whole_capacity_is_refused_not_kept() {
    for policy in [Policy::tiny_lfu(), Policy::lru()] {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(5)
            .weigher(|_, v| *v as u32)
            .policy(policy)
            .build()
            .expect("valid");
        cache.insert(1, 3);
        cache.insert(2, 6);
        assert!(cache.weighted_size() <= 5, "{}", cache.weighted_size());
        cache.insert(3, u64::from(u32::MAX));
        assert!(cache.weighted_size() <= 5, "{}", cache.weighted_size());
        assert_eq!(cache.get(&3), None);
    }
}
