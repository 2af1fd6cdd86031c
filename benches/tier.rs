//! The Redis tier: local-hit throughput of `TieredCache::get` next to a
//! plain Redis `GET` through the `redis` crate (same run, same keys), and the
//! cross-instance invalidation delay (p50/p99). Starts `redis-server` on a
//! free loopback port; without it, prints a note and skips.
//!
//! ```sh
//! cargo bench --features redis --bench tier
//! ```

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcache::tier::TieredCache;
use std::hint::black_box;
use std::time::{Duration, Instant};

const KEYS: usize = 1_000;

fn key(i: usize) -> String {
    format!("resource:boxer:user{i}:boxer{}", i * 7)
}

#[path = "../tests/support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer as Server;

/// A loopback `redis-server`, or `None` when it is not installed.
fn start_server() -> Option<Server> {
    Server::start(&[]).ok()
}

/// The time `n` GETs of `keys` (cycled) take through `con`, one round trip each.
fn redis_gets(con: &mut redis::Connection, keys: &[String], n: usize) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&keys[i % keys.len()])
            .query(con)
            .ok()
            .flatten();
        black_box(v);
    }
    start.elapsed()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn bench(c: &mut Criterion) {
    let Some(server) = start_server() else {
        eprintln!(
            "note: redis-server is not on the PATH (or did not start): skipping the tier bench"
        );
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", server.port());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let build = || {
        rt.block_on(
            TieredCache::builder(url.as_str())
                .prefix("perm:")
                .local_capacity(100_000)
                .local_ttl(Duration::from_secs(300))
                .require_redis(true)
                .build(),
        )
        .expect("the tier")
    };
    let a = build();
    let b = build();
    rt.block_on(async {
        for i in 0..KEYS {
            a.set(&key(i), "allow", None).await.expect("set");
        }
    });
    let mut redis_con = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("a redis connection");

    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let remote_keys: Vec<String> = keys.iter().map(|k| format!("perm:{k}")).collect();

    let mut group = c.benchmark_group("tier_get");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));
    group.bench_function("tiered_local_hit", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    black_box(a.get(&keys[i % KEYS]).await.ok());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("local_cache_get", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters as usize {
                black_box(a.local().get(keys[i % KEYS].as_str()));
            }
            start.elapsed()
        })
    });
    group.bench_function("redis_get", |bench| {
        bench.iter_custom(|iters| redis_gets(&mut redis_con, &remote_keys, iters as usize))
    });
    group.finish();

    // The same two, timed directly, for the ratio.
    let n = 200_000;
    let local = rt.block_on(async {
        let start = Instant::now();
        for i in 0..n {
            black_box(a.get(&keys[i % KEYS]).await.ok());
        }
        start.elapsed() / n as u32
    });
    let m = 5_000;
    let remote = redis_gets(&mut redis_con, &remote_keys, m) / m as u32;
    println!(
        "local hit {local:?}/op ({:.1} M ops/s), redis GET {remote:?}/op ({:.1} k ops/s): local hits are {:.0}x the throughput",
        1e-6 / local.as_secs_f64(),
        1e-3 / remote.as_secs_f64(),
        remote.as_secs_f64() / local.as_secs_f64()
    );

    // Invalidation delay: revoke on A, time until B's local copy is gone.
    let delays = rt.block_on(async {
        let mut delays = Vec::new();
        for i in 0..1_000 {
            let k = format!("inv:{i}");
            a.set(&k, "allow", None).await.expect("set");
            while !b.local().contains_key(&k) {
                let _ = b.get(&k).await;
            }
            let t = Instant::now();
            a.del(&k).await.expect("del");
            while b.local().contains_key(&k) {
                if t.elapsed() > Duration::from_secs(1) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            delays.push(t.elapsed());
        }
        delays
    });
    let mut sorted = delays;
    sorted.sort();
    println!(
        "invalidation delay (del returned on A -> gone from B's local tier), {} revokes: p50 {:?} p99 {:?} max {:?}",
        sorted.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
