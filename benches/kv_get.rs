//! GET hits on 1 and 2 threads: `KvStore` (the Redis-semantics layer), the
//! `Cache<String, Bytes>` under it, and the same GETs sent to a local
//! `redis-server` through the `redis` crate (started by the bench on a free
//! loopback port; skipped with a note when redis-server is not installed).
//!
//! ```sh
//! cargo bench --bench kv_get
//! ```

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcache::kv::{glob_match, KvStore, ScanOptions};
use shardcache::Cache;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEYS: usize = 10_000;

fn key(i: usize) -> String {
    format!("perm:resource:boxer:user{i}:boxer{}", i * 7)
}

/// Runs `op(thread, i)` `iters` times on each of `threads` threads; wall time.
fn timed<F>(threads: usize, iters: u64, op: F) -> Duration
where
    F: Fn(usize, usize) + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..iters as usize {
                    op(t, i.wrapping_mul(7919).wrapping_add(t * 31) % KEYS);
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed()
}

#[path = "../tests/support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer as Server;

/// A loopback `redis-server`, or `None` when it is not installed.
fn start_redis() -> Option<Server> {
    Server::start(&[]).ok()
}

/// The keys, and a `KvStore` and a `Cache<String, Bytes>` holding them all.
fn fixture() -> (Arc<Vec<String>>, KvStore, Cache<String, Bytes>) {
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(key).collect());
    let store = KvStore::new();
    let cache: Cache<String, Bytes> = Cache::new(1 << 20);
    for k in keys.iter() {
        store.execute(&["SET", k.as_str(), "1"]);
        cache.insert(k.clone(), Bytes::from_static(b"1"));
    }
    (keys, store, cache)
}

fn get_hits(c: &mut Criterion) {
    let (keys, store, cache) = fixture();
    let redis = start_redis();
    if let Some(server) = &redis {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/", server.port())).expect("client");
        let mut con = client.get_connection().expect("connection");
        for k in keys.iter() {
            let _: () = redis::cmd("SET")
                .arg(k)
                .arg("1")
                .query(&mut con)
                .expect("SET");
        }
    } else {
        println!("kv_get: redis-server not available, skipping the Redis GET subject");
    }

    let mut g = c.benchmark_group("get_hit_threads");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        let (s, k) = (store.clone(), keys.clone());
        g.bench_function(BenchmarkId::new("KvStore", threads), |b| {
            b.iter_custom(|iters| {
                let (s, k) = (s.clone(), k.clone());
                timed(threads, iters, move |_, i| {
                    black_box(s.get(&k[i]));
                })
            })
        });
        let (cache, k) = (cache.clone(), keys.clone());
        g.bench_function(BenchmarkId::new("Cache<String,Bytes>", threads), |b| {
            b.iter_custom(|iters| {
                let (cache, k) = (cache.clone(), k.clone());
                timed(threads, iters, move |_, i| {
                    black_box(cache.get(k[i].as_str()));
                })
            })
        });
        if let Some(server) = &redis {
            let url = format!("redis://127.0.0.1:{}/", server.port());
            let k = keys.clone();
            g.bench_function(BenchmarkId::new("redis-server GET", threads), |b| {
                b.iter_custom(|iters| {
                    // One connection per thread, opened before timing.
                    let cons: Vec<_> = (0..threads)
                        .map(|_| {
                            let client = redis::Client::open(url.as_str()).expect("client");
                            parking_lot::Mutex::new(client.get_connection().expect("connection"))
                        })
                        .collect();
                    let (cons, k) = (Arc::new(cons), k.clone());
                    timed(threads, iters, move |t, i| {
                        let v: Option<Vec<u8>> = redis::cmd("GET")
                            .arg(&k[i])
                            .query(&mut *cons[t].lock())
                            .expect("GET");
                        black_box(v);
                    })
                })
            });
        }
    }
    g.finish();
}

/// The targets as ratios: rounds interleaved (KvStore, Cache, KvStore, ...)
/// with a fixed op count each, medians compared, so machine noise hits both
/// alike. Printed as a table after criterion's own figures.
fn ratios(_: &mut Criterion) {
    const OPS: u64 = 2_000_000;
    const ROUNDS: usize = 9;
    let (keys, store, cache) = fixture();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\nkv_get ratios (median of {ROUNDS} interleaved rounds of {OPS} GET hits per thread)"
    );
    println!("| threads | KvStore Mops/s | Cache<String,Bytes> Mops/s | KvStore / Cache |");
    println!("|---:|---:|---:|---:|");
    for threads in [1usize, 2] {
        let (mut kv, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (s, k) = (store.clone(), keys.clone());
            let t = timed(threads, OPS, move |_, i| {
                black_box(s.get(&k[i]));
            });
            kv.push((threads as u64 * OPS) as f64 / t.as_secs_f64() / 1e6);
            let (c, k) = (cache.clone(), keys.clone());
            let t = timed(threads, OPS, move |_, i| {
                black_box(c.get(k[i].as_str()));
            });
            plain.push((threads as u64 * OPS) as f64 / t.as_secs_f64() / 1e6);
        }
        let (kv, plain) = (median(kv), median(plain));
        println!("| {threads} | {kv:.2} | {plain:.2} | {:.2} |", kv / plain);
    }
}

/// Glob matching at its worst: the 40,000 x `*a` pattern against a
/// 100,000-byte key (matching, and failing on a final `b`), and a middle
/// segment that almost matches at every place (`*` + 1,000 `a` + `b*`).
fn glob_worst(c: &mut Criterion) {
    let key = "a".repeat(100_000);
    let cases = [
        ("stars_40k_match", "*a".repeat(40_000)),
        ("stars_40k_fail", format!("{}b", "*a".repeat(40_000))),
        ("near_miss_1k", format!("*{}b*", "a".repeat(1_000))),
    ];
    let mut g = c.benchmark_group("glob_worst");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    for (name, pattern) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| black_box(glob_match(pattern.as_bytes(), key.as_bytes())))
        });
    }
    g.finish();
}

/// `SCAN cursor COUNT 10` on a store of 1M keys: from cursor 0, and walking
/// on from the cursor each call returned (wrapping to 0 at the end).
fn scan_1m(c: &mut Criterion) {
    let store = KvStore::new();
    for i in 0..1_000_000 {
        store
            .set(&key(i), "1", Default::default())
            .expect("unbounded store");
    }
    let opts = ScanOptions::new().count(10);
    let mut g = c.benchmark_group("scan_1m");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("cursor_0_count_10", |b| {
        b.iter(|| black_box(store.scan(0, &opts)))
    });
    let mut cursor = 0;
    g.bench_function("walk_count_10", |b| {
        b.iter(|| {
            let (next, batch) = store.scan(cursor, &opts);
            cursor = next;
            black_box(batch)
        })
    });
    g.finish();
}

/// What the store-wide `max_memory` budget costs on writes: SETs of
/// existing keys (same size, so no eviction) and of new keys (each one
/// evicting), on a store with `max_memory` against the same store without
/// it, in interleaved rounds; medians and their ratio.
fn budget_ratios(_: &mut Criterion) {
    const OPS: u64 = 500_000;
    const ROUNDS: usize = 7;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let build = |max: Option<u64>| {
        let mut b = KvStore::builder().policy(
            "allkeys-lru"
                .parse::<shardcache::Policy>()
                .expect("a Redis policy name"),
        );
        if let Some(m) = max {
            b = b.max_memory(m);
        }
        let s = b.build().expect("valid config");
        for i in 0..KEYS {
            s.set(&key(i), "1", Default::default())
                .expect("room for the keys");
        }
        s
    };
    // Room for all KEYS: overwrites never evict.
    let (bounded, unbounded) = (build(Some(64 << 20)), build(None));
    println!("\nkv SET with and without max_memory (median of {ROUNDS} interleaved rounds of {OPS} SETs per thread)");
    println!("| threads | with max_memory Mops/s | without Mops/s | ratio |");
    println!("|---:|---:|---:|---:|");
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(key).collect());
    for threads in [1usize, 2] {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            for (store, out) in [(&bounded, &mut with), (&unbounded, &mut without)] {
                let (s, k) = (store.clone(), keys.clone());
                let t = timed(threads, OPS, move |_, i| {
                    black_box(s.set(&k[i], "2", Default::default()).is_ok());
                });
                out.push((threads as u64 * OPS) as f64 / t.as_secs_f64() / 1e6);
            }
        }
        let (w, wo) = (median(with), median(without));
        println!("| {threads} | {w:.2} | {wo:.2} | {:.2} |", w / wo);
    }
}

criterion_group!(
    benches,
    get_hits,
    ratios,
    glob_worst,
    scan_1m,
    budget_ratios
);
criterion_main!(benches);
