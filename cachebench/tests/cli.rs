//! End-to-end checks of the `cachebench` binary on tiny inputs.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachebench"))
        .args(args)
        .output()
        .expect("run cachebench")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cachebench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write temp file");
    p
}

/// Data rows of the first markdown table in `out`, split into cells.
fn table_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn check_ratios(rows: &[Vec<String>], cols: usize) {
    for r in rows {
        assert_eq!(r.len(), cols, "{r:?}");
        for c in &r[1..] {
            let v: f64 = c.parse().expect("number");
            assert!((0.0..=100.0).contains(&v), "{v}");
        }
    }
}

#[test]
fn hitratio_arc_file_with_csv_and_plot() {
    let trace = temp("t.lis", b"1 4 0 1\n1 4 0 2\n100 2 0 3\n1 4 0 4\n");
    let csv = trace.with_file_name("out.csv");
    let svg = trace.with_file_name("out.svg");
    let o = bench(&[
        "hitratio",
        "--trace",
        trace.to_str().expect("utf8"),
        "--sizes",
        "2,8",
        "--csv",
        csv.to_str().expect("utf8"),
        "--plot",
        svg.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = table_rows(&stdout(&o));
    assert_eq!(rows.len(), 2);
    check_ratios(&rows, 6);
    // 14 requests; with 8 entries, everything but the 6 first touches hits.
    assert_eq!(rows[1][5], format!("{:.2}", 800.0 / 14.0));
    let csv = std::fs::read_to_string(csv).expect("csv");
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.starts_with("size,shardcache,"));
    let svg = std::fs::read_to_string(svg).expect("svg");
    assert!(svg.contains("<svg"));
}

#[test]
fn hitratio_plain_zst_and_synthetic() {
    let mut data = Vec::new();
    for i in 0..300u64 {
        data.extend_from_slice(format!("{}\nkey{}\n", i % 20, i % 7).as_bytes());
    }
    let z = zstd::encode_all(&data[..], 3).expect("zstd");
    let trace = temp("keys.txt.zst", &z);
    let o = bench(&[
        "hitratio",
        "--trace",
        trace.to_str().expect("utf8"),
        "--sizes",
        "5,50",
        "--subjects",
        "lru,shardcache",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = table_rows(&stdout(&o));
    check_ratios(&rows, 3);
    // 27 distinct keys fit in 50 entries: only cold misses for LRU.
    assert_eq!(rows[1][2], format!("{:.2}", 100.0 * (600.0 - 27.0) / 600.0));

    for spec in ["scan", "shift", "loop", "zipf:0.8:1000"] {
        let o = bench(&[
            "hitratio", "--trace", spec, "--sizes", "50,100", "--limit", "3000",
        ]);
        assert!(o.status.success(), "{spec}");
        let rows = table_rows(&stdout(&o));
        assert_eq!(rows.len(), 2);
        check_ratios(&rows, 6);
    }
}

#[test]
fn malformed_trace_reports_line() {
    let trace = temp("bad.lis", b"1 4 0 1\n2 2 0 2\n3 three 0 3\n");
    let o = bench(&[
        "hitratio",
        "--trace",
        trace.to_str().expect("utf8"),
        "--sizes",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.lis: line 3"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let o = bench(&["hitratio", "--trace", "/nonexistent/x.lis", "--sizes", "4"]);
    assert_eq!(o.status.code(), Some(2));
    let o = bench(&["hitratio", "--trace", "scan", "--subjects", "redis"]);
    assert_eq!(o.status.code(), Some(2));
    let o = bench(&["hitratio", "--trace", "scan", "--sizes", "1,x"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn throughput_and_memory_tables() {
    let o = bench(&[
        "throughput",
        "--threads",
        "2",
        "--duration-ms",
        "20",
        "--rounds",
        "1",
        "--capacity",
        "1000",
        "--keys",
        "10000",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = table_rows(&stdout(&o));
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.len() == 5));
    assert_eq!(rows[0][4], "1.00");

    let o = bench(&[
        "memory",
        "--entries",
        "2000",
        "--subjects",
        "shardcache,lru",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = table_rows(&stdout(&o));
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let per: f64 = r[3].parse().expect("bytes/entry");
        assert!((16.0..2000.0).contains(&per), "{r:?}");
    }
}

#[test]
fn help_for_every_subcommand() {
    for sub in ["hitratio", "throughput", "memory"] {
        let o = bench(&[sub, "--help"]);
        assert!(o.status.success());
        assert!(stdout(&o).contains("--subjects"), "{sub}");
    }
    assert!(bench(&["--help"]).status.success());
}

#[test]
fn suite_replays_give_means_spread_and_the_cells_lost_in_any_replay() {
    let o = bench(&[
        "suite",
        "--families",
        "loop:0.5",
        "--sizes",
        "50",
        "--replays",
        "2",
        "--subjects",
        "shardcache,lru,arc",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("| shardcache spread |"), "{out}");
    assert!(out.contains("in any of the 2 replays: 0"), "{out}");
    let rows = table_rows(&out);
    assert_eq!(rows.len(), 1, "{out}");
    // A loop of half the cache: every subject misses only the first round,
    // as OPT does, in both replays (spread 0).
    let row = &rows[0];
    assert_eq!(row[0], "loop:0.5 @ 50");
    for c in &row[2..5] {
        assert_eq!(c, &row[1], "{out}");
    }
    assert_eq!(row.last().map(String::as_str), Some("0.00"), "{out}");

    let o = bench(&["suite", "--families", "loop:0.5", "--replays", "0"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--replays must be at least 1"));
}

#[test]
fn suite_interleaves_a_directory_of_traces_into_one() {
    let dir = std::env::temp_dir().join(format!("cachebench-mix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Two traces over the same block numbers: interleaved, they must not
    // share a key (4 + 3 distinct keys, not 4).
    std::fs::write(dir.join("a.lis"), b"1 4 0 1\n1 4 0 2\n1 4 0 3\n").expect("write");
    std::fs::write(dir.join("b.lis"), b"1 2 0 1\n3 1 0 2\n1 3 0 3\n").expect("write");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "suite",
            "--families",
            "none",
            "--traces",
            dir.to_str().expect("utf8"),
            "--subjects",
            "shardcache,lru",
        ];
        v.extend_from_slice(extra);
        bench(&v)
    };
    let o = args(&["--interleave"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(
        out.contains("## a+b: 18 requests, 7 distinct keys"),
        "{out}"
    );
    let o = args(&["--interleave", "--reverse"]);
    assert!(stdout(&o).contains("## a+b reversed: 18 requests, 7 distinct keys"));

    std::fs::remove_file(dir.join("b.lis")).expect("remove");
    let o = args(&["--interleave"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--interleave needs two or more traces, found 1"),
        "{err}"
    );
}
