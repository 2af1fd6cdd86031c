//! Rate limiting per API key: a token bucket and an exact sliding window,
//! with the `remaining` and `retry_after` a service puts in its headers.
//!
//! ```sh
//! cargo run --example rate_limit
//! ```

use shardcache::adapters::RateLimiter;
use shardcache::MockClock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A mock clock keeps the demo instant and its output repeatable.
    let clock = MockClock::new();

    // 5 requests per second, bursts of 10.
    let bucket: RateLimiter =
        RateLimiter::builder()
            .clock(clock.clone())
            .token_bucket(5, Duration::from_secs(1), 10)?;
    for i in 1..=12 {
        let d = bucket.check("api-key-1");
        println!(
            "request {i:2}: allowed={:5} remaining={:2} retry_after={:?}",
            d.allowed, d.remaining, d.retry_after
        );
    }
    clock.advance(Duration::from_secs(1));
    println!("after 1 s: {:?}", bucket.check("api-key-1"));

    // 8 threads hammering one key never get more than the burst.
    let fresh: RateLimiter =
        RateLimiter::builder()
            .clock(clock.clone())
            .token_bucket(5, Duration::from_secs(1), 100)?;
    let admitted = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (fresh, admitted) = (fresh.clone(), admitted.clone());
            thread::spawn(move || {
                for _ in 0..10_000 {
                    if fresh.check("shared").allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    println!(
        "8 threads × 10 000 checks against a burst of 100: {} admitted",
        admitted.load(Ordering::Relaxed)
    );

    // At most 3 logins per minute per user, counted exactly.
    let logins: RateLimiter = RateLimiter::builder()
        .clock(clock.clone())
        .sliding_window(3, Duration::from_secs(60))?;
    let mut now = 0;
    for second in [0, 10, 20, 30, 61, 62] {
        clock.advance(Duration::from_secs(second - now));
        now = second;
        let d = logins.check("user@example.com");
        println!(
            "login at t={second:2}s: allowed={:5} retry_after={:?}",
            d.allowed, d.retry_after
        );
    }
    Ok(())
}
