//! The cost of persistence: insert throughput with no log and with each
//! `Fsync` mode on 1 and 2 threads (and `Always` on 4), a naive
//! write+fsync-per-op loop for comparison, and the time to reload a log
//! against inserting the same entries in memory (`SHARDCACHE_RELOAD_ENTRIES`,
//! default 200 000). Ends with the targets as ratios from interleaved rounds.
//!
//! ```sh
//! cargo bench --bench wal_append
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcache::persist::{FileLog, Fsync};
use shardcache::Cache;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cache_with(mode: Option<Fsync>, dir: &std::path::Path, n: u64) -> Cache<u64, [u8; 32]> {
    let b = Cache::builder().max_capacity(1 << 22);
    match mode {
        None => b.build().expect("valid"),
        Some(fsync) => {
            let path = dir.join(format!("bench-{fsync:?}-{n}.log"));
            let _ = std::fs::remove_file(&path);
            let log = FileLog::open(&path, fsync).expect("open log");
            b.build_persistent(log).expect("load").0
        }
    }
}

fn inserts(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let next = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("insert_with_log");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let modes = [
        ("no log", None),
        ("Never", Some(Fsync::Never)),
        ("EverySecond", Some(Fsync::EverySecond)),
        ("Always", Some(Fsync::Always)),
    ];
    // 4 threads for Always and the naive loop only: group commit's batch
    // grows with the writers waiting, which 2 threads cannot show.
    for threads in [1u64, 2, 4] {
        g.throughput(Throughput::Elements(threads));
        for (i, (name, mode)) in modes.iter().enumerate() {
            if threads > 2 && *mode != Some(Fsync::Always) {
                continue;
            }
            let cache = cache_with(*mode, dir.path(), threads * 10 + i as u64);
            let next = next.clone();
            g.bench_function(BenchmarkId::new(*name, threads), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            let (cache, next) = (cache.clone(), next.clone());
                            s.spawn(move || {
                                for _ in 0..iters {
                                    let k = next.fetch_add(1, Ordering::Relaxed);
                                    cache.insert(k, [k as u8; 32]);
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
        let path = dir.path().join(format!("naive-{threads}.log"));
        let file = std::sync::Mutex::new(std::fs::File::create(&path).expect("create"));
        g.bench_function(BenchmarkId::new("naive write+fsync per op", threads), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let file = &file;
                        s.spawn(move || {
                            for k in 0..iters {
                                naive_write(file, k);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// The naive baseline: one record's worth of bytes, written and fsynced
/// per operation.
fn naive_write(file: &std::sync::Mutex<std::fs::File>, k: u64) {
    let mut f = file.lock().expect("file");
    f.write_all(&[k as u8; 44]).expect("write");
    f.sync_data().expect("fsync");
}

fn reload(c: &mut Criterion) {
    let n: u64 = std::env::var("SHARDCACHE_RELOAD_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reload.log");
    {
        let log = FileLog::open(&path, Fsync::Never).expect("open");
        let (cache, _) = Cache::<u64, [u8; 32]>::builder()
            .max_capacity(n)
            .build_persistent(log)
            .expect("load");
        for k in 0..n {
            cache.insert(k, [k as u8; 32]);
        }
        cache.sync().expect("sync");
    }
    let mut g = c.benchmark_group("reload");
    g.sample_size(10).throughput(Throughput::Elements(n));
    g.bench_function(BenchmarkId::new("in-memory inserts", n), |b| {
        b.iter(|| {
            let cache = Cache::<u64, [u8; 32]>::builder()
                .max_capacity(n)
                .build()
                .expect("valid");
            for k in 0..n {
                cache.insert(k, [k as u8; 32]);
            }
            cache
        })
    });
    g.bench_function(BenchmarkId::new("replay log", n), |b| {
        b.iter(|| {
            let log = FileLog::open(&path, Fsync::Never).expect("open");
            let (cache, report) = Cache::<u64, [u8; 32]>::builder()
                .max_capacity(n)
                .build_persistent(log)
                .expect("load");
            assert_eq!(report.records, n);
            cache
        })
    });
    g.finish();
}

/// One operation of a ratio round, given a fresh key.
type Op<'a> = &'a (dyn Fn(u64) + Sync);

/// Ops/s of `threads` threads calling `op` with fresh keys for `duration`.
fn rate(threads: u64, duration: Duration, next: &AtomicU64, op: Op<'_>) -> f64 {
    let start = Instant::now();
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while start.elapsed() < duration {
                    op(next.fetch_add(1, Ordering::Relaxed));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The targets as ratios, from rounds interleaved across the subjects (the
/// disk's fsync latency drifts over a run; interleaving exposes every
/// subject to the same drift). Printed after criterion's own figures.
fn ratios(_: &mut Criterion) {
    const ROUNDS: usize = 7;
    let round = Duration::from_millis(700);
    let dir = tempfile::tempdir().expect("tempdir");
    let next = AtomicU64::new(0);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let plain = cache_with(None, dir.path(), 100);
    let every = cache_with(Some(Fsync::EverySecond), dir.path(), 101);
    let always = cache_with(Some(Fsync::Always), dir.path(), 102);
    let file =
        std::sync::Mutex::new(std::fs::File::create(dir.path().join("naive.log")).expect("create"));
    let naive = |k: u64| naive_write(&file, k);
    let put = |c: &Cache<u64, [u8; 32]>, k: u64| c.insert(k, [k as u8; 32]);
    let (plain_insert, every_insert, always_insert) =
        (|k| put(&plain, k), |k| put(&every, k), |k| put(&always, k));
    let subjects: [(&str, u64, Op<'_>); 8] = [
        ("no log, 1 thread", 1, &plain_insert),
        ("EverySecond, 1 thread", 1, &every_insert),
        ("no log, 2 threads", 2, &plain_insert),
        ("EverySecond, 2 threads", 2, &every_insert),
        ("naive write+fsync, 1 thread", 1, &naive),
        ("naive write+fsync, 2 threads", 2, &naive),
        ("Always, 2 threads", 2, &always_insert),
        ("Always, 4 threads", 4, &always_insert),
    ];
    let mut rates = vec![Vec::new(); subjects.len()];
    for _ in 0..ROUNDS {
        for ((_, threads, op), r) in subjects.iter().zip(&mut rates) {
            r.push(rate(*threads, round, &next, *op));
        }
    }
    let m: Vec<f64> = rates.into_iter().map(median).collect();
    println!("\nwal_append ratios (median of {ROUNDS} interleaved rounds of {round:?})");
    println!("| subject | inserts/s |");
    println!("|---|---:|");
    for ((name, _, _), r) in subjects.iter().zip(&m) {
        println!("| {name} | {r:.0} |");
    }
    println!("| EverySecond / no log, 1 thread | {:.2}x |", m[1] / m[0]);
    println!("| EverySecond / no log, 2 threads | {:.2}x |", m[3] / m[2]);
    println!(
        "| Always 2 threads / naive 1 thread | {:.2}x |",
        m[6] / m[4]
    );
    println!(
        "| Always 2 threads / naive 2 threads | {:.2}x |",
        m[6] / m[5]
    );
    println!(
        "| Always 4 threads / naive 1 thread | {:.2}x |",
        m[7] / m[4]
    );
}

criterion_group!(benches, inserts, reload, ratios);
criterion_main!(benches);
