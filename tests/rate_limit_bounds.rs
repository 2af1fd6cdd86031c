//! The rate limiter's bound under many threads and clock steps: the token
//! bucket never admits more than `burst + elapsed / interval` in any span,
//! the sliding window never more than `limit` in any window.

use shardcache::adapters::RateLimiter;
use shardcache::MockClock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Duration;

/// Clock steps between phases, in nanoseconds: none, sub-interval,
/// sub-millisecond, several intervals, long idles.
const STEPS: [u64; 12] = [
    0,
    1,
    999_999,
    1_000_000,
    33_333_334,
    0,
    250_000_000,
    7,
    1_000_000_001,
    0,
    60_000_000_000,
    3,
];

/// Runs `phases` of `threads` x `per` checks of one key, stepping the clock
/// between phases; returns `(time, admitted)` per phase.
fn hammer(
    clock: &MockClock,
    check: &(dyn Fn() -> bool + Sync),
    threads: usize,
    per: usize,
    phases: usize,
) -> Vec<(u64, u64)> {
    let mut now = 0u64;
    let mut out = Vec::new();
    for p in 0..phases {
        let step = STEPS[p % STEPS.len()];
        clock.advance(Duration::from_nanos(step));
        now += step;
        let admitted = AtomicU64::new(0);
        let barrier = Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..per {
                        if check() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        out.push((now, admitted.into_inner()));
    }
    out
}

#[test]
fn the_token_bucket_never_admits_more_than_burst_plus_refill_in_any_span() {
    let clock = MockClock::new();
    let (rate, per, burst) = (30u32, Duration::from_secs(1), 5u32);
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(rate, per, burst)
        .expect("valid");
    let t = (per.as_nanos() as u64).div_ceil(u64::from(rate));
    let phases = hammer(&clock, &|| limiter.check("k").allowed, 6, 50, 48);
    for i in 0..phases.len() {
        let mut sum = 0;
        for j in i..phases.len() {
            sum += phases[j].1;
            let span = phases[j].0 - phases[i].0;
            let bound = u64::from(burst) + span / t;
            assert!(
                sum <= bound,
                "{sum} admitted over phases {i}..={j} ({span} ns), bound {bound}"
            );
        }
    }
    assert!(phases.iter().map(|p| p.1).sum::<u64>() > u64::from(burst));
}

#[test]
fn the_sliding_window_never_admits_more_than_its_limit_in_any_window() {
    let clock = MockClock::new();
    let (limit, window) = (7u32, Duration::from_millis(250));
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(limit, window)
        .expect("valid");
    let w = window.as_nanos() as u64;
    let phases = hammer(&clock, &|| limiter.check("k").allowed, 6, 50, 48);
    for i in 0..phases.len() {
        let mut sum = 0;
        for j in i..phases.len() {
            if phases[j].0 - phases[i].0 >= w {
                break;
            }
            sum += phases[j].1;
            assert!(sum <= u64::from(limit), "{sum} in one window ({i}..={j})");
        }
    }
}

#[test]
fn extreme_rates_build_and_hold() {
    let clock = MockClock::new();
    // One token per nanosecond, the largest burst.
    let fast: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(u32::MAX, Duration::from_nanos(1), u32::MAX)
        .expect("valid");
    let d = fast.check_n("k", u32::MAX).expect("within the burst");
    assert!(d.allowed);
    assert!(!fast.check("k").allowed);
    clock.advance(Duration::from_nanos(1));
    assert!(fast.check("k").allowed);
    // The slowest rate the limits allow.
    assert!(RateLimiter::<String>::builder()
        .token_bucket(1, Duration::MAX, 1)
        .is_err());
    assert!(RateLimiter::<String>::builder()
        .sliding_window(u32::MAX, Duration::MAX)
        .is_err());
}

/// Past the range of the cache's deadlines (about 34 years of the clock
/// after the limiter was built) a key's state could not be kept: the
/// limiter refuses rather than admitting every request as on a fresh key.
#[test]
fn past_the_deadline_range_the_limiter_fails_closed() {
    for far in [
        Duration::from_secs(40 * 365 * 86_400),
        Duration::from_secs(1 << 40),
        Duration::MAX,
    ] {
        let clock = MockClock::new();
        let window: RateLimiter = RateLimiter::builder()
            .clock(clock.clone())
            .sliding_window(3, Duration::from_secs(1))
            .expect("valid");
        let bucket: RateLimiter = RateLimiter::builder()
            .clock(clock.clone())
            .token_bucket(1, Duration::from_secs(1), 3)
            .expect("valid");
        assert!(window.check("k").allowed && bucket.check("k").allowed);
        clock.advance(far);
        let admitted = (0..100)
            .filter(|_| window.check("k").allowed)
            .count()
            .max((0..100).filter(|_| bucket.check("k").allowed).count());
        assert!(admitted <= 3, "{far:?} later: {admitted} of 100 admitted");
    }
}
