//! The crash test: a child process writes under `Fsync::Always` (with
//! rewrites running) and is SIGKILLed at varying moments; after each kill
//! the log must load with every acknowledged write in it.
//!
//! Its own test binary: children are forked from this process, and a fork
//! briefly holds copies of every open file (and so the log's lock), which
//! would make tests that reopen logs in the same process fail spuriously.

use shardcache::persist::{FileLog, Fsync};
use shardcache::Cache;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The crash child: writes keys forever under Fsync::Always from two threads,
/// printing each key once `insert` has returned. Only runs when spawned by
/// `sigkill_never_loses_acknowledged_writes`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var("SHARDCACHE_CRASH_CHILD") else {
        return;
    };
    // Small rewrite thresholds, so kills also land in the middle of rewrites.
    let log = FileLog::open(&path, Fsync::Always)
        .expect("child open")
        .rewrite_policy(50, 8 << 10);
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
    let iterations: u32 = std::env::var("SHARDCACHE_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.log");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    for it in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("SHARDCACHE_CRASH_CHILD", &path)
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
        for (&k, &v) in &acked {
            assert_eq!(
                cache.get(&k),
                Some(v),
                "iteration {it}: acknowledged key {k} lost"
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
    assert!(
        acked.len() >= 20 * iterations as usize,
        "only {} acknowledged writes",
        acked.len()
    );
}
