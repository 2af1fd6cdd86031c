//! The cost of persistence: insert throughput with no log and with each
//! `Fsync` mode on 1 and 2 threads (and `Always` on 4), a naive
//! write+fsync-per-op loop for comparison, and the time to reload a log against inserting the same
//! entries in memory (`SHARDCACHE_RELOAD_ENTRIES`, default 200 000).
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
                                let mut f = file.lock().expect("file");
                                f.write_all(&[k as u8; 44]).expect("write");
                                f.sync_data().expect("fsync");
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

criterion_group!(benches, inserts, reload);
criterion_main!(benches);
