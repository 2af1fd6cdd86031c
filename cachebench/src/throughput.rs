//! Multi-threaded throughput: pre-generated Zipf key streams replayed for a
//! fixed time, rounds interleaved across subjects.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::hitratio::progress_bar;
use crate::report::Table;
use crate::subjects::{self, Subject};
use crate::trace::{Zipf, SEED};

/// Throughput run parameters.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// Worker threads.
    pub(crate) threads: usize,
    /// Length of one timed round per subject.
    pub(crate) duration: Duration,
    /// Rounds per subject (the median is reported).
    pub(crate) rounds: usize,
    /// Percentage of operations that are reads (get, insert on miss).
    pub(crate) read_pct: u8,
    /// Cache capacity in entries.
    pub(crate) capacity: u64,
    /// Number of distinct keys.
    pub(crate) keys: u64,
    /// Zipf exponent of key popularity.
    pub(crate) zipf: f64,
    /// Operations pre-generated per thread (replayed cyclically).
    pub(crate) stream_len: usize,
}

/// Marks a write (plain insert) in a pre-generated operation.
const WRITE: u64 = 1 << 63;

pub(crate) fn gen_stream(p: &Params, thread: usize) -> Vec<u64> {
    let zipf = Zipf::new(p.zipf, p.keys);
    let mut rng = StdRng::seed_from_u64(SEED ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9));
    (0..p.stream_len)
        .map(|_| {
            let k = zipf.sample(&mut rng);
            if rng.gen_range(0..100u8) < p.read_pct {
                k
            } else {
                k | WRITE
            }
        })
        .collect()
}

/// One timed round: returns million operations per second.
pub(crate) fn round(cache: &dyn Subject, streams: &[Vec<u64>], duration: Duration) -> f64 {
    let barrier = Barrier::new(streams.len());
    let rates: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .iter()
            .map(|ops| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut done = 0u64;
                    let mut hits = 0u64;
                    'outer: loop {
                        for chunk in ops.chunks(1024) {
                            for &op in chunk {
                                if op & WRITE != 0 {
                                    cache.insert(op & !WRITE);
                                } else if cache.get(op) {
                                    hits += 1;
                                } else {
                                    cache.insert(op);
                                }
                            }
                            done += chunk.len() as u64;
                            if start.elapsed() >= duration {
                                break 'outer;
                            }
                        }
                    }
                    black_box(hits);
                    done as f64 / start.elapsed().as_secs_f64() / 1e6
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(f64::NAN))
            .collect()
    });
    rates.iter().sum()
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Each subject built with `p.capacity` and holding keys `1..=` as many of
/// `p.keys` as fit, settled: the state every timed round starts from.
pub(crate) fn prefilled(
    names: &[&'static str],
    p: &Params,
) -> Result<Vec<Box<dyn Subject>>, String> {
    names
        .iter()
        .map(|n| {
            let c = subjects::build(n, p.capacity)?;
            for k in 1..=p.capacity.min(p.keys) {
                c.insert(k);
            }
            c.settle();
            Ok(c)
        })
        .collect()
}

/// Runs the benchmark. Rows are subjects; columns are the median, min and
/// max Mops/s and the median relative to `shardcache`.
pub(crate) fn run(names: &[&'static str], p: &Params) -> Result<Table, String> {
    if p.threads == 0 || p.rounds == 0 || p.keys == 0 || p.capacity == 0 || p.stream_len == 0 {
        return Err("threads, rounds, keys, capacity must all be at least 1".into());
    }
    if p.read_pct > 100 {
        return Err("--read-pct must be in 0..=100".into());
    }
    if !(p.zipf.is_finite() && p.zipf >= 0.0) {
        return Err("--zipf must be a finite exponent >= 0".into());
    }
    // Key generation is not timed.
    let streams: Vec<Vec<u64>> = (0..p.threads).map(|t| gen_stream(p, t)).collect();
    let caches = prefilled(names, p)?;
    let pb = progress_bar(
        Some((p.rounds * caches.len()) as u64),
        "throughput rounds".into(),
    );
    let mut results = vec![Vec::with_capacity(p.rounds); caches.len()];
    for _ in 0..p.rounds {
        for (cache, res) in caches.iter().zip(results.iter_mut()) {
            res.push(round(cache.as_ref(), &streams, p.duration));
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
    let base = names
        .iter()
        .position(|&n| n == "shardcache")
        .map(|i| medians[i]);
    let mut table = Table::new(
        "subject",
        vec![
            "median Mops/s".into(),
            "min".into(),
            "max".into(),
            "vs shardcache".into(),
        ],
        2,
    );
    for ((name, r), m) in names.iter().zip(&results).zip(&medians) {
        let min = r.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ratio = base.map_or(f64::NAN, |b| m / b);
        table
            .rows
            .push((name.to_string(), vec![*m, min, max, ratio]));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_throughput_table() {
        let p = Params {
            threads: 2,
            duration: Duration::from_millis(10),
            rounds: 2,
            read_pct: 90,
            capacity: 100,
            keys: 1000,
            zipf: 1.0,
            stream_len: 4096,
        };
        let t = run(&subjects::ALL, &p).expect("run");
        assert_eq!(t.rows.len(), 5);
        for (_, row) in &t.rows {
            assert_eq!(row.len(), 4);
            assert!(row[0] > 0.0);
        }
        assert!((t.rows[0].1[3] - 1.0).abs() < 1e-9);
    }
}
