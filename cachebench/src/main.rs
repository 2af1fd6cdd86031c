//! `cachebench`: hit-ratio, throughput and memory benchmarks of `shardcache`
//! beside moka, quick_cache and a mutex-wrapped `lru`.
//!
//! Run without arguments for a quick overview (synthetic hit ratios and a
//! two-thread throughput comparison); see `--help` for the subcommands.

mod arc;
mod hitratio;
mod lirs;
mod memory;
mod mix;
mod opt;
mod reference;
mod report;
mod scaling;
// The SIEVE policy of the `sieve` example, written against the public
// `EvictionPolicy` trait: the same file, so it is run as users would write it.
#[path = "../../examples/sieve/policy.rs"]
mod sieve;
mod subjects;
mod suite;
mod throughput;
mod trace;
mod warm;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use report::Table;
use trace::{Format, TraceSpec};

#[global_allocator]
static ALLOC: memory::Counting = memory::Counting;

/// Benchmarks shardcache against moka, quick_cache and Mutex<lru::LruCache>.
///
/// Without a subcommand: synthetic Zipf(1.0) and scan-heavy hit ratios at
/// three cache sizes, then a 2-thread throughput comparison.
#[derive(Parser, Debug)]
#[command(name = "cachebench", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay a trace (get, insert on miss) and print hit ratio % per cache size and subject.
    Hitratio(HitArgs),
    /// Multi-threaded Zipf get/insert throughput, median Mops/s per subject.
    Throughput(ThroughputArgs),
    /// Bytes per entry of a full u64 -> u64 cache, via a counting allocator.
    Memory(MemoryArgs),
    /// Hits only on hot key sets, 1 thread against 2 in interleaved rounds:
    /// median Mops/s and the 2-thread / 1-thread ratio per subject.
    Scaling(ScalingArgs),
    /// Hit ratio % beside LRU and Belady's optimum (OPT) on seeded synthetic
    /// workloads at three sizes and, with --traces, on real traces at every
    /// size from 0.1 % to 50 % of their distinct keys.
    Suite(SuiteArgs),
    /// Hit ratio % over the first 2 x size requests after a persistent
    /// cache restarts: with its admission summary restored (warm), without
    /// (cold), from an empty cache, and without a restart (steady).
    WarmRestart(WarmArgs),
}

#[derive(Args, Debug)]
struct WarmArgs {
    /// Trace file (ARC or plain, `.zst` for zstd) or a synthetic generator
    /// (`zipf:S:N`, `scan`, `loop`, `shift`).
    #[arg(long)]
    trace: String,
    /// Trace file format (default: arc if the file name contains ".lis", else plain).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Comma-separated cache sizes, in entries.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    sizes: Vec<u64>,
    /// Read at most N requests (synthetic traces default to 1000000).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Restart points per size, evenly spaced from 30 % to 90 % of the
    /// requests; the table gives means and the worst difference.
    #[arg(long, default_value_t = 5)]
    restarts: usize,
    /// Also write the table as CSV to this file.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SuiteArgs {
    /// A directory of ARC traces (`*.lis`, `*.lis.zst`) or one trace file;
    /// without it only the synthetic workloads run.
    #[arg(long, value_name = "PATH")]
    traces: Option<PathBuf>,
    /// Seed of the synthetic generators (change it for a held-out run).
    #[arg(long, default_value_t = trace::SEED)]
    seed: u64,
    /// Comma-separated cache sizes of the synthetic workloads.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<u64>,
    /// Comma-separated synthetic families (default: all; `none` for none).
    /// Known: stack, zipf:S, loop:F, scan, phases.
    #[arg(long, value_delimiter = ',')]
    families: Vec<String>,
    /// Ratio between consecutive cache sizes of a trace.
    #[arg(long, default_value_t = 2.0)]
    ladder: f64,
    /// Replay only one half of each trace (held-out checks).
    #[arg(long, value_enum)]
    half: Option<suite::Half>,
    /// Replay each trace (or the half chosen) backwards: the same requests
    /// and reuse distances, so LRU's and OPT's hit ratios barely move, in
    /// an order no policy was tuned on (held-out checks).
    #[arg(long)]
    reverse: bool,
    /// Replay the traces as one (two workloads sharing a cache, each in
    /// its own order): requests of several blocks stay whole, the next
    /// taken from a trace picked at random (seeded by --seed) with odds
    /// proportional to what it has left; keys are renumbered so that no
    /// two traces share one. Applied before --half and --reverse.
    #[arg(long)]
    interleave: bool,
    /// Comma-separated subjects; the first is the one compared with the rest.
    #[arg(long, value_delimiter = ',')]
    subjects: Vec<String>,
    /// Replays of every cell with fresh caches, each with its own random
    /// hash seed (most cells move by a few tenths of a point between
    /// seeds, a phase change by up to about one). With more than one, the
    /// tables give means, a column gives the spread of the first subject,
    /// and the summary also lists the cells it lost in any replay.
    #[arg(long, default_value_t = 1)]
    replays: usize,
}

/// Options shared by every subcommand.
#[derive(Args, Debug, Clone)]
struct Common {
    /// Comma-separated subjects to run (default: all but the reference).
    /// Known: shardcache, shardcache-lru, moka, quick_cache, lru, and the
    /// reference fifo-map (a lock-striped FIFO hash map, no policy: a
    /// yardstick, not a cache to use), arc and lirs (ARC and LIRS under a
    /// mutex, for hit ratios).
    #[arg(long, value_delimiter = ',')]
    subjects: Vec<String>,
    /// Also write the table as CSV to this file.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct HitArgs {
    /// Trace file (ARC `start nblocks ignore reqno` or plain keys, `.zst` for
    /// zstd) or a synthetic generator: `zipf:S:N`, `scan`, `loop`, `shift`.
    #[arg(long)]
    trace: String,
    /// Trace file format (default: arc if the file name contains ".lis", else plain).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Comma-separated cache sizes, in entries.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<u64>,
    /// Replay at most N requests (synthetic traces default to 1000000).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Plot hit ratio vs cache size to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct ThroughputArgs {
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Length of each timed round, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Rounds per subject, interleaved across subjects; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Percentage of reads (get, insert on miss); the rest are inserts.
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(0..=100))]
    read_pct: u8,
    /// Cache capacity in entries.
    #[arg(long, default_value_t = 100_000)]
    capacity: u64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Zipf exponent of key popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct ScalingArgs {
    /// Hot key-set sizes (every key cached: hits only).
    #[arg(long, value_delimiter = ',', default_values_t = [64u64, 10_000])]
    keys: Vec<u64>,
    /// Length of each timed round, in milliseconds.
    #[arg(long, default_value_t = 500)]
    duration_ms: u64,
    /// Rounds per subject and thread count, interleaved; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct MemoryArgs {
    /// Number of entries (the cache capacity and the number inserted).
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn emit(table: &Table, csv: Option<&PathBuf>) -> Result<(), String> {
    println!("{}", table.markdown());
    if let Some(path) = csv {
        report::write_csv(table, path)?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        None => default_run(),
        Some(Command::Hitratio(a)) => {
            let names = subjects::select(&a.common.subjects)?;
            let spec = TraceSpec::parse(&a.trace, a.format)?;
            println!(
                "Hit ratio % (get, insert on miss) for trace {}; rows = cache size in entries.\n",
                spec.label()
            );
            let table = hitratio::run(&spec, &a.sizes, &names, a.limit)?;
            emit(&table, a.common.csv.as_ref())?;
            if let Some(plot) = &a.plot {
                report::write_svg(&table, &format!("hit ratio: {}", spec.label()), plot)?;
            }
            Ok(())
        }
        Some(Command::Throughput(a)) => {
            let names = subjects::select(&a.common.subjects)?;
            let p = throughput::Params {
                threads: a.threads,
                duration: Duration::from_millis(a.duration_ms),
                rounds: a.rounds,
                read_pct: a.read_pct,
                capacity: a.capacity,
                keys: a.keys,
                zipf: a.zipf,
                stream_len: 1 << 20,
            };
            println!(
                "Throughput, {} threads, {}% reads, Zipf({}) over {} keys, capacity {}: median of {} x {} ms rounds.\n",
                p.threads, p.read_pct, p.zipf, p.keys, p.capacity, p.rounds, a.duration_ms
            );
            let table = throughput::run(&names, &p)?;
            emit(&table, a.common.csv.as_ref())
        }
        Some(Command::Memory(a)) => {
            let names = subjects::select(&a.common.subjects)?;
            println!(
                "Memory of a full u64 -> u64 cache with capacity {} (allocated-bytes growth after filling and settling, and again after inserting twice as many further keys).\n",
                a.entries
            );
            let table = memory::run(&names, a.entries)?;
            emit(&table, a.common.csv.as_ref())
        }
        Some(Command::Scaling(a)) => {
            let names = subjects::select(&a.common.subjects)?;
            println!(
                "Read scaling: hits only, Zipf(1.0) over each hot set (all cached), 1 and 2 threads, median of {} x {} ms rounds.\n",
                a.rounds, a.duration_ms
            );
            let table = scaling::run(
                &names,
                &a.keys,
                a.rounds,
                Duration::from_millis(a.duration_ms),
            )?;
            emit(&table, a.common.csv.as_ref())
        }
        Some(Command::Suite(a)) => suite_run(a),
        Some(Command::WarmRestart(a)) => {
            let spec = TraceSpec::parse(&a.trace, a.format)?;
            println!(
                "Hit ratio % over the 2 x size requests after a restart of a persistent \
                 shardcache, trace {}, mean of {} restart points; rows = cache size in entries.\n",
                spec.label(),
                a.restarts
            );
            let table = warm::run(&spec, &a.sizes, a.limit, a.restarts)?;
            emit(&table, a.csv.as_ref())
        }
    }
}

fn suite_run(a: SuiteArgs) -> Result<(), String> {
    let mut names = subjects::select(&a.subjects)?;
    if a.subjects.is_empty() {
        // shardcache first: the table compares it with the others.
        names.retain(|n| *n != "shardcache-lru");
    }
    if a.sizes.contains(&0) {
        return Err("cache sizes must be at least 1".into());
    }
    if a.replays == 0 {
        return Err("--replays must be at least 1".into());
    }
    let traces = match &a.traces {
        None => vec![],
        Some(p) if p.is_dir() => suite::traces_in(p)?,
        Some(p) => vec![p.clone()],
    };
    let families = match a.families.as_slice() {
        [] => workloads::FAMILIES.iter().map(|s| s.to_string()).collect(),
        [none] if none == "none" => vec![],
        f => f.to_vec(),
    };
    println!(
        "Hit ratio % (get, insert on miss); OPT is Belady's optimum with bypass. Synthetic seed {:#x}.\n",
        a.seed
    );
    suite::run(&suite::Params {
        names,
        seed: a.seed,
        synthetic_sizes: a.sizes,
        len_factor: 20,
        min_len: 500_000,
        max_len: 2_000_000,
        families,
        traces,
        ladder: a.ladder,
        half: a.half,
        reverse: a.reverse,
        interleave: a.interleave,
        replays: a.replays,
    })
}

/// The no-argument overview; stays well under a minute on two cores.
fn default_run() -> Result<(), String> {
    println!(
        "cachebench overview: hit ratio % on synthetic Zipf(1.0) and scan-heavy traces (1M requests each, rows = cache size), then 2-thread throughput (median Mops/s).\n"
    );
    let names = subjects::ALL.to_vec();
    let sizes = [1_000, 10_000, 100_000];
    for (trace, what) in [
        ("zipf:1.0:1000000", "Zipf(1.0) over 1M keys"),
        ("scan", "Zipf hot set + sequential scans of 2x the cache"),
    ] {
        let spec = TraceSpec::parse(trace, None)?;
        println!("## Hit ratio %: {what} (`{trace}`)\n");
        let table = hitratio::run(&spec, &sizes, &names, Some(1_000_000))?;
        println!("{}", table.markdown());
    }
    let p = throughput::Params {
        threads: 2,
        duration: Duration::from_millis(500),
        rounds: 3,
        read_pct: 95,
        capacity: 100_000,
        keys: 1_000_000,
        zipf: 1.0,
        stream_len: 1 << 20,
    };
    println!(
        "## Throughput: 2 threads, 95% reads, Zipf(1.0) over 1M keys, capacity 100k, median of 3 x 500 ms\n"
    );
    let table = throughput::run(&names, &p)?;
    println!("{}", table.markdown());
    Ok(())
}
