//! The session store and the rate limiter on their hot paths, one thread:
//! a rate-limit check of a key that has state, a check of a new key at
//! `max_keys` (its state evicts another's), a session read, and a session
//! created at `max_sessions`.
//!
//! ```sh
//! cargo bench --bench adapters
//! ```

use criterion::{criterion_group, criterion_main, Criterion};
use shardcache::adapters::{RateLimiter, SessionConfig, SessionStore};
use std::hint::black_box;
use std::time::Duration;

const KEYS: u64 = 100_000;

fn rate_limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit");
    let limiter: RateLimiter<u64> = RateLimiter::builder()
        .max_keys(KEYS)
        .token_bucket(1_000_000, Duration::from_secs(1), 1_000_000)
        .expect("valid limiter");
    for key in 0..KEYS {
        limiter.check(key);
    }
    let mut i = 0u64;
    g.bench_function("check, key with state", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(limiter.check(i))
        })
    });
    let mut fresh = KEYS;
    g.bench_function("check, new key at max_keys", |b| {
        b.iter(|| {
            fresh += 1;
            black_box(limiter.check(fresh))
        })
    });
    g.finish();
}

fn sessions(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    let store: SessionStore<u64> =
        SessionStore::in_memory(SessionConfig::default().max_sessions(KEYS)).expect("valid store");
    let ids: Vec<_> = (0..KEYS)
        .map(|i| {
            store
                .create(&format!("user{}", i % 1000), i)
                .expect("created")
        })
        .collect();
    let mut i = 0usize;
    g.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            black_box(store.get(ids[i].as_str()))
        })
    });
    g.bench_function("create at max_sessions", |b| {
        b.iter(|| black_box(store.create("user", 0).expect("created")))
    });
    g.finish();
}

criterion_group!(benches, rate_limiter, sessions);
criterion_main!(benches);
