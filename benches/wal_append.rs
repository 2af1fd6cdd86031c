//! The cost of persistence: insert throughput with no log and with each
//! `Fsync` mode on 1 and 2 threads (and `Always` on 4), a naive
//! write+fsync-per-op loop for comparison, and the time to reload a log
//! against inserting the same entries in memory (`SHARDCACHE_RELOAD_ENTRIES`,
//! default 200 000). Ends with the targets as ratios from interleaved rounds.
//!
//! ```sh
//! cargo bench --bench wal_append
//! ```
//!
//! Two measurements run by hand instead of the benchmarks, each chosen by an
//! environment variable:
//!
//! - `SHARDCACHE_LARGE_LOG_MIB=1024`: writes a log of that size (10 rounds
//!   of overwrites of the same keys, so the live data is a tenth of it),
//!   then opens it in a fresh child process, three times, and prints the open
//!   time, the process's peak RSS and its RSS once open (the live data). The
//!   log is deleted afterwards.
//! - `SHARDCACHE_LOSS_SECS=10`: 2 threads insert into an `EverySecond` log
//!   while a sampler, at random instants, reads the file (what a process
//!   crash would leave) and measures the age of the oldest acknowledged
//!   insert missing from it: the loss window of a process crash (automatic
//!   rewrites off, so the sampler follows one file).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
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

fn main() {
    if let Some(path) = std::env::var_os("SHARDCACHE_OPEN_ONLY") {
        return open_only(std::path::Path::new(&path));
    }
    if let Some(mib) = env_u64("SHARDCACHE_LARGE_LOG_MIB") {
        return large_log(mib);
    }
    if let Some(secs) = env_u64("SHARDCACHE_LOSS_SECS") {
        return loss_window(secs);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Keys per round of the large log: 100-byte values, about 115 bytes a record.
fn large_keys(mib: u64) -> u64 {
    (mib << 20) / 115 / 10
}

type Large = Cache<u64, Vec<u8>>;

fn large_log(mib: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("large.log");
    let keys = large_keys(mib);
    let started = Instant::now();
    {
        let log = FileLog::open(&path, Fsync::Never)
            .expect("open")
            .rewrite_policy(0, 0);
        let (cache, _) = Large::builder().build_persistent(log).expect("new");
        for round in 0..10u64 {
            for k in 0..keys {
                cache.insert(k, vec![(k ^ round) as u8; 100]);
            }
        }
        cache.sync().expect("sync");
    }
    let size = std::fs::metadata(&path).expect("meta").len();
    println!(
        "wrote {} MiB ({keys} live keys, 10 records each) in {:.1?}",
        size >> 20,
        started.elapsed()
    );
    for _ in 0..3 {
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env("SHARDCACHE_OPEN_ONLY", &path)
            .output()
            .expect("child");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(dir);
    println!("log deleted");
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_only(path: &std::path::Path) {
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let log = FileLog::open(path, Fsync::Never).expect("open");
    let (cache, report) = Large::builder().build_persistent(log).expect("load");
    let took = started.elapsed();
    let (rss, peak) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
    println!(
        "open: {took:.2?} for {} records, {} live; RSS before {} MiB, once open {} MiB, peak {} MiB: peak - open = {} MiB",
        report.records,
        cache.len(),
        before >> 10,
        rss >> 10,
        peak >> 10,
        peak.saturating_sub(rss) >> 10
    );
}

/// The loss window of a process crash under `EverySecond`, measured.
fn loss_window(secs: u64) {
    use std::io::{Read, Seek, SeekFrom};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("loss.log");
    // No automatic rewrite: the sampler follows one file.
    let log = FileLog::open(&path, Fsync::EverySecond)
        .expect("open")
        .rewrite_policy(0, 0);
    let (cache, _) = Cache::<u64, u64>::builder()
        .max_capacity(1 << 26)
        .build_persistent(log)
        .expect("new");
    let origin = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Per thread, by key order: when each insert returned (µs). Thread t
    // writes keys t << 40, t << 40 + 1, ... in order, so its records reach
    // the file in that order.
    let acked: Vec<std::sync::Mutex<Vec<u32>>> =
        (0..2).map(|_| std::sync::Mutex::new(Vec::new())).collect();
    let mut windows = Vec::new();
    std::thread::scope(|s| {
        for (t, acked) in acked.iter().enumerate() {
            let (cache, stop) = (&cache, &stop);
            s.spawn(move || {
                let mut k = (t as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    cache.insert(k, k);
                    let at = origin.elapsed().as_micros() as u32;
                    acked.lock().expect("acked").push(at);
                    k += 1;
                }
            });
        }
        let mut file = std::fs::File::open(&path).expect("open");
        let (mut parsed_to, mut bytes) = (20u64, Vec::new());
        // Per thread: how many of its records the file holds.
        let mut in_file = [0u64; 2];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        while origin.elapsed() < Duration::from_secs(secs) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            std::thread::sleep(Duration::from_micros(20_000 + x % 30_000));
            // What a crash now would leave: the file as the OS holds it.
            let cut = origin.elapsed().as_micros() as u32;
            bytes.clear();
            file.seek(SeekFrom::Start(parsed_to)).expect("seek");
            file.read_to_end(&mut bytes).expect("read");
            parsed_to += scan_keys(&bytes, &mut in_file);
            let mut window = 0;
            for (t, acked) in acked.iter().enumerate() {
                let acked = acked.lock().expect("acked");
                if let Some(&at) = acked.get(in_file[t] as usize) {
                    if at <= cut {
                        window = window.max(cut - at);
                    }
                }
            }
            windows.push(window);
        }
        stop.store(true, Ordering::Relaxed);
    });
    if let Err(e) = cache.sync() {
        println!("the log failed during the run: {e}");
    }
    if std::env::var_os("SHARDCACHE_LOSS_TRACE").is_some() {
        println!("loss windows in order (µs): {windows:?}");
    }
    windows.sort_unstable();
    let pct = |p: usize| f64::from(windows[(windows.len() - 1) * p / 100]) / 1000.0;
    println!(
        "EverySecond, 2 writer threads, {} crash instants over {secs} s: loss window p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        windows.len(),
        pct(50),
        pct(99),
        pct(100)
    );
}

/// Counts, per writer thread, the insert records in `bytes` (whole frames
/// only); returns the bytes consumed.
fn scan_keys(bytes: &[u8], in_file: &mut [u64; 2]) -> u64 {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4"));
        if crc32c::crc32c(payload) != crc {
            // Read while being written: try again next time.
            break;
        }
        // Insert is variant 0; the key follows as a varint.
        if payload.first() == Some(&0) {
            let (mut key, mut shift) = (0u64, 0);
            for &b in &payload[1..] {
                key |= u64::from(b & 0x7F) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let t = (key >> 40) as usize & 1;
            in_file[t] = in_file[t].max((key & ((1 << 40) - 1)) + 1);
        }
        at += 8 + len;
    }
    at as u64
}
