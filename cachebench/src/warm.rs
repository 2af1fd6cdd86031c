//! Warm restart: the hit ratio over the first 2 x capacity requests after a
//! persistent cache restarts, with the admission summary restored (warm),
//! without it (cold: entries restored, sketch empty), and from an empty
//! cache, beside the same requests served by the cache that never
//! restarted (steady).
//!
//! For each size and each restart point: the requests before it (get,
//! insert on miss) run on a persistent shardcache; its log is rewritten
//! (which saves the summary) and copied twice, once with the summary and
//! once without; the steady cache then serves the window, and each copy is
//! opened and serves the same window. A window of 2 x size requests is
//! short, so one restart point is noisy: the table gives the mean over
//! several, evenly spaced from 30 % to 90 % of the trace, and the worst
//! difference seen.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use shardcache::persist::{AdmissionRestore, FileLog, Fsync};
use shardcache::Cache;

use crate::report::Table;
use crate::trace::TraceSpec;

/// The columns of the table.
pub(crate) const COLUMNS: [&str; 8] = [
    "steady",
    "warm",
    "cold",
    "empty",
    "warm - steady",
    "cold - steady",
    "worst warm - steady",
    "worst cold - steady",
];

fn open(path: &Path, capacity: u64) -> Result<(Cache<u64, u64>, AdmissionRestore), String> {
    let log = FileLog::open(path, Fsync::Never)
        .map_err(|e| e.to_string())?
        .rewrite_policy(0, 0);
    let (cache, report) = Cache::builder()
        .max_capacity(capacity)
        .build_persistent(log)
        .map_err(|e| e.to_string())?;
    Ok((cache, report.admission))
}

/// Hit ratio (%) of `cache` over `keys`, inserting on a miss.
fn serve(cache: &Cache<u64, u64>, keys: &[u64]) -> f64 {
    let mut hits = 0u64;
    for &k in keys {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, k);
        }
    }
    100.0 * hits as f64 / keys.len().max(1) as f64
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Steady, warm, cold and empty hit ratios (%) over `window`, after a
/// restart following `prefix`, for a cache of `size` entries.
fn restart_once(size: u64, prefix: &[u64], window: &[u64]) -> Result<[f64; 4], String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let live = dir.path().join("live.log");
    let (steady, _) = open(&live, size)?;
    serve(&steady, prefix);
    steady.rewrite_log().map_err(|e| e.to_string())?;
    steady.sync().map_err(|e| e.to_string())?;
    let warm_log = dir.path().join("warm.log");
    let cold_log = dir.path().join("cold.log");
    copy(&live, &warm_log)?;
    copy(
        &with_suffix(&live, ".admission"),
        &with_suffix(&warm_log, ".admission"),
    )?;
    copy(&live, &cold_log)?;
    let steady_ratio = serve(&steady, window);
    drop(steady);
    let (warm, restored) = open(&warm_log, size)?;
    if !matches!(restored, AdmissionRestore::Restored { .. }) {
        return Err(format!("the summary was not restored: {restored:?}"));
    }
    let warm_ratio = serve(&warm, window);
    drop(warm);
    let (cold, _) = open(&cold_log, size)?;
    let cold_ratio = serve(&cold, window);
    drop(cold);
    let empty: Cache<u64, u64> = Cache::builder()
        .max_capacity(size)
        .build()
        .map_err(|e| e.to_string())?;
    Ok([steady_ratio, warm_ratio, cold_ratio, serve(&empty, window)])
}

/// One row per size: the mean steady, warm, cold and empty hit ratios (%)
/// over the windows of `2 x size` requests after `restarts` restart points,
/// the mean differences, and the worst differences.
pub(crate) fn run(
    spec: &TraceSpec,
    sizes: &[u64],
    limit: Option<u64>,
    restarts: usize,
) -> Result<Table, String> {
    if sizes.is_empty() || sizes.contains(&0) || restarts == 0 {
        return Err("--sizes needs sizes of at least 1, --restarts at least 1".into());
    }
    let mut table = Table::new("size", COLUMNS.iter().map(|c| c.to_string()).collect(), 2);
    for &size in sizes {
        let keys: Vec<u64> = spec
            .open(size, limit, Arc::new(AtomicU64::new(0)))
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let window = 2 * size as usize;
        let last = (keys.len() * 9 / 10).min(keys.len().saturating_sub(window));
        let first = keys.len() * 3 / 10;
        if last < first {
            return Err(format!(
                "{}: {} requests are too few for a window of {window} after 30 % of them",
                spec.label(),
                keys.len()
            ));
        }
        let mut sum = [0.0; 4];
        let mut worst = [f64::INFINITY; 2];
        for i in 0..restarts {
            let at = first + (last - first) * i / restarts.saturating_sub(1).max(1);
            let r = restart_once(size, &keys[..at], &keys[at..at + window])?;
            for (s, x) in sum.iter_mut().zip(r) {
                *s += x;
            }
            worst[0] = worst[0].min(r[1] - r[0]);
            worst[1] = worst[1].min(r[2] - r[0]);
        }
        let mean = sum.map(|s| s / restarts as f64);
        table.rows.push((
            size.to_string(),
            vec![
                mean[0],
                mean[1],
                mean[2],
                mean[3],
                mean[1] - mean[0],
                mean[2] - mean[0],
                worst[0],
                worst[1],
            ],
        ));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_synthetic_table() {
        let spec = TraceSpec::parse("zipf:1.0:2000", None).expect("spec");
        let t = run(&spec, &[50, 200], Some(20_000), 2).expect("run");
        assert_eq!(t.rows.len(), 2);
        for (_, row) in &t.rows {
            assert!(
                row[..4].iter().all(|r| (0.0..=100.0).contains(r)),
                "{row:?}"
            );
        }
    }
}
