//! The crash tests: a child process writes (with rewrites running) and is
//! SIGKILLed at varying moments; after each kill the log must load, hold a
//! prefix of what each writer wrote, and, under `Fsync::Always` or a zero
//! write delay, every acknowledged write.
//!
//! Its own test binary: children are forked from this process, and a fork
//! briefly holds copies of every open file (and so the log's lock), which
//! would make tests that reopen logs in the same process fail spuriously.

use shardcache::persist::{FileLog, Fsync};
use shardcache::Cache;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// How the child's log is set up.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Always,
    /// `EverySecond` with records buffered for up to the default 10 ms.
    EverySecond,
    /// `EverySecond` with each record written before `insert` returns.
    EverySecondUnbuffered,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::EverySecond => "every-second",
            Mode::EverySecondUnbuffered => "every-second-unbuffered",
        }
    }

    fn open(self, path: &str) -> FileLog {
        let fsync = match self {
            Mode::Always => Fsync::Always,
            Mode::EverySecond | Mode::EverySecondUnbuffered => Fsync::EverySecond,
        };
        let log = FileLog::open(path, fsync).expect("child open");
        match self {
            Mode::EverySecondUnbuffered => log.write_delay(std::time::Duration::ZERO),
            _ => log,
        }
    }
}

/// The crash child: writes keys forever from two threads, printing each key
/// once `insert` has returned. Only runs when spawned by the tests below.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var("SHARDCACHE_CRASH_CHILD") else {
        return;
    };
    let named = std::env::var("SHARDCACHE_CRASH_MODE").unwrap_or_default();
    let mode = [Mode::EverySecond, Mode::EverySecondUnbuffered]
        .into_iter()
        .find(|m| m.name() == named)
        .unwrap_or(Mode::Always);
    // Small rewrite thresholds, so kills also land in the middle of rewrites.
    let log = mode.open(&path).rewrite_policy(50, 8 << 10);
    let (cache, _) = Cache::<u64, u64>::builder()
        .build_persistent(log)
        .expect("child load");
    let start: u64 = std::env::var("SHARDCACHE_CRASH_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    std::thread::scope(|s| {
        // One key overwritten with ever larger values: what loads must be at
        // least the last acknowledged value (prefix consistency).
        let counter = cache.clone();
        s.spawn(move || {
            use std::io::Write;
            let mut out = std::io::stdout();
            for v in start.. {
                counter.insert(COUNTER, v);
                let _ = writeln!(out, "c {v}");
            }
        });
        // Rewrites on demand too, so kills land at every step of one.
        let rewriter = cache.clone();
        s.spawn(move || loop {
            rewriter.rewrite_log().expect("rewrite");
            std::thread::sleep(std::time::Duration::from_millis(3));
        });
        for t in 0..2u64 {
            let cache = cache.clone();
            s.spawn(move || {
                use std::io::Write;
                let mut out = std::io::stdout();
                for i in 0.. {
                    let k = start + i * 2 + t;
                    cache.insert(k, k * 10);
                    let _ = writeln!(out, "{k}");
                }
            });
        }
    });
}

/// The key the crash child overwrites.
const COUNTER: u64 = u64::MAX;

#[test]
fn sigkill_never_loses_acknowledged_writes() {
    sigkill_loop(Mode::Always, iterations(25));
}

#[test]
fn sigkill_under_every_second_without_a_write_delay_loses_nothing() {
    sigkill_loop(Mode::EverySecondUnbuffered, iterations(25) / 2);
}

#[test]
fn sigkill_under_every_second_loads_a_prefix_of_each_writer() {
    sigkill_loop(Mode::EverySecond, iterations(25) / 2);
}

fn iterations(default: u32) -> u32 {
    std::env::var("SHARDCACHE_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Kills a child `iterations` times; each time checks what loads: every
/// acknowledged write (unless `mode` buffers), and for each writer a prefix
/// of its keys, with the right values.
fn sigkill_loop(mode: Mode, iterations: u32) {
    let lossless = !matches!(mode, Mode::EverySecond);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.log");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    for it in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("SHARDCACHE_CRASH_CHILD", &path)
            .env("SHARDCACHE_CRASH_MODE", mode.name())
            .env(
                "SHARDCACHE_CRASH_START",
                (u64::from(it) * 1_000_000).to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Let it acknowledge a varying number of writes, then kill it mid-flight.
        let target = 20 + (it as usize * 37) % 400;
        let mut seen = 0;
        let mut counter = None;
        let mut record = |line: &str, seen: &mut usize| {
            if let Some(v) = line.strip_prefix("c ") {
                counter = counter.max(v.trim().parse::<u64>().ok());
            } else if let Ok(k) = line.trim().parse::<u64>() {
                acked.insert(k, k * 10);
                *seen += 1;
            }
        };
        while seen < target {
            match lines.next() {
                Some(Ok(line)) => record(&line, &mut seen),
                _ => break,
            }
        }
        child.kill().expect("SIGKILL");
        // Lines printed before the kill landed are acknowledged too.
        for line in lines.map_while(Result::ok) {
            record(&line, &mut seen);
        }
        let _ = child.wait();
        let log = FileLog::open(&path, Fsync::Always).expect("reopen after kill");
        let (cache, _report) = Cache::<u64, u64>::builder()
            .build_persistent(log)
            .expect("a killed log loads");
        // Each writer's keys of this iteration: a prefix, with right values.
        let start = u64::from(it) * 1_000_000;
        for t in 0..2 {
            let present: Vec<u64> = (0..)
                .map(|i| start + i * 2 + t)
                .take_while(|k| cache.get(k).is_some())
                .collect();
            let next = start + present.len() as u64 * 2 + t;
            assert!(
                (1..1000).all(|i| cache.get(&(next + i * 2)).is_none()),
                "{mode:?} iteration {it}: writer {t}'s keys are not a prefix (gap at {next})"
            );
            for k in present {
                assert_eq!(cache.get(&k), Some(k * 10), "{mode:?}: wrong value");
            }
        }
        if !lossless {
            continue;
        }
        for (&k, &v) in &acked {
            assert_eq!(
                cache.get(&k),
                Some(v),
                "{mode:?} iteration {it}: acknowledged key {k} lost"
            );
        }
        if let Some(c) = counter {
            let loaded = cache.get(&COUNTER).unwrap_or(0);
            assert!(
                loaded >= c,
                "iteration {it}: counter loaded as {loaded}, {c} was acknowledged"
            );
        }
    }
    // The children really ran and acknowledged writes before each kill.
    println!(
        "{mode:?}: {iterations} kills, {} acknowledged writes",
        acked.len()
    );
    assert!(
        acked.len() >= 20 * iterations as usize,
        "only {} acknowledged writes",
        acked.len()
    );
}
