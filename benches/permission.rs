//! Permission-check hits: latency percentiles on 1 and 2 threads and 2-thread
//! throughput; the core cache's `get` hit beside quick_cache's and moka's on
//! the same keys, 1 and 2 threads, with the 2-thread / 1-thread ratio; the core cache's hit with refresh-ahead configured (entries not
//! due, and due with their reload cooling down after a failure) beside a
//! plain hit, in interleaved rounds; next to a GET of the same key from a local `redis-server`
//! through the `redis` crate (started on a free loopback port; skipped with a
//! note when redis-server is not installed).
//!
//! Latency is measured per operation in batches: each sample is the mean of
//! a batch of `BATCH` checks timed with one pair of `Instant::now()` calls
//! (a single check is shorter than a clock read). Redis GETs are timed one
//! by one. Percentiles are printed, then criterion measures the same hit.
//!
//! ```sh
//! cargo bench --bench permission
//! ```

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcache::adapters::{PermissionCache, PermissionKey};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEYS: usize = 10_000;
/// A hot working set that stays in the CPU caches.
const HOT_KEYS: usize = 64;
const BATCH: usize = 64;
const SAMPLES: usize = 20_000;

fn key(i: usize) -> PermissionKey {
    PermissionKey::new(
        format!("user{i}"),
        "boxer",
        format!("boxer{}", i * 7),
        "read",
    )
}

/// The Redis key our users use for the same decision.
fn redis_key(i: usize) -> String {
    format!("perm:resource:boxer:user{i}:boxer{}", i * 7)
}

/// The core cache alone, for comparison: `Cache<String, bool>` hits on the
/// Redis-style key string, same batches.
fn core_latency(n: usize, threads: usize) -> Vec<f64> {
    let cache: shardcache::Cache<String, bool> = shardcache::Cache::builder()
        .max_capacity(1 << 20)
        .time_to_live(Duration::from_secs(300))
        .build()
        .expect("valid settings");
    let keys: Arc<Vec<String>> = Arc::new((0..n).map(redis_key).collect());
    for k in keys.iter() {
        cache.insert(k.clone(), true);
    }
    let len = keys.len();
    sampled(threads, len, move |i| {
        black_box(cache.get(keys[i].as_str()));
    })
}

/// How a core cache is set up for [`refresh_latency`].
#[derive(Clone, Copy)]
enum RefreshMode {
    /// No refresh configured.
    Plain,
    /// `refresh_after` configured; no entry is due.
    NotDue,
    /// Every entry is due and its reload failed, so each read checks the
    /// cool-down (the costliest steady hit with refresh configured).
    DueCoolingDown,
}

/// Per-op nanoseconds of `Cache<String, bool>::get` hits on `n` keys, one
/// thread, in the given refresh mode.
fn refresh_latency(n: usize, mode: RefreshMode) -> Vec<f64> {
    let b = shardcache::Cache::builder()
        .max_capacity(1 << 20)
        .time_to_live(Duration::from_secs(300));
    let cache: shardcache::Cache<String, bool> = match mode {
        RefreshMode::Plain => b.build(),
        RefreshMode::NotDue | RefreshMode::DueCoolingDown => b
            .refresh_after(Duration::from_secs(240))
            .refresh_loader(|_: &String| Err::<bool, _>("unavailable"))
            .build(),
    }
    .expect("valid settings");
    let keys: Arc<Vec<String>> = Arc::new((0..n).map(redis_key).collect());
    for k in keys.iter() {
        match mode {
            // 30 s left of a 300 s TTL: older than refresh_after.
            RefreshMode::DueCoolingDown => {
                cache.insert_with_ttl(k.clone(), true, Duration::from_secs(30))
            }
            _ => cache.insert(k.clone(), true),
        }
    }
    if let RefreshMode::DueCoolingDown = mode {
        // Start every reload and let them fail (reads re-ask for those the
        // bounded queue skipped), bounded in time.
        for _ in 0..10_000 {
            keys.iter().for_each(|k| {
                cache.get(k.as_str());
            });
            if cache.refresh_stats().failed >= n as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let len = keys.len();
    sampled(1, len, move |i| {
        black_box(cache.get(keys[i].as_str()));
    })
}

fn warm(n: usize) -> (PermissionCache<bool>, Arc<Vec<PermissionKey>>) {
    let perms = PermissionCache::builder()
        .max_capacity(1 << 20)
        .build()
        .expect("valid settings");
    let keys: Vec<_> = (0..n).map(key).collect();
    for k in &keys {
        perms.check(k, || true);
    }
    (perms, Arc::new(keys))
}

/// `get` hits on `n` Redis-style String keys in one of the compared caches,
/// on `threads` threads: per-op nanoseconds in batches, as [`sampled`].
fn rival_latency(subject: &str, n: usize, threads: usize) -> Vec<f64> {
    let keys: Arc<Vec<String>> = Arc::new((0..n).map(redis_key).collect());
    let len = keys.len();
    match subject {
        "shardcache" => {
            let cache: shardcache::Cache<String, bool> = shardcache::Cache::new(2 * n as u64);
            for k in keys.iter() {
                cache.insert(k.clone(), true);
            }
            sampled(threads, len, move |i| {
                black_box(cache.get(keys[i].as_str()));
            })
        }
        "quick_cache" => {
            let cache = Arc::new(quick_cache::sync::Cache::<String, bool>::new(2 * n));
            for k in keys.iter() {
                cache.insert(k.clone(), true);
            }
            sampled(threads, len, move |i| {
                black_box(cache.get(keys[i].as_str()));
            })
        }
        _ => {
            let cache = moka::sync::Cache::<String, bool>::new(2 * n as u64);
            for k in keys.iter() {
                cache.insert(k.clone(), true);
            }
            cache.run_pending_tasks();
            sampled(threads, len, move |i| {
                black_box(cache.get(keys[i].as_str()));
            })
        }
    }
}

/// Per-op nanoseconds, one sample per batch, on each of `threads` threads
/// at once; all samples pooled.
fn batched_latency(
    perms: &PermissionCache<bool>,
    keys: &Arc<Vec<PermissionKey>>,
    threads: usize,
) -> Vec<f64> {
    let (perms, keys) = (perms.clone(), keys.clone());
    sampled(threads, keys.len(), move |i| {
        black_box(perms.check(&keys[i], || unreachable!("warm")));
    })
}

/// Runs `op(i)` over key indices `0..len` on `threads` threads at once,
/// timing batches of [`BATCH`]; per-op nanoseconds, one sample per batch,
/// all threads' samples pooled.
fn sampled(threads: usize, len: usize, op: impl Fn(usize) + Send + Sync + 'static) -> Vec<f64> {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::with_capacity(SAMPLES);
                let mut i = (t * 7919) % len;
                barrier.wait();
                for _ in 0..SAMPLES {
                    let start = Instant::now();
                    for _ in 0..BATCH {
                        i = if i + 1 == len { 0 } else { i + 1 };
                        op(i);
                    }
                    samples.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
                }
                samples
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("bench thread"))
        .collect()
}

/// Checks per second on `threads` threads, each doing `per_thread` checks.
fn throughput(
    perms: &PermissionCache<bool>,
    keys: &Arc<Vec<PermissionKey>>,
    threads: usize,
    per_thread: usize,
) -> f64 {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (perms, keys, barrier) = (perms.clone(), keys.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut i = (t * 31) % keys.len();
                barrier.wait();
                for _ in 0..per_thread {
                    i = if i + 1 == keys.len() { 0 } else { i + 1 };
                    black_box(perms.check(&keys[i], || unreachable!("warm")));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    handles
        .into_iter()
        .for_each(|h| h.join().expect("bench thread"));
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.50), percentile(&v, 0.99))
}

#[path = "../tests/support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer as Server;

/// A loopback `redis-server`, or `None` when it is not installed.
fn start_redis() -> Option<Server> {
    Server::start(&[]).ok()
}

/// Per-GET nanoseconds on `threads` connections at once, and GETs per second.
fn redis_gets(url: &str, threads: usize, per_thread: usize) -> (Vec<f64>, f64) {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            let mut con = redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .expect("redis connection");
            std::thread::spawn(move || {
                let mut samples = Vec::with_capacity(per_thread);
                let mut i = t * 31;
                barrier.wait();
                for _ in 0..per_thread {
                    i = if i + 1 == KEYS { 0 } else { i + 1 };
                    let start = Instant::now();
                    let v: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(redis_key(i))
                        .query(&mut con)
                        .expect("GET");
                    samples.push(start.elapsed().as_nanos() as f64);
                    black_box(v);
                }
                samples
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let samples: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("bench thread"))
        .collect();
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    (samples, rate)
}

fn report(c: &mut Criterion) {
    // (keys, 2-thread p50, 2-thread checks/s) per working set.
    let mut results = Vec::new();
    for n in [HOT_KEYS, KEYS] {
        let (perms, keys) = warm(n);
        batched_latency(&perms, &keys, 2); // warm-up
        let (a50, a99) = summary(batched_latency(&perms, &keys, 1));
        let (b50, b99) = summary(batched_latency(&perms, &keys, 2));
        let rate = throughput(&perms, &keys, 2, 5_000_000);
        let (c50, c99) = summary(core_latency(n, 1));
        let (d50, d99) = summary(core_latency(n, 2));
        println!("permission check hit, {n} keys, per-op latency in batches of {BATCH}:");
        println!("  1 thread : p50 {a50:6.1} ns  p99 {a99:6.1} ns");
        println!("  2 threads: p50 {b50:6.1} ns  p99 {b99:6.1} ns");
        println!("  2-thread throughput: {:.2} M checks/s", rate / 1e6);
        println!("  core Cache<String, bool>::get (same keys as strings, same TTL):");
        println!("    1 thread : p50 {c50:6.1} ns  p99 {c99:6.1} ns");
        println!("    2 threads: p50 {d50:6.1} ns  p99 {d99:6.1} ns");
        results.push((n, b50, rate));
    }
    // Read scaling beside the rivals: the same String keys, hits only, p50
    // on 1 and 2 threads in interleaved rounds, and the 2-thread / 1-thread
    // ratio (1.0 when a second reading thread costs the first nothing).
    for n in [HOT_KEYS, KEYS] {
        let subjects = ["shardcache", "quick_cache", "moka"];
        let mut pooled = vec![[Vec::new(), Vec::new()]; subjects.len()];
        for _round in 0..3 {
            for (s, name) in subjects.iter().enumerate() {
                for (t, threads) in [1, 2].into_iter().enumerate() {
                    pooled[s][t].extend(rival_latency(name, n, threads));
                }
            }
        }
        println!("get hit on {n} String keys, p50 per op, 3 interleaved rounds:");
        for (name, [one, two]) in subjects.iter().zip(pooled) {
            let (one50, _) = summary(one);
            let (two50, _) = summary(two);
            println!(
                "  {name:<12}: 1 thread {one50:6.1} ns  2 threads {two50:6.1} ns  (2 thr / 1 thr {:.2}x)",
                two50 / one50
            );
        }
    }
    // A request usually builds its key from strings it holds: time that too.
    {
        let (perms, _) = warm(HOT_KEYS);
        let parts: Vec<(String, String)> = (0..HOT_KEYS)
            .map(|i| (format!("user{i}"), format!("boxer{}", i * 7)))
            .collect();
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut i = 0;
        for _ in 0..SAMPLES {
            let start = Instant::now();
            for _ in 0..BATCH {
                i = if i + 1 == HOT_KEYS { 0 } else { i + 1 };
                let (user, boxer) = &parts[i];
                let k = PermissionKey::new(user, "boxer", boxer, "read");
                black_box(perms.check(&k, || unreachable!("warm")));
            }
            samples.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
        }
        let (k50, k99) = summary(samples);
        println!("PermissionKey::new + check hit, {HOT_KEYS} keys, 1 thread: p50 {k50:6.1} ns  p99 {k99:6.1} ns");
    }
    // Refresh-ahead's cost on the hit path, in interleaved rounds.
    for n in [HOT_KEYS, KEYS] {
        let modes = [
            ("plain", RefreshMode::Plain),
            ("refresh configured, not due", RefreshMode::NotDue),
            ("refresh due, cooling down", RefreshMode::DueCoolingDown),
        ];
        let mut pooled: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        for _round in 0..3 {
            for (i, (_, mode)) in modes.iter().enumerate() {
                pooled[i].extend(refresh_latency(n, *mode));
            }
        }
        println!("core get hit with refresh-ahead, {n} keys, 1 thread, 3 interleaved rounds:");
        let (base50, base99) = summary(pooled[0].clone());
        for ((name, _), samples) in modes.iter().zip(pooled) {
            let (p50, p99) = summary(samples);
            println!(
                "  {name:<28}: p50 {p50:6.1} ns  p99 {p99:6.1} ns  ({:.2}x / {:.2}x plain)",
                p50 / base50,
                p99 / base99
            );
        }
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("(load average during the run: {})", load.trim());
    }
    let (perms, keys) = warm(HOT_KEYS);
    match start_redis() {
        Some(server) => {
            let url = format!("redis://127.0.0.1:{}/", server.port());
            let mut con = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .expect("redis connection");
            for i in 0..KEYS {
                let _: () = redis::cmd("SET")
                    .arg(redis_key(i))
                    .arg("1")
                    .query(&mut con)
                    .expect("SET");
            }
            let (one, _) = redis_gets(&url, 1, 20_000);
            let (r50_1, r99_1) = summary(one);
            let (two, redis_rate) = redis_gets(&url, 2, 20_000);
            let (r50_2, r99_2) = summary(two);
            println!("redis-server GET of the same key over loopback (redis crate):");
            println!("  1 thread : p50 {r50_1:8.0} ns  p99 {r99_1:8.0} ns");
            println!("  2 threads: p50 {r50_2:8.0} ns  p99 {r99_2:8.0} ns");
            println!("  2-thread throughput: {:.3} M GETs/s", redis_rate / 1e6);
            for (n, p50, rate) in &results {
                println!(
                    "ratio (Redis / PermissionCache, {n} keys, 2 threads): p50 {:.0}x, throughput {:.0}x",
                    r50_2 / p50,
                    rate / redis_rate
                );
            }
        }
        None => println!(
            "redis-server not found on PATH (or did not start): skipping the Redis comparison"
        ),
    }

    let mut g = c.benchmark_group("permission_check_hit");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let mut i = 0;
    g.bench_function("1 thread", |b| {
        b.iter(|| {
            i = if i + 1 == keys.len() { 0 } else { i + 1 };
            black_box(perms.check(&keys[i], || unreachable!("warm")))
        })
    });
    g.finish();
}

criterion_group!(benches, report);
criterion_main!(benches);
