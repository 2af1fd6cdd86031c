//! `cachebench suite`: every subject beside LRU and Belady's optimum on
//! synthetic workloads that pull in different directions and, when given,
//! real traces at every size from 0.1 % to 50 % of their distinct keys.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::report::Table;
use crate::trace::{FileTrace, TraceSpec};
use crate::{mix, opt, subjects, workloads};

/// Which part of the suite to run, and how.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// The subjects to replay (OPT is always computed).
    pub(crate) names: Vec<&'static str>,
    /// Seed of the synthetic generators.
    pub(crate) seed: u64,
    /// Cache sizes of the synthetic families.
    pub(crate) synthetic_sizes: Vec<u64>,
    /// Requests per synthetic workload: this many times the cache size,
    /// within `min_len..=max_len`.
    pub(crate) len_factor: u64,
    /// Shortest synthetic workload.
    pub(crate) min_len: usize,
    /// Longest synthetic workload.
    pub(crate) max_len: usize,
    /// Synthetic families to run.
    pub(crate) families: Vec<String>,
    /// Trace files to replay at every size of their ladder.
    pub(crate) traces: Vec<PathBuf>,
    /// Ratio between consecutive sizes of a trace's ladder.
    pub(crate) ladder: f64,
    /// Replay only the first or second half of each trace (held-out checks).
    pub(crate) half: Option<Half>,
    /// Replay each trace backwards (after taking the half).
    pub(crate) reverse: bool,
    /// Replay the traces as one, interleaved (see [`mix`]), before taking
    /// the half or reversing.
    pub(crate) interleave: bool,
    /// Replays of every cell, each with fresh caches (and so fresh random
    /// hash seeds): at least 1.
    pub(crate) replays: usize,
}

/// A half of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Half {
    /// The first half of the requests.
    First,
    /// The second half of the requests.
    Second,
}

/// One cell's results: hit ratio % per subject, in `names` order (the
/// mean over the replays), and OPT's.
struct Cell {
    workload: String,
    size: u64,
    opt: f64,
    ratios: Vec<f64>,
    /// Per replay, hit ratio % per subject.
    replays: Vec<Vec<f64>>,
}

/// The trace files in `dir` the suite knows (`*.lis`, `*.lis.zst`), sorted.
pub(crate) fn traces_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".lis") || n.ends_with(".lis.zst")
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Sizes from 0.1 % to 50 % of `distinct`, each `ladder` times the last.
pub(crate) fn ladder(distinct: usize, ladder: f64) -> Vec<u64> {
    let lo = (distinct as f64 * 0.001).ceil().max(1.0);
    let hi = (distinct as f64 * 0.5).floor().max(lo);
    let mut v = Vec::new();
    let mut s = lo;
    while s < hi * 0.999 {
        v.push(s.round() as u64);
        s *= ladder.max(1.1);
    }
    v.push(hi as u64);
    v.dedup();
    v
}

/// Runs the suite; prints one table per workload group and a summary.
pub(crate) fn run(p: &Params) -> Result<(), String> {
    let mut cells = Vec::new();
    for family in &p.families {
        for &size in &p.synthetic_sizes {
            let len = (size.saturating_mul(p.len_factor) as usize).clamp(p.min_len, p.max_len);
            let keys = workloads::generate(family, size, len, p.seed)?;
            let next = opt::next_uses(&keys);
            cells.push(cell(family, &keys, &next, size, &p.names, p.replays));
        }
    }
    print_group("Synthetic workloads", &cells, &p.names);
    let synthetic = cells.len();
    for (name, mut keys) in traces(p)? {
        if let Some(half) = p.half {
            let mid = keys.len() / 2;
            keys = match half {
                Half::First => keys[..mid].to_vec(),
                Half::Second => keys[mid..].to_vec(),
            };
        }
        if p.reverse {
            keys.reverse();
        }
        let distinct = keys.iter().collect::<HashSet<_>>().len();
        let next = opt::next_uses(&keys);
        let mut name = name;
        if p.reverse {
            name.push_str(" reversed");
        }
        let start = cells.len();
        for size in ladder(distinct, p.ladder) {
            cells.push(cell(&name, &keys, &next, size, &p.names, p.replays));
        }
        let title = format!(
            "{name}: {} requests, {distinct} distinct keys{}",
            keys.len(),
            p.half.map_or(String::new(), |h| format!(", {h:?} half"))
        );
        print_group(&title, &cells[start..], &p.names);
    }
    summary(&cells[..synthetic], &cells[synthetic..], &p.names);
    if p.replays > 1 {
        replay_summary(&cells, &p.names, p.replays);
    }
    Ok(())
}

/// The traces to replay, named: each of `p.traces`, or with
/// `p.interleave` one made of all of them (`A+B`).
fn traces(p: &Params) -> Result<Vec<(String, Vec<u64>)>, String> {
    if !p.interleave {
        return p
            .traces
            .iter()
            .map(|path| Ok((trace_name(path), load(path)?)))
            .collect();
    }
    if p.traces.len() < 2 {
        return Err(format!(
            "--interleave needs two or more traces, found {}",
            p.traces.len()
        ));
    }
    let loaded = p
        .traces
        .iter()
        .map(|path| load_requests(path))
        .collect::<Result<Vec<_>, _>>()?;
    let name = p
        .traces
        .iter()
        .map(|t| trace_name(t))
        .collect::<Vec<_>>()
        .join("+");
    Ok(vec![(name, mix::interleave(&loaded, p.seed))])
}

fn trace_name(path: &Path) -> String {
    let n = path.file_name().and_then(|n| n.to_str()).unwrap_or("trace");
    n.trim_end_matches(".zst")
        .trim_end_matches(".lis")
        .to_string()
}

fn load(path: &Path) -> Result<Vec<u64>, String> {
    let spec = TraceSpec::parse(&path.display().to_string(), None)?;
    let stream = spec
        .open(0, None, Arc::new(AtomicU64::new(0)))
        .map_err(|e| e.to_string())?;
    stream
        .map(|k| k.map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()
}

/// The requests of the trace file at `path`, each kept whole.
fn load_requests(path: &Path) -> Result<Vec<mix::Request>, String> {
    let format = crate::trace::detect_format(path);
    let mut t =
        FileTrace::open(path, format, Arc::new(AtomicU64::new(0))).map_err(|e| e.to_string())?;
    std::iter::from_fn(|| t.next_request())
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

fn cell(
    workload: &str,
    keys: &[u64],
    next: &[u64],
    size: u64,
    names: &[&'static str],
    replays: usize,
) -> Cell {
    let n = keys.len().max(1) as f64;
    let opt = 100.0 * opt::hits(keys, next, size as usize) as f64 / n;
    let replays: Vec<Vec<f64>> = (0..replays.max(1))
        .map(|_| {
            names
                .iter()
                .map(|name| match subjects::build(name, size) {
                    Ok(c) => {
                        let hits = keys.iter().filter(|&&k| c.get(k) || (c.insert(k), false).1);
                        100.0 * hits.count() as f64 / n
                    }
                    Err(_) => f64::NAN,
                })
                .collect()
        })
        .collect();
    let ratios = (0..names.len())
        .map(|i| replays.iter().map(|r| r[i]).sum::<f64>() / replays.len() as f64)
        .collect();
    Cell {
        workload: workload.to_string(),
        size,
        opt,
        ratios,
        replays,
    }
}

/// The gap of the first subject (shardcache) to the best of the rivals
/// (every other subject except the `shardcache-*` variants), in the means.
fn gap(c: &Cell, names: &[&'static str]) -> Option<f64> {
    gap_in(&c.ratios, names)
}

/// [`gap`] in one set of hit ratios (`names` order).
fn gap_in(ratios: &[f64], names: &[&'static str]) -> Option<f64> {
    let first = *ratios.first()?;
    let best = names
        .iter()
        .zip(ratios)
        .skip(1)
        .filter(|(n, _)| !n.starts_with("shardcache"))
        .map(|(_, &r)| r)
        .fold(f64::NEG_INFINITY, f64::max);
    best.is_finite().then_some(first - best)
}

fn print_group(title: &str, cells: &[Cell], names: &[&'static str]) {
    let mut cols = vec!["OPT".to_string()];
    cols.extend(names.iter().map(|n| n.to_string()));
    cols.extend(names.iter().take(1).map(|n| format!("{n} % of OPT")));
    cols.push("gap to best rival".into());
    if cells.first().is_some_and(|c| c.replays.len() > 1) {
        cols.extend(names.iter().take(1).map(|n| format!("{n} spread")));
    }
    let mut t = Table::new("workload @ size", cols, 2);
    for c in cells {
        let mut row = vec![c.opt];
        row.extend(&c.ratios);
        row.extend(c.ratios.first().map(|r| share(*r, c.opt)));
        row.push(gap(c, names).unwrap_or(f64::NAN));
        if c.replays.len() > 1 {
            let first = c.replays.iter().map(|r| r[0]);
            let lo = first.clone().fold(f64::INFINITY, f64::min);
            let hi = first.fold(f64::NEG_INFINITY, f64::max);
            row.push(hi - lo);
        }
        t.rows.push((format!("{} @ {}", c.workload, c.size), row));
    }
    println!("## {title}\n\n{}", t.markdown());
}

fn share(r: f64, opt: f64) -> f64 {
    if opt > 0.0 {
        100.0 * r / opt
    } else {
        100.0
    }
}

fn summary(synthetic: &[Cell], traces: &[Cell], names: &[&'static str]) {
    println!("## Summary\n");
    for (what, cells) in [("synthetic", synthetic), ("traces", traces)] {
        if cells.is_empty() {
            continue;
        }
        let means: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let m = cells.iter().map(|c| share(c.ratios[i], c.opt)).sum::<f64>()
                    / cells.len() as f64;
                format!("{n} {m:.1} %")
            })
            .collect();
        println!(
            "- mean share of OPT, {what} ({} cells): {}",
            cells.len(),
            means.join(", ")
        );
    }
    let all: Vec<&Cell> = synthetic.iter().chain(traces).collect();
    let losing: Vec<String> = all
        .iter()
        .filter_map(|c| {
            let g = gap(c, names)?;
            (g < -0.3).then(|| format!("{} @ {} ({g:+.2})", c.workload, c.size))
        })
        .collect();
    println!(
        "- cells where {} is more than 0.3 below the best rival: {} of {}{}{}",
        names.first().unwrap_or(&"-"),
        losing.len(),
        all.len(),
        if losing.is_empty() { "" } else { ": " },
        losing.join(", ")
    );
}

/// With several replays: the cells where the first subject fell more than
/// 0.3 below the best rival in at least one replay, with the gap of each.
fn replay_summary(cells: &[Cell], names: &[&'static str], replays: usize) {
    let flaky: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            let gaps: Vec<f64> = c.replays.iter().filter_map(|r| gap_in(r, names)).collect();
            gaps.iter().any(|&g| g < -0.3).then(|| {
                let list: Vec<String> = gaps.iter().map(|g| format!("{g:+.2}")).collect();
                format!("{} @ {} ({})", c.workload, c.size, list.join(" "))
            })
        })
        .collect();
    println!(
        "- cells where {} was more than 0.3 below the best rival in any of the {replays} replays: {}{}{}",
        names.first().unwrap_or(&"-"),
        flaky.len(),
        if flaky.is_empty() { "" } else { ": " },
        flaky.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_spans_a_thousandth_to_a_half() {
        let l = ladder(186_880, 2.0);
        assert_eq!(l.first(), Some(&187));
        assert_eq!(l.last(), Some(&93_440));
        assert!(l.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(ladder(1, 2.0), vec![1]);
    }

    #[test]
    fn tiny_suite_runs_and_opt_bounds_every_subject() {
        let p = Params {
            names: subjects::ALL.to_vec(),
            seed: 3,
            synthetic_sizes: vec![50],
            len_factor: 20,
            min_len: 2_000,
            max_len: 2_000,
            families: workloads::FAMILIES.iter().map(|s| s.to_string()).collect(),
            traces: vec![],
            ladder: 2.0,
            half: None,
            reverse: false,
            interleave: false,
            replays: 2,
        };
        assert!(run(&p).is_ok());
        // The subjects that never hold more than their capacity (moka and
        // quick_cache round it per shard).
        let exact = ["shardcache", "shardcache-lru", "lru"];
        for family in workloads::FAMILIES {
            let keys = workloads::generate(family, 50, 2_000, 3).expect("known");
            let c = cell(family, &keys, &opt::next_uses(&keys), 50, &exact, 2);
            for r in c.replays.iter().flatten() {
                assert!(*r <= c.opt + 1e-9, "{family}: {r} > OPT {}", c.opt);
            }
        }
    }
}
