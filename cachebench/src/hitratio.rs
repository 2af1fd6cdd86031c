//! Hit-ratio replay: get, then insert on a miss.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::Table;
use crate::subjects;
use crate::trace::TraceSpec;

/// A progress bar on stderr, hidden when stdout is not a terminal.
pub(crate) fn progress_bar(total: Option<u64>, message: String) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    if let Ok(style) =
        ProgressStyle::with_template("{msg:30} [{elapsed_precise}] {wide_bar} {percent:>3}%")
    {
        pb.set_style(style);
    }
    pb.set_message(message);
    pb
}

/// Replays `spec` once per cache size against every named subject. Returns a
/// table with one row per size and one hit-ratio (%) column per subject.
pub(crate) fn run(
    spec: &TraceSpec,
    sizes: &[u64],
    names: &[&'static str],
    limit: Option<u64>,
) -> Result<Table, String> {
    if sizes.is_empty() {
        return Err("--sizes needs at least one size".into());
    }
    if let Some(&0) = sizes.iter().find(|&&s| s == 0) {
        return Err("cache sizes must be at least 1".into());
    }
    let mut table = Table::new("size", names.iter().map(|n| n.to_string()).collect(), 2);
    for &size in sizes {
        let caches = names
            .iter()
            .map(|n| subjects::build(n, size))
            .collect::<Result<Vec<_>, _>>()?;
        let counter = Arc::new(AtomicU64::new(0));
        let keys = spec
            .open(size, limit, counter.clone())
            .map_err(|e| e.to_string())?;
        let pb = progress_bar(
            spec.progress_total(limit),
            format!("{} @ {size}", short(&spec.label())),
        );
        let mut hits = vec![0u64; caches.len()];
        let mut requests = 0u64;
        for key in keys {
            let key = key.map_err(|e| e.to_string())?;
            requests += 1;
            for (cache, h) in caches.iter().zip(hits.iter_mut()) {
                if cache.get(key) {
                    *h += 1;
                } else {
                    cache.insert(key);
                }
            }
            if requests.is_multiple_of(65_536) {
                pb.set_position(counter.load(Ordering::Relaxed));
            }
        }
        pb.finish_and_clear();
        if requests == 0 {
            return Err(format!("{}: trace produced no requests", spec.label()));
        }
        let ratios = hits
            .iter()
            .map(|&h| 100.0 * h as f64 / requests as f64)
            .collect();
        table.rows.push((size.to_string(), ratios));
    }
    Ok(table)
}

fn short(label: &str) -> String {
    label.rsplit('/').next().unwrap_or(label).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_synthetic_table() {
        let spec = TraceSpec::parse("zipf:1.0:500", None).expect("spec");
        let t = run(&spec, &[10, 50], &subjects::ALL, Some(5_000)).expect("run");
        assert_eq!(t.rows.len(), 2);
        for (_, row) in &t.rows {
            assert_eq!(row.len(), subjects::ALL.len());
            assert!(row.iter().all(|v| (0.0..=100.0).contains(v)));
        }
        // Bigger caches hit more for LRU.
        assert!(t.rows[1].1[4] > t.rows[0].1[4]);
    }

    #[test]
    fn loop_defeats_lru() {
        let spec = TraceSpec::parse("loop", None).expect("spec");
        let t = run(&spec, &[100], &["lru"], Some(10_000)).expect("run");
        assert!(t.rows[0].1[0] < 1.0, "{:?}", t.rows);
    }
}
