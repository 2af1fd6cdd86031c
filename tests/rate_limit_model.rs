//! The rate limiter against a reference model of what its docs promise, on
//! a mock clock stepped by nanoseconds, milliseconds and whole windows:
//! every decision (admitted, remaining, retry-after) matches, and a key's
//! state is never reclaimed while it still matters.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use shardcache::adapters::{RateLimitError, RateLimiter};
use shardcache::MockClock;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const KEYS: u64 = 3;

#[derive(Debug, Clone)]
enum Op {
    Check(u64, u32),
    Advance(u64),
    Reset(u64),
    Purge,
}

/// Steps around the millisecond the cache's deadlines are kept in, and
/// around the windows and refill times below.
fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1),
        Just(999_999),
        Just(1_000_000),
        Just(1_000_001),
        Just(33_333_333),
        Just(99_999_999),
        Just(100_000_000),
        Just(250_000_000),
        Just(999_999_999),
        Just(1_000_000_000),
        0u64..3_000_000_000,
    ]
}

fn op(limit: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS, 0..=limit + 1).prop_map(|(k, n)| Op::Check(k, n)),
        4 => step().prop_map(Op::Advance),
        1 => (0..KEYS).prop_map(Op::Reset),
        1 => Just(Op::Purge),
    ]
}

/// The documented sliding window: at most `limit` admissions in
/// `(now - window, now]`.
#[derive(Default)]
struct WindowModel {
    log: HashMap<u64, VecDeque<(u64, u32)>>,
}

impl WindowModel {
    fn check(&mut self, key: u64, n: u32, now: u64, limit: u32, window: u64) -> (bool, u32, u64) {
        let log = self.log.entry(key).or_default();
        log.retain(|&(at, _)| at + window > now);
        let total: u64 = log.iter().map(|&(_, c)| u64::from(c)).sum();
        let limit = u64::from(limit);
        if total + u64::from(n) <= limit {
            if n > 0 {
                log.push_back((now, n));
            }
            (true, (limit - total - u64::from(n)) as u32, 0)
        } else {
            let mut excess = total + u64::from(n) - limit;
            let mut frees_at = now;
            for &(at, c) in log.iter() {
                frees_at = at + window;
                excess = excess.saturating_sub(u64::from(c));
                if excess == 0 {
                    break;
                }
            }
            (false, (limit - total) as u32, frees_at - now)
        }
    }

    /// Keys whose state still decides something at `now`.
    fn mattering(&self, now: u64, window: u64) -> usize {
        self.log
            .values()
            .filter(|l| l.iter().any(|&(at, _)| at + window > now))
            .count()
    }
}

/// The documented token bucket, as GCRA: one token every `t` nanoseconds,
/// `burst` at most.
#[derive(Default)]
struct BucketModel {
    tat: HashMap<u64, u64>,
}

impl BucketModel {
    fn check(&mut self, key: u64, n: u32, now: u64, t: u64, burst: u32) -> (bool, u32, u64) {
        let tat = self.tat.get(&key).copied().unwrap_or(now).max(now);
        let tolerance = t * u64::from(burst);
        let new_tat = tat + t * u64::from(n);
        if new_tat - now <= tolerance {
            self.tat.insert(key, new_tat);
            (true, ((tolerance - (new_tat - now)) / t) as u32, 0)
        } else {
            (
                false,
                ((tolerance - (tat - now)) / t) as u32,
                new_tat - now - tolerance,
            )
        }
    }

    fn mattering(&self, now: u64) -> usize {
        self.tat.values().filter(|&&tat| tat > now).count()
    }
}

fn run(
    ops: &[Op],
    limit: u32,
    limiter: &RateLimiter<u64>,
    clock: &MockClock,
    mut model: impl FnMut(u64, u32, u64) -> (bool, u32, u64),
    mut reset: impl FnMut(u64),
    mattering: impl Fn(u64) -> usize,
) -> Result<(), TestCaseError> {
    let mut now = 0u64;
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Check(key, n) => {
                let got = limiter.check_n(key, n);
                if n > limit {
                    prop_assert_eq!(
                        got,
                        Err(RateLimitError::ExceedsLimit {
                            requested: n,
                            limit
                        })
                    );
                    continue;
                }
                let got = got.unwrap();
                let (allowed, remaining, retry) = model(key, n, now);
                prop_assert_eq!(
                    (got.allowed, got.remaining, got.retry_after),
                    (allowed, remaining, Duration::from_nanos(retry)),
                    "op {} {:?} at {} ns",
                    i,
                    op,
                    now
                );
            }
            Op::Advance(by) => {
                clock.advance(Duration::from_nanos(by));
                now += by;
            }
            Op::Reset(key) => {
                limiter.reset(&key);
                reset(key);
            }
            Op::Purge => {
                limiter.purge_idle();
                prop_assert!(
                    limiter.tracked_keys() >= mattering(now),
                    "op {}: {} keys tracked after a purge, {} still limited",
                    i,
                    limiter.tracked_keys(),
                    mattering(now)
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_sliding_window_matches_its_model(
        limit in 1u32..6,
        window_ms in prop_oneof![Just(1u64), Just(100), Just(1_000), 1u64..5_000],
        ops in (1u32..6).prop_flat_map(|l| proptest::collection::vec(op(l), 1..120)),
    ) {
        let clock = MockClock::new();
        let limiter: RateLimiter<u64> = RateLimiter::builder()
            .clock(clock.clone())
            .sliding_window(limit, Duration::from_millis(window_ms))
            .unwrap();
        let window = window_ms * 1_000_000;
        let model = std::cell::RefCell::new(WindowModel::default());
        run(
            &ops,
            limit,
            &limiter,
            &clock,
            |k, n, now| model.borrow_mut().check(k, n, now, limit, window),
            |k| {
                model.borrow_mut().log.remove(&k);
            },
            |now| model.borrow().mattering(now, window),
        )?;
    }

    #[test]
    fn the_token_bucket_matches_its_model(
        rate in 1u32..20,
        per_ms in prop_oneof![Just(1u64), Just(1_000), 1u64..3_000],
        burst in 1u32..6,
        ops in (1u32..6).prop_flat_map(|l| proptest::collection::vec(op(l), 1..120)),
    ) {
        let clock = MockClock::new();
        let limiter: RateLimiter<u64> = RateLimiter::builder()
            .clock(clock.clone())
            .token_bucket(rate, Duration::from_millis(per_ms), burst)
            .unwrap();
        let t = (per_ms * 1_000_000).div_ceil(u64::from(rate));
        let model = std::cell::RefCell::new(BucketModel::default());
        run(
            &ops,
            burst,
            &limiter,
            &clock,
            |k, n, now| model.borrow_mut().check(k, n, now, t, burst),
            |k| {
                model.borrow_mut().tat.remove(&k);
            },
            |now| model.borrow().mattering(now),
        )?;
    }
}

/// The extremes of every setting: each builds or is refused with an error,
/// and no check panics.
#[test]
fn extreme_settings_are_errors_or_work() {
    let clock = MockClock::new();
    let b = || RateLimiter::<u64>::builder().clock(clock.clone());
    let max = u32::MAX;
    // The fastest bucket: a nanosecond per token, the largest burst.
    let fast = b().token_bucket(max, Duration::from_nanos(1), max).unwrap();
    assert!(fast.check_n(1u64, max).unwrap().allowed);
    assert_eq!(fast.check(1u64).retry_after, Duration::from_nanos(1));
    assert!(fast.check_n(2u64, 0).unwrap().allowed);
    // Refill times past ten years are refused, up to Duration::MAX.
    for per in [Duration::from_secs(3_650 * 86_400 + 1), Duration::MAX] {
        assert!(matches!(
            b().token_bucket(1, per, 1),
            Err(RateLimitError::TooLong(_))
        ));
        assert!(matches!(
            b().sliding_window(1, per),
            Err(RateLimitError::TooLong(_))
        ));
    }
    assert!(matches!(
        b().token_bucket(1, Duration::from_secs(86_400), max),
        Err(RateLimitError::TooLong(_))
    ));
    // The longest window and the largest limit: one record for it all.
    let wide = b()
        .sliding_window(max, Duration::from_secs(3_650 * 86_400))
        .unwrap();
    assert!(wide.check_n(3u64, max).unwrap().allowed);
    let refused = wide.check(3u64);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Duration::from_secs(3_650 * 86_400));
    clock.advance(Duration::from_secs(3_650 * 86_400));
    assert!(wide.check_n(3u64, max).unwrap().allowed);
    // A clock decades past the build: the limiter fails closed.
    clock.advance(Duration::from_secs(30 * 365 * 86_400));
    let late = wide.check(4u64);
    assert!(!late.allowed);
    assert_eq!(late.retry_after, Duration::MAX);
}

/// Four threads check one key while a fifth moves the clock under them in
/// sub-interval steps: over the run, the token bucket admits at most
/// `burst + elapsed / interval`, the sliding window at most `limit` per
/// window started.
#[test]
fn the_bounds_hold_while_the_clock_moves_under_the_checks() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let clock = MockClock::new();
    let bucket: RateLimiter<u64> = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(1_000, Duration::from_secs(1), 5)
        .unwrap();
    let window: RateLimiter<u64> = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(7, Duration::from_millis(10))
        .unwrap();
    let (in_bucket, in_window) = (AtomicU64::new(0), AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let steps = 20_000u64;
    let step = Duration::from_micros(37);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (bucket, window, in_bucket, in_window, stop) =
                (&bucket, &window, &in_bucket, &in_window, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if bucket.check(1u64).allowed {
                        in_bucket.fetch_add(1, Ordering::Relaxed);
                    }
                    if window.check(1u64).allowed {
                        in_window.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for _ in 0..steps {
            clock.advance(step);
            std::thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
    });
    let elapsed = step.as_nanos() as u64 * steps;
    let (b, w) = (in_bucket.into_inner(), in_window.into_inner());
    assert!(
        b <= 5 + elapsed / 1_000_000,
        "bucket admitted {b} in {elapsed} ns"
    );
    assert!(
        w <= 7 * (elapsed / 10_000_000 + 1),
        "window admitted {w} in {elapsed} ns"
    );
    assert!(b > 0 && w > 0);
}
