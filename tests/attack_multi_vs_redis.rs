//! Hostile arguments for `COPY`, `RENAME`, `RENAMENX`, `MSET` and `MSETNX`
//! compared reply by reply with a real `redis-server` (see
//! `kv_multi_vs_redis.rs`; skipped with `SHARDCACHE_SKIP_REDIS=1`).

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/replies.rs"]
mod replies;
use replies::Pair;
use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, MemStorage};

fn run(lines: &[&str]) {
    let Some(mut p) = Pair::new() else { return };
    p.line("FLUSHDB");
    for line in lines {
        p.line(line);
    }
}

/// Repeated and mixed `DB` options of `COPY` (an out-of-range database
/// before a valid one, before a syntax error or a bad integer) answer as
/// Redis answers.
#[test]
fn copy_reads_every_option_before_the_database_as_redis_does() {
    run(&[
        "SET a 1",
        "COPY a e DB 16 DB 0",
        "EXISTS e",
        "COPY a f DB 16 FOO",
        "COPY a f DB 16 DB x",
        "COPY a f DB 16 DB",
        "COPY a f DB 99999999999 DB 0",
        "EXISTS f",
    ]);
}

/// What holds: hostile but well-ordered arguments of the multi-key
/// commands answer as Redis does.
#[test]
fn hostile_multi_key_arguments_match_redis() {
    run(&[
        "MSET",
        "MSET a",
        "MSET a 1 b",
        "MSETNX a",
        "MSETNX a 1 a",
        "MSETNX a 1 a 2",
        "MGET a",
        "MSETNX a 3 b 4",
        "MGET a b",
        "RENAME",
        "RENAME a",
        "RENAME a b c",
        "RENAME missing missing",
        "RENAMENX missing missing",
        "RENAME a a",
        "RENAMENX a a",
        "RENAMENX a b",
        "RENAMENX a c",
        "MGET a b c",
        "COPY c c DB 16",
        "COPY c c DB 0",
        "COPY c d DB 0 REPLACE DB 0",
        "COPY c d replace db 0",
        "COPY c d DB 2147483648",
        "COPY c d DB -2147483649",
        "COPY c d DB 0x0",
        "COPY c d DB \"\"",
        "COPY c d REPLACE FOO",
        "MGET c d",
        "MSET \"\" empty",
        "COPY \"\" x",
        "RENAME x \"\"",
        "GET \"\"",
        "EXISTS x",
    ]);
}

/// Random `APPEND`, `SETRANGE`, `SETBIT` on values that `COPY` shares and
/// `RENAME` moves (spare capacity and all), read back with `GET`,
/// `GETRANGE` and `STRLEN`, compared reply by reply with Redis: a write in
/// place never shows through another key's copy.
#[test]
fn splices_of_copied_and_renamed_values_match_redis() {
    let Some(mut p) = Pair::new() else { return };
    // On a persistent store, reopened now and then (after a rewrite or
    // not): the reloaded values answer as Redis's.
    let storage = MemStorage::new();
    p.kv = persistent(&storage);
    let mut rng = Xorshift(0x51AB_1E5E_ED00_0001);
    let mut next = move |n: u64| rng.below(n);
    p.line("FLUSHDB");
    for i in 0..4_000 {
        let k = |n: u64| format!("k{n}");
        let (a, b) = (k(next(4)), k(next(4)));
        let line = match next(12) {
            0 | 1 => format!("APPEND {a} x{i}"),
            2 => format!("SETRANGE {a} {} SR{i}", next(40)),
            3 => format!("SETBIT {a} {} {}", next(200), next(2)),
            4 => format!("COPY {a} {b} REPLACE"),
            5 => format!("COPY {a} {b}"),
            6 => format!("RENAME {a} {b}"),
            7 => format!("MSET {a} m{i} {b} n{i}"),
            8 => format!("GETRANGE {a} {} {}", next(30), next(60)),
            9 => format!("STRLEN {a}"),
            10 => format!("DEL {a}"),
            _ => "MGET k0 k1 k2 k3".to_string(),
        };
        p.line(&line);
        if i % 500 == 499 {
            if i % 1000 == 999 {
                p.kv.rewrite_log().expect("rewrite");
            }
            p.kv = KvStore::new();
            p.kv = persistent(&storage);
            p.line("MGET k0 k1 k2 k3");
        }
    }
}

fn persistent(storage: &MemStorage) -> KvStore {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    KvStore::builder()
        .shards(4)
        .build_persistent(log)
        .expect("open")
        .0
}
