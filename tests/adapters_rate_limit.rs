//! RateLimiter: exactness under concurrency (8 threads on one key, on a
//! MockClock so every count is deterministic), token-bucket refill and
//! retry-after, the exact sliding window, idle-key reclaim, and bad input.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::{RateLimitError, RateLimiter};
use shardcache::MockClock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const THREADS: usize = 8;

/// Runs `per_thread` checks of `key` on each of 8 threads at once; returns
/// how many were admitted.
fn hammer(limiter: &RateLimiter, key: &str, per_thread: usize) -> u32 {
    let admitted = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (limiter, admitted, barrier) = (limiter.clone(), admitted.clone(), barrier.clone());
            let key = key.to_string();
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    if limiter.check(key.as_str()).allowed {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    admitted.load(Ordering::SeqCst)
}

#[test]
fn token_bucket_admits_exactly_the_burst_under_eight_threads() {
    let clock = MockClock::new();
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(10, Duration::from_secs(1), 100)
        .unwrap();
    assert_eq!(hammer(&limiter, "k", 2_000), 100);
    // Each refill interval admits exactly what was refilled.
    for round in 1..=20 {
        clock.advance(Duration::from_millis(500)); // 5 tokens
        assert_eq!(hammer(&limiter, "k", 200), 5, "round {round}");
    }
    clock.advance(Duration::from_secs(3600));
    assert_eq!(hammer(&limiter, "k", 200), 100); // never more than the burst
}

#[test]
fn sliding_window_never_admits_more_than_the_limit_in_any_window() {
    let clock = MockClock::new();
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(50, Duration::from_secs(10))
        .unwrap();
    // Rounds half a window apart: any window covers at most two rounds.
    let mut rounds = Vec::new();
    for _ in 0..12 {
        rounds.push(hammer(&limiter, "k", 100));
        clock.advance(Duration::from_secs(5));
    }
    assert_eq!(rounds[0], 50);
    for pair in rounds.windows(2) {
        assert!(pair[0] + pair[1] <= 50, "{rounds:?}");
    }
    // And it is not stuck: every two rounds the full limit comes back.
    assert!(
        rounds.iter().skip(1).step_by(2).all(|&n| n == 0),
        "{rounds:?}"
    );
    assert!(rounds.iter().step_by(2).all(|&n| n == 50), "{rounds:?}");
}

#[test]
fn token_bucket_reports_remaining_and_retry_after() {
    let clock = MockClock::new();
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(2, Duration::from_secs(1), 4)
        .unwrap();
    let d = limiter.check_n("k", 3).unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 1);
    let d = limiter.check_n("k", 3).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 1);
    assert_eq!(d.retry_after, Duration::from_secs(1)); // two more tokens at 2/s
    clock.advance(d.retry_after);
    assert!(limiter.check_n("k", 3).unwrap().allowed);
    assert!(!limiter.check("k").allowed);
    assert!(limiter.check("other").allowed); // keys are independent
}

#[test]
fn sliding_window_retry_after_points_at_the_oldest_admission_leaving() {
    let clock = MockClock::new();
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(3, Duration::from_secs(60))
        .unwrap();
    assert!(limiter.check("k").allowed);
    clock.advance(Duration::from_secs(10));
    assert!(limiter.check_n("k", 2).unwrap().allowed);
    let d = limiter.check("k");
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after, Duration::from_secs(50));
    clock.advance(Duration::from_secs(50));
    let d = limiter.check("k");
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
}

#[test]
fn idle_keys_are_reclaimed() {
    let clock = MockClock::new();
    let limiter: RateLimiter<u32> = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(100, Duration::from_secs(1), 10)
        .unwrap();
    for k in 0..1_000u32 {
        assert!(limiter.check_n(k, 10).unwrap().allowed); // empties the bucket
    }
    assert_eq!(limiter.tracked_keys(), 1_000);
    clock.advance(Duration::from_millis(20)); // two tokens back: still tracked
    limiter.purge_idle();
    assert_eq!(limiter.tracked_keys(), 1_000);
    clock.advance(Duration::from_millis(100)); // bucket refilled: state is moot
    limiter.purge_idle();
    assert_eq!(limiter.tracked_keys(), 0);
    assert_eq!(limiter.check(7u32).remaining, 9);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let b = || RateLimiter::<String>::builder();
    assert_eq!(
        b().token_bucket(0, Duration::from_secs(1), 1).err(),
        Some(RateLimitError::Zero("rate"))
    );
    assert_eq!(
        b().token_bucket(1, Duration::ZERO, 1).err(),
        Some(RateLimitError::Zero("per"))
    );
    assert_eq!(
        b().sliding_window(0, Duration::from_secs(1)).err(),
        Some(RateLimitError::Zero("limit"))
    );
    assert!(matches!(
        b().max_keys(0).sliding_window(1, Duration::from_secs(1)),
        Err(RateLimitError::Build(_))
    ));
    let limiter = b().token_bucket(1, Duration::from_secs(1), 5).unwrap();
    assert_eq!(
        limiter.check_n("k", 6),
        Err(RateLimitError::ExceedsLimit {
            requested: 6,
            limit: 5
        })
    );
    assert!(limiter.check_n("k", 0).unwrap().allowed);
    // Periods that would overflow the arithmetic are refused up front.
    assert_eq!(
        b().token_bucket(1, Duration::from_secs(u64::MAX), u32::MAX)
            .err(),
        Some(RateLimitError::TooLong("the time to refill the burst"))
    );
    assert_eq!(
        b().sliding_window(1, Duration::from_secs(u64::MAX)).err(),
        Some(RateLimitError::TooLong("window"))
    );
    // The largest accepted ones still count exactly.
    let slow = b()
        .token_bucket(1, Duration::from_secs(3_600), 87_600)
        .unwrap();
    assert!(slow.check_n("k", 87_600).unwrap().allowed);
    assert!(!slow.check("k").allowed);
}

/// Time moving while 8 threads check: the total admitted never exceeds the
/// burst plus what the elapsed time refilled.
#[test]
fn token_bucket_stays_exact_while_the_clock_moves() {
    let clock = MockClock::new();
    let limiter: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .token_bucket(1_000, Duration::from_secs(1), 50) // a token per ms
        .unwrap();
    let ticker = {
        let clock = clock.clone();
        thread::spawn(move || {
            for _ in 0..200 {
                clock.advance(Duration::from_millis(1));
                thread::yield_now();
            }
        })
    };
    let admitted = hammer(&limiter, "k", 5_000);
    ticker.join().unwrap();
    assert!(admitted <= 50 + 200, "admitted {admitted}");
    // With the clock stopped, what is left never takes the total past the bound.
    let rest = hammer(&limiter, "k", 100);
    assert!(admitted + rest <= 50 + 200, "{admitted} + {rest}");
    assert!(admitted + rest >= 50, "{admitted} + {rest}");
}
