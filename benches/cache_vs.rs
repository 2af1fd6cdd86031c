//! shardcache beside moka and quick_cache, in one run: get-hit, insert, a
//! Zipf(1.0) 95 % read / 5 % write mix on 1 and 2 threads, and (when
//! `SHARDCACHE_TRACES` names a directory holding the ARC traces) hit ratios on
//! OLTP and P12. Compare the subjects' figures as ratios within a run.
//!
//! ```sh
//! cargo bench --bench cache_vs
//! SHARDCACHE_TRACES=../shared/traces cargo bench --bench cache_vs -- hit_ratio
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// What every subject offers the benchmark.
trait Subject: Send + Sync + 'static {
    fn get(&self, k: u64) -> bool;
    fn insert(&self, k: u64, v: u64);
}

struct Shard(shardcache::Cache<u64, u64>);
struct Moka(moka::sync::Cache<u64, u64>);
struct Quick(quick_cache::sync::Cache<u64, u64>);

impl Subject for Shard {
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}
impl Subject for Moka {
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}
impl Subject for Quick {
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}

fn subjects(capacity: u64) -> Vec<(&'static str, Arc<dyn Subject>)> {
    vec![
        (
            "shardcache",
            Arc::new(Shard(shardcache::Cache::new(capacity))),
        ),
        ("moka", Arc::new(Moka(moka::sync::Cache::new(capacity)))),
        (
            "quick_cache",
            Arc::new(Quick(quick_cache::sync::Cache::new(capacity as usize))),
        ),
    ]
}

/// Zipf(s) over `n` keys by inverse CDF (binary search), from a fixed seed.
struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 1..=n {
            sum += 1.0 / (i as f64).powf(s);
            cdf.push(sum);
        }
        cdf.iter_mut().for_each(|c| *c /= sum);
        Self {
            cdf,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        let rank = self.cdf.partition_point(|&c| c < u) as u64;
        // Scatter ranks so hot keys do not sit next to each other.
        rank.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn stream(&mut self, len: usize) -> Vec<u64> {
        (0..len).map(|_| self.next()).collect()
    }
}

fn get_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("get_hit");
    g.throughput(Throughput::Elements(1));
    for (name, s) in subjects(10_000) {
        for k in 0..1_000 {
            s.insert(k, k);
        }
        let mut k = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                k = (k + 7) % 1_000;
                black_box(s.get(black_box(k)))
            })
        });
    }
    g.finish();
}

fn insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert");
    g.throughput(Throughput::Elements(1));
    for (name, s) in subjects(10_000) {
        let mut k = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                k = k.wrapping_add(1);
                s.insert(black_box(k % 50_000), k);
            })
        });
    }
    g.finish();
}

/// T threads replay pre-generated Zipf streams: 95 % get (insert on miss),
/// 5 % insert. Returns the wall time for `iters` ops per thread.
fn run_mix(s: &Arc<dyn Subject>, streams: &Arc<Vec<Vec<u64>>>, iters: u64) -> Duration {
    let threads = streams.len();
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (s, streams, barrier) = (s.clone(), streams.clone(), barrier.clone());
            std::thread::spawn(move || {
                let keys = &streams[t];
                barrier.wait();
                for i in 0..iters as usize {
                    let k = keys[i % keys.len()];
                    // Every 20th op is a write; the rest read, inserting on a miss.
                    if i % 20 == 0 || !s.get(k) {
                        s.insert(k, k);
                    }
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

fn zipf_mix(c: &mut Criterion) {
    let mut g = c.benchmark_group("zipf_1.0_95r5w");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for threads in [1usize, 2] {
        let streams: Arc<Vec<Vec<u64>>> = Arc::new(
            (0..threads)
                .map(|t| Zipf::new(1_000_000, 1.0, 42 + t as u64).stream(1 << 21))
                .collect(),
        );
        g.throughput(Throughput::Elements(threads as u64));
        for (name, s) in subjects(100_000) {
            // Warm the cache so the measurement sees the steady state.
            run_mix(&s, &streams, 1 << 20);
            g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, _| {
                b.iter_custom(|iters| run_mix(&s, &streams, iters))
            });
        }
    }
    g.finish();
}

/// Reads an ARC trace (`start count ignore reqno` per line; `.zst` not
/// supported here: decompress first, or use cachebench) into keys.
fn arc_keys(path: &std::path::Path) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut keys = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(start), Some(n)) = (f.next(), f.next()) else {
            continue;
        };
        let (Ok(start), Ok(n)) = (start.parse::<u64>(), n.parse::<u64>()) else {
            continue;
        };
        keys.extend(start..start + n);
    }
    Some(keys)
}

fn hit_ratio(c: &mut Criterion) {
    let Ok(dir) = std::env::var("SHARDCACHE_TRACES") else {
        println!(
            "hit_ratio: skipped (set SHARDCACHE_TRACES to a directory with OLTP.lis and P12.lis)"
        );
        return;
    };
    let mut g = c.benchmark_group("hit_ratio");
    g.sample_size(10);
    for (file, sizes) in [
        ("OLTP.lis", &[1000u64, 2000][..]),
        ("P12.lis", &[1 << 15, 1 << 17][..]),
    ] {
        let path = std::path::Path::new(&dir).join(file);
        let Some(keys) = arc_keys(&path) else {
            println!(
                "hit_ratio: skipped {} (not found or unreadable; decompress the .zst first)",
                path.display()
            );
            continue;
        };
        for &size in sizes {
            for (name, s) in subjects(size) {
                let hits = keys
                    .iter()
                    .filter(|&&k| s.get(k) || (s.insert(k, k), false).1)
                    .count();
                println!(
                    "hit_ratio {file}@{size} {name}: {:.2} %",
                    100.0 * hits as f64 / keys.len() as f64
                );
            }
        }
        // A timed replay so criterion has something to report for the group.
        g.bench_function(BenchmarkId::new("replay_shardcache", file), |b| {
            b.iter(|| {
                let s = shardcache::Cache::<u64, u64>::new(sizes[0]);
                keys.iter()
                    .filter(|&&k| s.get(&k).is_some() || (s.insert(k, k), false).1)
                    .count()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, get_hit, insert, zipf_mix, hit_ratio);
criterion_main!(benches);
