//! Read scaling: hits only on hot key sets, each subject on 1 and on 2
//! threads in interleaved rounds, and the ratio of the two throughputs.
//!
//! A cache whose hits write a shared cache line (a lock word, a reference
//! count) gains little or loses from a second thread reading the same keys;
//! one whose hits write nothing shared approaches 2x on two cores.

use std::time::Duration;

use crate::hitratio::progress_bar;
use crate::report::Table;
use crate::throughput::{gen_stream, median, prefilled, round, Params};

/// Thread counts compared.
const THREADS: [usize; 2] = [1, 2];

/// Runs every subject on each hot set in `key_sets` (hits only: the cache
/// holds every key), at 1 and 2 threads, `rounds` interleaved rounds of
/// `duration`. Rows are `subject @ keys`; columns are median Mops/s on 1 and
/// 2 threads, their ratio, and each thread count's median relative to
/// `quick_cache` on the same key set.
pub(crate) fn run(
    names: &[&'static str],
    key_sets: &[u64],
    rounds: usize,
    duration: Duration,
) -> Result<Table, String> {
    if rounds == 0 || key_sets.contains(&0) {
        return Err("rounds and key-set sizes must be at least 1".into());
    }
    let mut table = Table::new(
        "subject @ keys",
        vec![
            "1 thread Mops/s".into(),
            "2 threads Mops/s".into(),
            "2 thr / 1 thr".into(),
            "1 thr vs quick_cache".into(),
            "2 thr vs quick_cache".into(),
        ],
        2,
    );
    let pb = progress_bar(
        Some((key_sets.len() * rounds * names.len() * THREADS.len()) as u64),
        "scaling rounds".into(),
    );
    for &keys in key_sets {
        let p = Params {
            threads: 2,
            duration,
            rounds,
            read_pct: 100,
            capacity: keys * 2,
            keys,
            zipf: 1.0,
            stream_len: 1 << 20,
        };
        let streams: Vec<Vec<u64>> = (0..2).map(|t| gen_stream(&p, t)).collect();
        // Capacity twice the key set: every key is cached.
        let caches = prefilled(names, &p)?;
        // results[subject][threads index] = rates of each round.
        let mut results = vec![vec![Vec::with_capacity(rounds); THREADS.len()]; names.len()];
        for _ in 0..rounds {
            for (cache, res) in caches.iter().zip(results.iter_mut()) {
                for (ti, &t) in THREADS.iter().enumerate() {
                    res[ti].push(round(cache.as_ref(), &streams[..t], duration));
                    pb.inc(1);
                }
            }
        }
        let medians: Vec<[f64; 2]> = results
            .iter_mut()
            .map(|r| [median(&mut r[0]), median(&mut r[1])])
            .collect();
        let base = names
            .iter()
            .position(|&n| n == "quick_cache")
            .map(|i| medians[i]);
        for (name, m) in names.iter().zip(&medians) {
            let (b1, b2) = base.map_or((f64::NAN, f64::NAN), |b| (m[0] / b[0], m[1] / b[1]));
            table.rows.push((
                format!("{name} @ {keys}"),
                vec![m[0], m[1], m[1] / m[0], b1, b2],
            ));
        }
    }
    pb.finish_and_clear();
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_scaling_table() {
        let t = run(
            &["shardcache", "quick_cache"],
            &[64],
            1,
            Duration::from_millis(5),
        )
        .expect("run");
        assert_eq!(t.rows.len(), 2);
        for (_, row) in &t.rows {
            assert!(row[0] > 0.0 && row[1] > 0.0);
            assert!((row[2] - row[1] / row[0]).abs() < 1e-9);
        }
        // quick_cache against itself.
        assert!((t.rows[1].1[3] - 1.0).abs() < 1e-9);
    }
}
