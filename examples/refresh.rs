//! Refresh-ahead in front of a slow permission database.
//!
//! A permission service answers checks from a cache whose entries expire
//! every `TTL`; each database query takes 30 ms. Clients send a Zipf stream
//! of checks. Three modes run in interleaved rounds:
//!
//! - `plain hit`: entries never expire (the floor: every read is a hit);
//! - `ttl only`: entries expire and the next read waits for the query;
//! - `refresh-ahead`: entries older than `refresh_after` are reloaded in the
//!   background while reads keep getting the current value.
//!
//! Every key is cached before the clock starts. It prints request latency
//! percentiles for all keys and for the hot keys (the 10 most requested),
//! and the shortest gap between two loads of a hot key.
//!
//! ```sh
//! cargo run --release --example refresh            # 4 s per mode and round
//! cargo run --release --example refresh -- 2       # seconds per mode
//! ```

use shardcache::Cache;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const KEYS: usize = 200;
const HOT: usize = 10;
const DB_LATENCY: Duration = Duration::from_millis(30);
const TTL: Duration = Duration::from_millis(1_000);
const REFRESH_AFTER: Duration = Duration::from_millis(700);
const CLIENTS: usize = 8;
const ROUNDS: usize = 2;
/// Reload threads: enough for the keys that fall due per second times the
/// load time (here up to 200 keys per 0.7 s x 30 ms: about 9 busy threads
/// at worst; hot keys are far fewer).
const REFRESH_THREADS: usize = 8;

/// The simulated database: 30 ms a query; remembers when each key was loaded.
#[derive(Default)]
struct Db {
    loads: Mutex<HashMap<usize, Vec<Instant>>>,
}

impl Db {
    fn query(&self, key: usize) -> bool {
        self.loads
            .lock()
            .expect("not poisoned")
            .entry(key)
            .or_default()
            .push(Instant::now());
        thread::sleep(DB_LATENCY);
        !key.is_multiple_of(7)
    }
}

/// A Zipf(1.0) sampler over `KEYS` ranks from a fixed seed.
struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(seed: u64) -> Self {
        let weights: Vec<f64> = (1..=KEYS).map(|r| 1.0 / r as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self {
            cdf,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u).min(KEYS - 1)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    PlainHit,
    TtlOnly,
    RefreshAhead,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PlainHit => "plain hit",
            Mode::TtlOnly => "ttl only",
            Mode::RefreshAhead => "refresh-ahead",
        }
    }
}

/// Latencies in nanoseconds: all requests and hot-key requests.
#[derive(Default)]
struct Samples {
    all: Vec<u64>,
    hot: Vec<u64>,
}

fn run(mode: Mode, secs: f64, db: &Arc<Db>, seed: u64) -> Samples {
    let mut b = Cache::builder().max_capacity(10_000);
    if mode != Mode::PlainHit {
        b = b.time_to_live(TTL);
    }
    if mode == Mode::RefreshAhead {
        let db = db.clone();
        b = b
            .refresh_after(REFRESH_AFTER)
            .refresh_threads(REFRESH_THREADS)
            .refresh_loader(move |k: &usize| Ok::<_, std::io::Error>(db.query(*k)));
    }
    let cache: Cache<usize, bool> = b.build().expect("valid settings");
    // Every key starts cached (loaded before the clock starts), with
    // deadlines spread over one TTL as in a service that has been running:
    // what is measured is steady-state expiry and refresh, not a cold start.
    for k in 0..KEYS {
        let ttl = TTL.mul_f64((k * 37 % KEYS + 1) as f64 / KEYS as f64);
        match mode {
            Mode::PlainHit => cache.insert(k, !k.is_multiple_of(7)),
            _ => cache.insert_with_ttl(k, !k.is_multiple_of(7), ttl),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (cache, db, stop) = (cache.clone(), db.clone(), stop.clone());
            thread::spawn(move || {
                let mut zipf = Zipf::new(seed.wrapping_add(c as u64 * 0x9E37));
                let mut s = Samples::default();
                while !stop.load(Ordering::Relaxed) {
                    let k = zipf.next();
                    let t = Instant::now();
                    let allowed = cache.get_or_insert_with(k, || db.query(k));
                    let ns = t.elapsed().as_nanos() as u64;
                    std::hint::black_box(allowed);
                    s.all.push(ns);
                    if k < HOT {
                        s.hot.push(ns);
                    }
                    thread::sleep(Duration::from_micros(200));
                }
                s
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut out = Samples::default();
    for h in handles {
        let s = h.join().expect("client finished");
        out.all.extend(s.all);
        out.hot.extend(s.hot);
    }
    if mode == Mode::RefreshAhead {
        let r = cache.refresh_stats();
        println!(
            "    refresh stats: started {} succeeded {} failed {} stale served {}",
            r.started, r.succeeded, r.failed, r.stale_served
        );
    }
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .filter(|s: &f64| *s > 0.0 && *s <= 600.0)
        .unwrap_or(4.0);
    println!(
        "{KEYS} keys, Zipf(1.0), {CLIENTS} clients, DB {DB_LATENCY:?}, TTL {TTL:?}, \
         refresh_after {REFRESH_AFTER:?} on {REFRESH_THREADS} threads, \
         {ROUNDS} interleaved rounds of {secs} s per mode"
    );
    let modes = [Mode::PlainHit, Mode::TtlOnly, Mode::RefreshAhead];
    let mut results: Vec<(Samples, Vec<Duration>)> = modes
        .iter()
        .map(|_| (Samples::default(), Vec::new()))
        .collect();
    for round in 0..ROUNDS {
        for (i, &mode) in modes.iter().enumerate() {
            println!("  round {round}: {}", mode.name());
            let db = Arc::new(Db::default());
            let s = run(mode, secs, &db, 42 + round as u64);
            results[i].0.all.extend(s.all);
            results[i].0.hot.extend(s.hot);
            // Gaps between consecutive loads of each hot key.
            let loads = db.loads.lock().expect("not poisoned");
            for k in 0..HOT {
                if let Some(times) = loads.get(&k) {
                    results[i]
                        .1
                        .extend(times.windows(2).map(|w| w[1].duration_since(w[0])));
                }
            }
        }
    }
    println!();
    println!(
        "{:<14} {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>9} {:>14}",
        "mode", "p50", "p99", "p999", "hot p50", "hot p99", "hot p999", "requests", "min load gap"
    );
    for (i, &mode) in modes.iter().enumerate() {
        let (s, gaps) = &mut results[i];
        s.all.sort_unstable();
        s.hot.sort_unstable();
        let min_gap = gaps
            .iter()
            .min()
            .map_or("-".to_string(), |g| format!("{} ms", g.as_millis()));
        println!(
            "{:<14} {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>9} {:>14}",
            mode.name(),
            fmt_ns(percentile(&s.all, 0.50)),
            fmt_ns(percentile(&s.all, 0.99)),
            fmt_ns(percentile(&s.all, 0.999)),
            fmt_ns(percentile(&s.hot, 0.50)),
            fmt_ns(percentile(&s.hot, 0.99)),
            fmt_ns(percentile(&s.hot, 0.999)),
            s.all.len(),
            min_gap,
        );
    }
    let floor = percentile(&results[0].0.hot, 0.99).max(1);
    let ra = percentile(&results[2].0.hot, 0.99);
    println!();
    println!(
        "hot-key p99 with refresh-ahead: {:.2}x a plain hit's p99",
        ra as f64 / floor as f64
    );
    println!(
        "loads per hot key per refresh period: at most one if the min load gap \
         ({}) is at least refresh_after ({} ms)",
        results[2]
            .1
            .iter()
            .min()
            .map_or("-".to_string(), |g| format!("{} ms", g.as_millis())),
        REFRESH_AFTER.as_millis()
    );
}
