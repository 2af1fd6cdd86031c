//! Differential tests of the commands that write several keys as one step
//! (`MSET`, `MSETNX`, `RENAME`, `RENAMENX`, `COPY`) against a real
//! `redis-server`, comparing every reply (TTLs within a second).
//!
//! Needs `redis-server` on the PATH; without it these tests fail with a clear
//! message, unless `SHARDCACHE_SKIP_REDIS=1` is set. `COPY ... DB n` with a
//! database from 1 to 15 is not compared: the store has one database and
//! refuses it as Redis refuses a database past its `databases` setting.

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/replies.rs"]
mod replies;
use replies::{Pair, R};

/// Runs each case on a flushed database; a line starting with `~` compares
/// an integer reply within 1 (a TTL read on both sides a moment apart).
fn run_cases(cases: &[&[&str]]) {
    let Some(mut p) = Pair::new() else { return };
    for case in cases {
        p.line("FLUSHDB");
        for line in *case {
            match line.strip_prefix('~') {
                None => {
                    p.line(line);
                }
                Some(line) => {
                    let args: Vec<&str> = line.split(' ').collect();
                    let mut cmd = redis::cmd(args[0]);
                    for a in &args[1..] {
                        cmd.arg(*a);
                    }
                    let want: i64 = cmd.query(&mut p.con).expect("redis reply");
                    let got = replies::from_kv(p.kv.execute(&args));
                    let R::Int(got) = got else {
                        panic!("{line}: KvStore answered {got:?}, redis {want}")
                    };
                    assert!(
                        (want - got).abs() <= 1,
                        "{line}: redis {want}, KvStore {got}"
                    );
                }
            }
        }
    }
}

#[test]
fn mset_and_msetnx_match_redis() {
    run_cases(&[
        &[
            "MSET a 1 b 2 a 3",
            "MGET a b",
            "SET t x EX 100",
            "MSET t y",
            "TTL t",
            "MSETNX t 1 u 2",
            "EXISTS u",
            "MSETNX u 1 v 2 u 3",
            "MGET u v",
            "MSETNX",
            "MSETNX a",
            "MSET a 1 b",
        ],
        &["MSETNX k 1 k 2", "GET k", "MSETNX k 3", "GET k"],
    ]);
}

#[test]
fn rename_and_renamenx_match_redis() {
    run_cases(&[
        &[
            "RENAME missing x",
            "RENAMENX missing x",
            "RENAME missing missing",
            "RENAMENX missing missing",
            "SET a 1 EX 100",
            "RENAME a b",
            "EXISTS a",
            "GET b",
            "~TTL b",
            "RENAME b b",
            "RENAMENX b b",
            "GET b",
            "SET c 3",
            "RENAMENX b c",
            "GET c",
            "RENAME b c",
            "GET c",
            "~TTL c",
            "EXISTS b",
            "SET p 1",
            "SET q 2 EX 50",
            "RENAME p q",
            "TTL q",
            "GET q",
            "RENAME",
            "RENAME a",
            "RENAME a b c",
            "RENAMENX a",
        ],
        &[
            "SET k v",
            "RENAMENX k n",
            "GET n",
            "EXISTS k",
            "RENAMENX n k",
            "MGET k n",
        ],
    ]);
}

#[test]
fn copy_matches_redis() {
    run_cases(&[
        &[
            "COPY missing x",
            "SET a 1 EX 100",
            "COPY a b",
            "MGET a b",
            "~TTL b",
            "COPY a b",
            "SET a 2",
            "COPY a b REPLACE",
            "GET b",
            "TTL b",
            "COPY a a",
            "COPY missing missing",
            "COPY a c replace REPLACE",
            "COPY a d DB 0",
            "COPY a d DB 0 REPLACE",
            "COPY a e DB",
            "COPY a e DB x",
            "COPY a e DB -1",
            "COPY a e DB 16",
            "COPY a e DB 99999999999",
            "COPY a e FOO",
            "COPY a a FOO",
            "COPY missing e DB 16",
            "COPY a",
            "COPY",
            "EXISTS e",
        ],
        &["SET s v", "COPY s t", "COPY s t REPLACE", "MGET s t"],
    ]);
}

/// Random sequences of the multi-key commands mixed with `SET` (with and
/// without a TTL), `DEL` and reads, over five keys (so sources and
/// destinations often coincide or exist), compared reply by reply.
#[test]
fn random_multi_key_sequences_match_redis() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Xorshift(0x2545_F491_4F6C_DD1D);
    let mut next = move |n: u64| rng.below(n);
    p.line("FLUSHDB");
    for _ in 0..3_000 {
        let k = |n: u64| format!("k{n}");
        let (a, b, c) = (k(next(5)), k(next(5)), k(next(5)));
        let v = next(100);
        let line = match next(12) {
            0 => format!("SET {a} {v}"),
            1 => format!("SET {a} {v} EX {}", 10 + next(90)),
            2 => format!("MSET {a} {v} {b} {v}"),
            3 => format!("MSETNX {a} {v} {b} {v} {c} {v}"),
            4 => format!("RENAME {a} {b}"),
            5 => format!("RENAMENX {a} {b}"),
            6 => format!("COPY {a} {b}"),
            7 => format!("COPY {a} {b} REPLACE"),
            8 => format!("DEL {a}"),
            9 => format!("MGET {a} {b} {c}"),
            10 => format!("EXISTS {a} {b} {c}"),
            _ => format!("~TTL {a}"),
        };
        match line.strip_prefix('~') {
            None => {
                p.line(&line);
            }
            Some(line) => {
                let args: Vec<&str> = line.split(' ').collect();
                let want: i64 = redis::cmd(args[0])
                    .arg(args[1])
                    .query(&mut p.con)
                    .expect("redis reply");
                let got = replies::from_kv(p.kv.execute(&args));
                let R::Int(got) = got else {
                    panic!("{line}: KvStore answered {got:?}, redis {want}")
                };
                assert!(
                    (want - got).abs() <= 1,
                    "{line}: redis {want}, KvStore {got}"
                );
            }
        }
    }
}
