//! Differential tests: the same command sequences on a real `redis-server`
//! and on `KvStore::execute`, comparing every reply.
//!
//! Needs `redis-server` on the PATH; without it these tests fail with a clear
//! message, unless `SHARDCACHE_SKIP_REDIS=1` is set. TTL replies are compared
//! within a tolerance (`TTL` and `EXPIRETIME` ±1 s, `PTTL` and `PEXPIRETIME`
//! ±100 ms); `KEYS` replies are
//! compared as sets, `SCAN` by the union of a full iteration, `RANDOMKEY` by
//! membership, `EXPIRE ... GT|LT` by the resulting TTL when the old and new
//! deadlines are within a millisecond (a race in Redis too), and `DBSIZE` against the length of Redis's `KEYS *` (Redis
//! also counts keys that expired but were not yet reclaimed).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use shardcache::kv::{KvStore, Reply};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/replies.rs"]
mod replies;
use replies::{from_kv, from_redis, Pair, R};

/// The differential commands beyond the shared [`Pair`]'s.
impl Pair {
    fn both(&mut self, args: &[Vec<u8>]) -> (R, R) {
        if args.len() == 1 && args[0].eq_ignore_ascii_case(b"dbsize") {
            // Redis's DBSIZE also counts keys that expired but were not yet
            // reclaimed; KvStore counts live keys, which is what KEYS * sees.
            let live: Vec<Vec<u8>> = redis::cmd("KEYS")
                .arg("*")
                .query(&mut self.con)
                .expect("keys");
            return (R::Int(live.len() as i64), from_kv(self.kv.execute(args)));
        }
        (self.on_redis(args), from_kv(self.kv.execute(args)))
    }

    fn on_redis(&mut self, args: &[Vec<u8>]) -> R {
        let mut cmd = redis::cmd(std::str::from_utf8(&args[0]).expect("ascii command"));
        for a in &args[1..] {
            cmd.arg(a.as_slice());
        }
        from_redis(cmd.query::<redis::Value>(&mut self.con))
    }

    /// A whole `SCAN` iteration with `options` on each side: the keys it
    /// returned, sorted, or the first reply that was not a cursor and keys.
    fn scan_both(&mut self, options: &[Vec<u8>]) -> (R, R) {
        let mut sides = [R::Nil, R::Nil];
        for (side, out) in sides.iter_mut().enumerate() {
            let (mut cursor, mut keys) = (b"0".to_vec(), BTreeSet::new());
            *out = loop {
                let mut args = vec![b"SCAN".to_vec(), cursor];
                args.extend_from_slice(options);
                let reply = match side {
                    0 => self.on_redis(&args),
                    _ => from_kv(self.kv.execute(&args)),
                };
                let R::Arr(parts) = &reply else { break reply };
                let [R::Bulk(next), R::Arr(batch)] = &parts[..] else {
                    break reply;
                };
                keys.extend(batch.iter().cloned());
                if next == b"0" {
                    break R::Arr(keys.into_iter().collect());
                }
                cursor = next.clone();
            };
        }
        let [want, got] = sides;
        (want, got)
    }

    /// Runs a command on both sides and compares the replies.
    fn check_args(&mut self, args: &[Vec<u8>]) -> Result<(), String> {
        let (want, got) = self.both(args);
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let ok = match (name.as_str(), &want, &got) {
            ("ttl", R::Int(a), R::Int(b)) if *a >= 0 => (a - b).abs() <= 1,
            ("pttl", R::Int(a), R::Int(b)) if *a >= 0 => (a - b).abs() <= 100,
            ("expiretime", R::Int(a), R::Int(b)) if *a >= 0 => (a - b).abs() <= 1,
            ("pexpiretime", R::Int(a), R::Int(b)) if *a >= 0 => (a - b).abs() <= 100,
            ("keys", R::Arr(a), R::Arr(b)) => sorted(a) == sorted(b),
            ("randomkey", a, b) => (*a == R::Nil) == (*b == R::Nil),
            _ if want == got => true,
            (_, R::Int(1) | R::Status(_), R::Err(e))
                if e.contains("beyond the supported range") =>
            {
                // Documented: an expiry more than MAX_EXPIRE_MS ahead is
                // refused where Redis takes it. Put Redis back in step (the
                // key keeps its old expiry on our side).
                let pttl = [b"PTTL".to_vec(), args[1].clone()];
                if let (_, R::Int(ms)) = self.both(&pttl) {
                    let mut fix = redis::cmd(if ms >= 0 { "PEXPIRE" } else { "PERSIST" });
                    fix.arg(args[1].as_slice());
                    if ms >= 0 {
                        fix.arg(ms);
                    }
                    let _: redis::Value = fix.query(&mut self.con).expect("resync");
                }
                eprintln!(
                    "documented divergence (expiry beyond MAX_EXPIRE_MS): {}",
                    show(args)
                );
                true
            }
            (cmd, R::Int(_), R::Int(_)) if cmd.contains("expire") && has_gt_or_lt(args) => {
                // GT/LT against a deadline within a millisecond of the new one
                // is a race in Redis itself (which ms is "now"); accept it when
                // both sides end with the same TTL to within 100 ms.
                let pttl = [b"PTTL".to_vec(), args[1].clone()];
                match self.both(&pttl) {
                    (R::Int(a), R::Int(b)) => (a - b).abs() <= 100,
                    _ => false,
                }
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{}\n  redis:    {want:?}\n  KvStore:  {got:?}",
                show(args)
            ))
        }
    }

    #[track_caller]
    fn check(&mut self, line: &str) {
        if let Err(e) = self.check_args(&words(line)) {
            panic!("replies differ for {e}");
        }
    }

    fn flush(&mut self) {
        self.check("FLUSHDB");
    }
}

fn has_gt_or_lt(args: &[Vec<u8>]) -> bool {
    args.iter()
        .any(|a| a.eq_ignore_ascii_case(b"gt") || a.eq_ignore_ascii_case(b"lt"))
}

fn sorted(a: &[R]) -> Vec<R> {
    let mut v = a.to_vec();
    v.sort();
    v
}

fn show(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits a command line on spaces; `""` stands for an empty argument.
fn words(line: &str) -> Vec<Vec<u8>> {
    line.split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w == "\"\"" {
                Vec::new()
            } else {
                w.as_bytes().to_vec()
            }
        })
        .collect()
}

/// Runs each case on a flushed database.
fn run_cases(cases: &[&[&str]]) {
    let Some(mut p) = Pair::new() else { return };
    for case in cases {
        p.flush();
        for line in *case {
            p.check(line);
        }
    }
}

#[test]
fn set_options_and_errors() {
    run_cases(&[
        &[
            "SET k v",
            "GET k",
            "TTL k",
            "SET k v2 NX",
            "GET k",
            "SET k v3 XX",
            "GET k",
            "SET n v XX",
            "GET n",
        ],
        &[
            "SET k v NX XX",
            "SET k v XX NX",
            "SET k v EX 10 PX 100",
            "SET k v KEEPTTL EX 10",
            "SET k v EX 10 KEEPTTL",
        ],
        &[
            "SET k v EX",
            "SET k v FOO",
            "SET k v GET GET",
            "SET k v EX 10 EX 20",
            "TTL k",
            "SET k v PX 5000 PX 6000",
            "PTTL k",
        ],
        &[
            "SET k v EX 0",
            "SET k v EX -1",
            "SET k v PX 0",
            "SET k v EX abc",
            "SET k v EX 1.5",
            "SET k v EX 9223372036854775807",
        ],
        &[
            "SET k v EX 9223372036854775",
            "SET k v PX 9223372036854775807",
            "SET k v EXAT 9223372036854775807",
            "SET k v EX -9223372036854775808",
        ],
        &[
            "SET k v EXAT 1",
            "EXISTS k",
            "SET k v PXAT 1000",
            "EXISTS k",
            "SET k v EXAT 2000000000",
            "TTL k",
            "SET k v PXAT 2000000000000",
            "TTL k",
        ],
        &[
            "SET k v EX 100",
            "SET k v2 KEEPTTL",
            "TTL k",
            "SET k v3",
            "TTL k",
            "SET k v4 EX 100 GET",
            "SET k v5 KEEPTTL GET",
            "TTL k",
        ],
        &[
            "SET k v GET",
            "SET k v2 GET",
            "SET k v3 NX GET",
            "SET k v4 XX GET",
            "SET z v XX GET",
            "SET z v NX GET",
            "GET z",
        ],
        &[
            "set K v ex 10",
            "Get K",
            "ttl K",
            "SeT K v pX 20000",
            "pttl K",
            "set k v exat 1 nx",
            "exists k",
        ],
        &[
            "SET k \"\"",
            "GET k",
            "STRLEN k",
            "APPEND k abc",
            "GET k",
            "SET \"\" v",
            "GET \"\"",
            "KEYS *",
            "DBSIZE",
        ],
        &[
            "SETEX k 10 v",
            "TTL k",
            "SETEX k 0 v",
            "SETEX k -5 v",
            "SETEX k abc v",
            "PSETEX k 1500 v",
            "PTTL k",
            "PSETEX k 0 v",
            "SETEX k 10",
        ],
        &[
            "SETNX k v",
            "SETNX k w",
            "GET k",
            "GETSET k x",
            "GETSET nope x",
            "GET nope",
            "GETDEL k",
            "GETDEL k",
            "EXISTS k",
        ],
        &[
            "SET k v EX 100",
            "GETSET k w",
            "TTL k",
            "SET k v EX 100",
            "INCR k",
            "SET n 5 EX 100",
            "INCR n",
            "TTL n",
            "APPEND n 1",
            "TTL n",
        ],
    ]);
}

#[test]
fn counters_at_i64_boundaries() {
    run_cases(&[
        &[
            "INCR n",
            "INCR n",
            "DECR n",
            "INCRBY n 10",
            "DECRBY n 3",
            "GET n",
            "INCRBY n -20",
            "DECRBY n -5",
        ],
        &[
            "SET n 9223372036854775806",
            "INCR n",
            "INCR n",
            "GET n",
            "DECRBY n -1",
            "INCRBY n -9223372036854775807",
            "GET n",
        ],
        &[
            "SET n -9223372036854775807",
            "DECR n",
            "DECR n",
            "GET n",
            "INCRBY n 9223372036854775807",
            "DECRBY n -9223372036854775808",
        ],
        &[
            "SET n 1",
            "DECRBY n -9223372036854775808",
            "INCRBY n 9223372036854775807",
            "INCRBY n 9223372036854775808",
            "INCRBY n abc",
        ],
        &[
            "SET n abc",
            "INCR n",
            "SET n 1.5",
            "INCR n",
            "SET n \"\"",
            "INCR n",
            "SET n 01",
            "INCR n",
            "SET n -0",
            "INCR n",
            "SET n +1",
            "INCR n",
        ],
        &[
            "SET n \" 1\"",
            "INCR n",
            "SET n 99999999999999999999",
            "INCR n",
            "SET n 0",
            "INCR n",
            "INCRBY n 0",
            "INCRBY n -0",
            "INCRBY n 00",
        ],
        &[
            "INCRBYFLOAT f 1.5",
            "INCRBYFLOAT f 0.1",
            "INCRBYFLOAT f -1.6",
            "GET f",
            "INCRBYFLOAT f 3.0e3",
            "INCRBYFLOAT f abc",
            "INCRBYFLOAT f 1e",
        ],
        &[
            "SET f 10.5",
            "INCRBYFLOAT f 0.1",
            "INCRBYFLOAT f inf",
            "INCRBYFLOAT f -inf",
            "INCRBYFLOAT f nan",
            "SET f abc",
            "INCRBYFLOAT f 1",
        ],
        &[
            "SET f 5",
            "INCRBYFLOAT f 0",
            "INCRBYFLOAT f .5",
            "INCRBYFLOAT f -5.5",
            "GET f",
            "INCRBYFLOAT f 1.0",
            "INCRBYFLOAT f 100000000",
        ],
        &[
            "SET f \" 1\"",
            "INCRBYFLOAT f 1",
            "INCRBYFLOAT g \" 1\"",
            "SET n 3",
            "INCRBYFLOAT n 1.25",
            "INCR n",
        ],
    ]);
}

#[test]
fn expire_family_and_conditions() {
    run_cases(&[
        &[
            "EXPIRE k 10",
            "SET k v",
            "TTL k",
            "PTTL k",
            "TTL nope",
            "PTTL nope",
            "EXPIRE k 100",
            "TTL k",
            "PERSIST k",
            "TTL k",
            "PERSIST k",
            "PERSIST nope",
        ],
        &[
            "SET k v",
            "EXPIRE k 100 XX",
            "EXPIRE k 100 NX",
            "EXPIRE k 200 NX",
            "TTL k",
            "EXPIRE k 50 GT",
            "EXPIRE k 500 GT",
            "TTL k",
            "EXPIRE k 900 LT",
            "EXPIRE k 40 LT",
            "TTL k",
        ],
        &[
            "SET k v",
            "EXPIRE k 100 GT",
            "EXPIRE k 100 LT",
            "TTL k",
            "EXPIRE k 150 XX GT",
            "EXPIRE k 120 XX LT",
            "TTL k",
            "EXPIRE k 300 xx gt",
            "TTL k",
        ],
        &[
            "SET k v",
            "EXPIRE k 10 NX XX",
            "EXPIRE k 10 NX GT",
            "EXPIRE k 10 GT LT",
            "EXPIRE k 10 FOO",
            "EXPIRE k abc FOO",
            "EXPIRE k abc",
            "EXPIRE k 10 NX NX",
            "TTL k",
        ],
        &[
            "SET k v",
            "EXPIRE k 0",
            "EXISTS k",
            "SET k v",
            "EXPIRE k -10",
            "EXISTS k",
            "SET k v",
            "PEXPIRE k -1",
            "GET k",
            "SET k v",
            "EXPIREAT k 1",
            "GET k",
        ],
        &[
            "SET k v",
            "PEXPIREAT k 0",
            "GET k",
            "SET k v",
            "EXPIREAT k -5",
            "GET k",
            "SET k v",
            "EXPIRE k 9223372036854775807",
            "PEXPIRE k 9223372036854775807",
        ],
        &[
            "SET k v",
            "EXPIRE k 9223372036854775",
            "EXPIRE k -9223372036854775",
            "EXPIRE k -9223372036854776",
            "GET k",
            "SET k v",
            "PEXPIREAT k 9223372036854775807",
            "EXPIREAT k 9223372036854775807",
        ],
        &[
            "SETEX k 1000000000 v",
            "TTL k",
            "EXPIRE k 999999999 GT",
            "EXPIRE k 1000000100 GT",
            "TTL k",
            "EXPIRE k 1000000200 LT",
            "EXPIRE k 900000000 LT",
            "TTL k",
            "PEXPIRE k 1090000000000",
            "PTTL k",
            "SET k v PX 1090000000000",
            "PTTL k",
            "EXPIREAT k 0",
            "EXISTS k",
        ],
        &[
            "SET k v",
            "EXPIREAT k 2000000000",
            "TTL k",
            "PEXPIREAT k 2000000001000 GT",
            "PEXPIREAT k 1999999999000 LT",
            "TTL k",
            "EXPIRE k 100 NX",
        ],
        &[
            "SET k v",
            "EXPIRE k",
            "TTL",
            "TTL k extra",
            "PERSIST",
            "EXPIRE k 10 -1",
            "PEXPIRE k 1000 LT",
            "PTTL k",
        ],
        &[
            "SET k v EX 100",
            "GETEX k",
            "TTL k",
            "GETEX k PERSIST",
            "TTL k",
            "GETEX k EX 50",
            "TTL k",
            "GETEX k PX 40000",
            "PTTL k",
            "GETEX k EXAT 2000000000",
            "TTL k",
        ],
        &[
            "SET k v",
            "GETEX k EX 0",
            "GETEX k EX -1",
            "GETEX k PERSIST EX 10",
            "GETEX k EX 10 PERSIST",
            "GETEX k NX",
            "GETEX k KEEPTTL",
            "GETEX k GET",
            "GETEX k EX",
        ],
        &[
            "SET k v",
            "GETEX k PXAT 1",
            "EXISTS k",
            "GETEX nope EX 10",
            "GETEX nope EX 0",
            "GETEX k EX abc",
            "SET k v",
            "GETEX k EX 10 EX 20",
            "TTL k",
        ],
    ]);
}

#[test]
fn multi_key_and_keyspace_commands() {
    run_cases(&[
        &[
            "MSET a 1 b 2 c 3",
            "MGET a b c d",
            "MSET a",
            "MSET a 1 b",
            "MSETNX a 1 z 2",
            "MGET z",
            "MSETNX y 1 z 2",
            "MGET y z",
            "MSETNX q",
        ],
        &[
            "SET a 1 EX 100",
            "MSET a 2",
            "TTL a",
            "DEL a b c",
            "SET a 1",
            "DEL a a a",
            "EXISTS a",
            "SET a 1",
            "EXISTS a a b a",
            "DEL",
            "EXISTS",
        ],
        &[
            "MSET a 1 ab 2 abc 3 b 4 [ 5 \\ 6 a* 7 h?llo 8",
            "KEYS *",
            "KEYS a*",
            "KEYS a?",
            "KEYS *b*",
            "KEYS [ab]",
            "KEYS [^a]",
            "KEYS [a-b]*",
            "KEYS \\*",
        ],
        &[
            "MSET hello 1 hallo 2 hxllo 3 hllo 4 heeeello 5",
            "KEYS h?llo",
            "KEYS h*llo",
            "KEYS h[ae]llo",
            "KEYS h[^e]llo",
            "KEYS h[a-b]llo",
            "KEYS h[b-a]llo",
        ],
        &[
            "MSET a* 1 a\\ 2 ] 3 [ 4 - 5 ^ 6",
            "KEYS a\\*",
            "KEYS a\\",
            "KEYS [\\]]",
            "KEYS [",
            "KEYS [a",
            "KEYS [^]",
            "KEYS [-]",
            "KEYS [a-]",
            "KEYS [\\^]",
            "KEYS ?",
            "KEYS **",
            "KEYS \"\"",
        ],
        &[
            "MSET x 1 y 2",
            "DBSIZE",
            "TYPE x",
            "TYPE nope",
            "RANDOMKEY",
            "FLUSHDB",
            "RANDOMKEY",
            "DBSIZE",
            "FLUSHDB ASYNC",
            "FLUSHDB SYNC",
            "FLUSHDB foo",
            "FLUSHDB sync extra",
            "DBSIZE x",
        ],
        &[
            "STRLEN nope",
            "APPEND k a",
            "APPEND k bc",
            "STRLEN k",
            "GET k",
            "APPEND",
            "STRLEN",
        ],
        &[
            "FOO",
            "FOO a b",
            "foo a\nb",
            "GETT k",
            "SET",
            "GET a b",
            "MGET",
            "KEYS",
            "KEYS a b",
            "SCAN",
            "TYPE",
            "RANDOMKEY x",
            "INCR",
            "INCRBY k",
            "DECRBY k 1 2",
        ],
        &[
            "SCAN abc",
            "SCAN 0 COUNT 0",
            "SCAN 0 COUNT -1",
            "SCAN 0 COUNT abc",
            "SCAN 0 MATCH",
            "SCAN 0 FOO bar",
            "SCAN -1x",
            "SCAN \"\"",
            "SCAN 18446744073709551616",
        ],
    ]);
}

#[test]
fn getrange_and_substr() {
    run_cases(&[
        &[
            "SET k This_is_a_string",
            "GETRANGE k 0 3",
            "GETRANGE k -3 -1",
            "GETRANGE k 0 -1",
            "GETRANGE k 10 100",
            "GETRANGE k -100 -50",
            "GETRANGE k -100 100",
            "GETRANGE k -1 -5",
            "GETRANGE k 5 3",
            "GETRANGE k 0 0",
            "GETRANGE k 15 15",
            "GETRANGE k 16 16",
            "GETRANGE k 16 100",
            "GETRANGE k -16 -16",
            "GETRANGE k -17 0",
            "GETRANGE k -17 -17",
            "GETRANGE k 3 -14",
            "GETRANGE k 3 -13",
            "GETRANGE k 9223372036854775807 9223372036854775807",
            "GETRANGE k -9223372036854775808 -9223372036854775808",
            "GETRANGE k -9223372036854775808 9223372036854775807",
            "GETRANGE k 0 -9223372036854775808",
            "GETRANGE k -9223372036854775808 -1",
            "SUBSTR k 0 3",
            "SUBSTR k -3 -1",
            "SUBSTR k 5 3",
            "SUBSTR missing 0 -1",
        ],
        &[
            "GETRANGE missing 0 -1",
            "GETRANGE missing 5 1",
            "SET e \"\"",
            "GETRANGE e 0 -1",
            "GETRANGE e 0 0",
            "GETRANGE e -1 -1",
            "GETRANGE e -1 0",
            "SET n 12345",
            "INCR n",
            "GETRANGE n 1 2",
            "GETRANGE n -2 -1",
        ],
        // Numbers as string2ll reads them, both before the key is looked up.
        &[
            "SET k hello",
            "GETRANGE k x 0",
            "GETRANGE k 0 x",
            "GETRANGE missing x 0",
            "GETRANGE missing 0 1.5",
            "GETRANGE k -0 5",
            "GETRANGE k +1 3",
            "GETRANGE k 01 3",
            "GETRANGE k \"\" 3",
            "GETRANGE k 0 9223372036854775808",
            "GETRANGE k -9223372036854775809 0",
            "SUBSTR k 1 -0",
        ],
        &[
            "GETRANGE",
            "GETRANGE k",
            "GETRANGE k 0",
            "GETRANGE k 0 1 2",
            "SUBSTR k 0",
            "SUBSTR k 0 1 2",
            "substr",
            "GetRange k 0",
        ],
    ]);
}

#[test]
fn setrange_matches_redis() {
    run_cases(&[
        &[
            "SET k Hello_World",
            "SETRANGE k 6 Redis",
            "GET k",
            "SETRANGE k 0 J",
            "SETRANGE k 9 dish!",
            "GET k",
            "SETRANGE k 20 !",
            "GET k",
            "STRLEN k",
            "SETRANGE k 21 ?",
            "SETRANGE k 30 end",
            "GET k",
            "SETRANGE k 0 0123456789012345678901234567890123456789",
            "GET k",
        ],
        // Padding a new key, and writing nothing.
        &[
            "SETRANGE new 3 abc",
            "GET new",
            "SETRANGE new2 0 x",
            "GET new2",
            "SETRANGE missing 5 \"\"",
            "SETRANGE missing 0 \"\"",
            "SETRANGE missing 9223372036854775807 \"\"",
            "EXISTS missing",
            "SET k abc",
            "SETRANGE k 100 \"\"",
            "SETRANGE k 9223372036854775807 \"\"",
            "GET k",
            "SET e \"\"",
            "SETRANGE e 0 \"\"",
            "SETRANGE e 2 x",
            "GET e",
        ],
        // The expiry stays; APPEND, INCR and SETRANGE on one value.
        &[
            "SET t v EX 100",
            "SETRANGE t 1 abc",
            "TTL t",
            "SETRANGE t 10 z",
            "TTL t",
            "GET t",
            "SET n 10",
            "SETRANGE n 2 5",
            "INCR n",
            "SETRANGE n 0 x",
            "INCR n",
            "APPEND a xyz",
            "SETRANGE a 5 q",
            "APPEND a r",
            "SETRANGE a 1 \"\"",
            "SETRANGE a 2 ZZZZZZZ",
            "APPEND a !",
            "GET a",
            "STRLEN a",
        ],
        // Offsets: negative, not integers, and past 512 MiB with the value.
        &[
            "SET k abc",
            "SETRANGE k -1 x",
            "SETRANGE k -1 \"\"",
            "SETRANGE missing -1 \"\"",
            "SETRANGE missing -9223372036854775808 x",
            "SETRANGE k -0 x",
            "SETRANGE k +5 x",
            "SETRANGE k 05 x",
            "SETRANGE k 1.0 x",
            "SETRANGE k x x",
            "SETRANGE missing x \"\"",
            "SETRANGE k \"\" x",
            "SETRANGE k 9223372036854775808 x",
            "SETRANGE k 9223372036854775807 x",
            "SETRANGE k 9223372036854775807 xyz",
            "SETRANGE k 536870912 x",
            "SETRANGE k 536870911 xy",
            "SETRANGE k 0 \"\"",
            "SETRANGE m 536870912 x",
            "SETRANGE m 536870911 xy",
            "SETRANGE m 4611686018427387904 x",
            "EXISTS m",
            "GET k",
        ],
        &[
            "SETRANGE",
            "SETRANGE k",
            "SETRANGE k 0",
            "SETRANGE k 0 a b",
            "SETRANGE k -1",
            "EXISTS k",
        ],
    ]);
}

#[test]
fn touch_unlink_and_expiretime() {
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let at_s = unix_s + 100;
    let at_ms = (unix_s + 200) * 1000 + 123;
    let expire_at = format!("EXPIREAT k {at_s}");
    let pexpire_at = format!("PEXPIREAT k {at_ms}");
    let past = format!("PEXPIREAT k {}", (unix_s - 10) * 1000);
    run_cases(&[
        &[
            "MSET a 1 b 2",
            "TOUCH a",
            "TOUCH a b c a",
            "TOUCH missing",
            "TOUCH",
            "UNLINK a a b c",
            "EXISTS a b",
            "TOUCH a b",
            "UNLINK",
            "SET k v EX 100",
            "UNLINK k",
            "TTL k",
        ],
        &[
            "EXPIRETIME k",
            "PEXPIRETIME k",
            "SET k v",
            "EXPIRETIME k",
            "PEXPIRETIME k",
            &expire_at,
            "EXPIRETIME k",
            "PEXPIRETIME k",
            &pexpire_at,
            "PEXPIRETIME k",
            "EXPIRETIME k",
            "EXPIRE k 100",
            "EXPIRETIME k",
            "SET k v PX 5500",
            "PEXPIRETIME k",
            "EXPIRETIME k",
            "PERSIST k",
            "EXPIRETIME k",
            "PEXPIRETIME k",
            &past,
            "EXPIRETIME k",
            "PEXPIRETIME k",
            "EXPIRETIME",
            "EXPIRETIME a b",
            "PEXPIRETIME",
            "PEXPIRETIME a b",
        ],
    ]);
    // A deadline set in Unix ms reads back exactly, as on Redis.
    let store = KvStore::new();
    store.execute(&["SET", "k", "v"]);
    store.execute(&["PEXPIREAT", "k", &at_ms.to_string()]);
    let Reply::Integer(got) = store.execute(&["PEXPIRETIME", "k"]) else {
        panic!("PEXPIRETIME answers an integer");
    };
    assert_eq!(got, at_ms as i64);
    assert_eq!(
        store.execute(&["EXPIRETIME", "k"]),
        Reply::Integer(((at_ms + 500) / 1000) as i64)
    );
}

#[test]
fn scan_full_iteration_matches_keys() {
    let Some(mut p) = Pair::new() else { return };
    p.flush();
    for i in 0..300 {
        p.check(&format!("SET key:{}:{} v", i % 7, i));
    }
    for (pattern, count) in [
        ("*", 10),
        ("key:3:*", 7),
        ("key:[0-2]:1?", 50),
        ("nomatch*", 5),
        ("*", 1000),
    ] {
        let mut from_redis = BTreeSet::new();
        let mut cursor = "0".to_string();
        loop {
            let v: (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count)
                .query(&mut p.con)
                .expect("scan");
            from_redis.extend(v.1);
            cursor = v.0;
            if cursor == "0" {
                break;
            }
        }
        let mut from_kv = BTreeSet::new();
        let mut cursor = b"0".to_vec();
        let mut calls = 0;
        loop {
            let reply = p.kv.execute(&[
                &b"SCAN"[..],
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                count.to_string().as_bytes(),
            ]);
            let Reply::Array(parts) = reply else {
                panic!("SCAN reply {reply:?}")
            };
            let (Reply::Bulk(next), Reply::Array(keys)) = (&parts[0], &parts[1]) else {
                panic!("SCAN parts {parts:?}")
            };
            for k in keys {
                let Reply::Bulk(k) = k else {
                    panic!("key {k:?}")
                };
                assert!(from_kv.insert(k.to_vec()), "SCAN returned {k:?} twice");
            }
            cursor = next.to_vec();
            calls += 1;
            assert!(calls < 1000, "SCAN does not terminate");
            if cursor == b"0" {
                break;
            }
        }
        let from_redis: BTreeSet<Vec<u8>> =
            from_redis.into_iter().map(String::into_bytes).collect();
        assert_eq!(from_redis, from_kv, "SCAN MATCH {pattern} COUNT {count}");
    }
}

#[test]
fn expiry_with_real_sleeps() {
    let Some(mut p) = Pair::new() else { return };
    p.flush();
    for line in [
        "SET a v PX 60",
        "SET b v",
        "PEXPIRE b 60",
        "SET c v EX 100",
        "PSETEX d 60 v",
        "SET e 5 PX 60",
        "GETEX f PX 60",
    ] {
        p.check(line);
    }
    p.check("INCR e");
    p.check("PTTL a");
    std::thread::sleep(Duration::from_millis(150));
    for line in [
        "GET a",
        "EXISTS a b c d",
        "TTL b",
        "PTTL d",
        "INCR e",
        "TTL e",
        "KEYS *",
        "MGET a b c d",
        "GETEX b PERSIST",
        "PERSIST a",
    ] {
        p.check(line);
    }
    p.check("SET k v PX 60");
    p.check("PEXPIRE k 200 GT");
    std::thread::sleep(Duration::from_millis(100));
    p.check("EXISTS k");
    p.check("APPEND k x");
    p.check("TTL k");
}

/// One generated command.
fn command() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec!["k0", "k1", "k2", "k3", "ab", "a*"]);
    let int = prop_oneof![
        (-5i64..50).prop_map(|n| n.to_string()),
        Just(i64::MAX.to_string()),
        Just(i64::MIN.to_string()),
        Just((i64::MAX - 1).to_string()),
        Just("x1".to_string()),
        Just("1.5".to_string()),
    ];
    let value = prop_oneof![
        int.clone(),
        Just("hello".to_string()),
        Just("\"\"".to_string())
    ];
    let set_opt = prop::sample::select(vec![
        "",
        "NX",
        "XX",
        "GET",
        "KEEPTTL",
        "EX 100",
        "PX 50000",
        "EXAT 1",
        "EX 0",
        "NX GET",
        "XX KEEPTTL",
    ]);
    let expire_opt = prop::sample::select(vec!["", "NX", "XX", "GT", "LT", "XX GT", "NX LT"]);
    let secs = prop::sample::select(vec!["100", "200", "1000", "0", "-1", "abc"]);
    let pattern = prop::sample::select(vec!["*", "k*", "k[0-1]", "?b", "a\\*", "[^k]*"]);
    prop_oneof![
        (key.clone(), value.clone(), set_opt).prop_map(|(k, v, o)| format!("SET {k} {v} {o}")),
        key.clone().prop_map(|k| format!("GET {k}")),
        key.clone().prop_map(|k| format!("INCR {k}")),
        (key.clone(), int.clone()).prop_map(|(k, n)| format!("INCRBY {k} {n}")),
        (key.clone(), int.clone()).prop_map(|(k, n)| format!("DECRBY {k} {n}")),
        (
            key.clone(),
            prop::sample::select(vec!["0.5", "-2", "abc", "10"])
        )
            .prop_map(|(k, n)| format!("INCRBYFLOAT {k} {n}")),
        (key.clone(), value.clone()).prop_map(|(k, v)| format!("APPEND {k} {v}")),
        key.clone().prop_map(|k| format!("STRLEN {k}")),
        (key.clone(), key.clone()).prop_map(|(a, b)| format!("DEL {a} {b}")),
        (key.clone(), key.clone()).prop_map(|(a, b)| format!("EXISTS {a} {b} {a}")),
        (key.clone(), value.clone()).prop_map(|(k, v)| format!("GETSET {k} {v}")),
        key.clone().prop_map(|k| format!("GETDEL {k}")),
        (key.clone(), value.clone(), key.clone())
            .prop_map(|(a, v, b)| format!("MSET {a} {v} {b} {v}")),
        (key.clone(), value.clone(), key.clone())
            .prop_map(|(a, v, b)| format!("MSETNX {a} {v} {b} {v}")),
        (key.clone(), key.clone()).prop_map(|(a, b)| format!("MGET {a} {b}")),
        (key.clone(), value).prop_map(|(k, v)| format!("SETNX {k} {v}")),
        (
            prop::sample::select(vec!["EXPIRE", "PEXPIRE"]),
            key.clone(),
            secs,
            expire_opt
        )
            .prop_map(|(c, k, s, o)| format!(
                "{c} {k} {s}{} {o}",
                if c == "PEXPIRE" { "000" } else { "" }
            )),
        key.clone().prop_map(|k| format!("PERSIST {k}")),
        key.clone().prop_map(|k| format!("TTL {k}")),
        key.clone().prop_map(|k| format!("TYPE {k}")),
        (
            key.clone(),
            prop::sample::select(vec!["", "PERSIST", "EX 100", "EX 0", "PX 1000"])
        )
            .prop_map(|(k, o)| format!("GETEX {k} {o}")),
        pattern.prop_map(|p| format!("KEYS {p}")),
        Just("DBSIZE".to_string()),
        range_command(key),
    ]
}

/// One generated `GETRANGE`/`SETRANGE`/`TOUCH`/`UNLINK`/`EXPIRETIME`.
fn range_command(
    key: impl Strategy<Value = &'static str> + Clone,
) -> impl Strategy<Value = String> {
    let pos = prop::sample::select(vec![
        "0",
        "1",
        "3",
        "-1",
        "-3",
        "10",
        "-100",
        "x",
        "-0",
        "9223372036854775807",
    ]);
    let bytes = prop::sample::select(vec!["a", "xyz", "\"\"", "12"]);
    prop_oneof![
        (key.clone(), pos.clone(), pos.clone())
            .prop_map(|(k, a, b)| format!("GETRANGE {k} {a} {b}")),
        (key.clone(), pos, bytes).prop_map(|(k, o, v)| format!("SETRANGE {k} {o} {v}")),
        (key.clone(), key.clone()).prop_map(|(a, b)| format!("TOUCH {a} {b} {a}")),
        (key.clone(), key.clone()).prop_map(|(a, b)| format!("UNLINK {a} {b}")),
        key.clone().prop_map(|k| format!("EXPIRETIME {k}")),
        key.prop_map(|k| format!("PEXPIRETIME {k}")),
    ]
}

#[test]
fn random_sequences_match_redis() {
    let Some(pair) = Pair::new() else { return };
    let pair = RefCell::new(pair);
    let mut runner = TestRunner::new(Config {
        cases: 150,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec(command(), 1..40);
    let result = runner.run(&strategy, |ops| {
        let mut p = pair.borrow_mut();
        p.check_args(&words("FLUSHDB"))
            .map_err(TestCaseError::fail)?;
        for op in &ops {
            p.check_args(&words(op))
                .map_err(|e| TestCaseError::fail(format!("{e}\n  sequence: {ops:#?}")))?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A random float argument in one of the forms `strtold` reads: plain and
/// exponent decimals of many magnitudes, integers near 2^53 and 2^64,
/// hexadecimal with and without a binary exponent, and a few invalid ones.
fn random_float(rng: &mut impl rand::Rng) -> String {
    let sign = if rng.gen_bool(0.3) { "-" } else { "" };
    match rng.gen_range(0..10) {
        0 => format!("{sign}{}", rng.gen_range(0..1_000_000u64)),
        1 => format!(
            "{sign}{}.{}",
            rng.gen_range(0..1000u32),
            rng.gen_range(0..100_000u32)
        ),
        2 => format!("{sign}0.{:0>6}", rng.gen_range(0..1_000_000u32)),
        3 => format!(
            "{sign}{}e{}",
            rng.gen_range(1..100u32),
            rng.gen_range(-30..30i32)
        ),
        4 => format!(
            "{sign}{}e{}",
            rng.gen_range(1..10u32),
            rng.gen_range(250..320i32)
        ),
        5 => format!("{sign}{}", (1u64 << 53) + rng.gen_range(0..8u64)),
        6 => format!("{sign}0x{:x}", rng.gen_range(0..1_000_000u32)),
        7 => format!(
            "{sign}0x1.{:x}p{}",
            rng.gen_range(0..4096u32),
            rng.gen_range(-40..40i32)
        ),
        8 => format!(
            "{sign}{}.{:0>17}",
            rng.gen_range(0..10u32),
            rng.gen_range(0..u64::MAX) % 100_000_000_000_000_000
        ),
        _ => ["1e", "0x", "abc", " 1", "inf", "1e5000", "0.1", ".5", "5."][rng.gen_range(0..9)]
            .to_owned(),
    }
}

#[test]
fn incrbyfloat_matches_redis_byte_for_byte() {
    use rand::{Rng, SeedableRng};
    let Some(mut p) = Pair::new() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x01DF_10A7);
    p.flush();
    for i in 0..3000 {
        let key = format!("f{}", i % 7);
        if rng.gen_bool(0.1) {
            let v = random_float(&mut rng);
            p.check_args(&[b"SET".to_vec(), key.clone().into_bytes(), v.into_bytes()])
                .unwrap_or_else(|e| panic!("replies differ for {e}"));
        }
        let inc = random_float(&mut rng);
        let args = [b"INCRBYFLOAT".to_vec(), key.into_bytes(), inc.into_bytes()];
        p.check_args(&args)
            .unwrap_or_else(|e| panic!("step {i}: replies differ for {e}"));
    }
    for line in [
        "SET a 0.1",
        "INCRBYFLOAT a 0.2",
        "SET a 9007199254740993",
        "INCRBYFLOAT a 1",
        "SET a 0x10",
        "INCRBYFLOAT a 0x1p3",
        "SET a 1e308",
        "INCRBYFLOAT a 1e308",
        "INCRBYFLOAT a 1.18e4932",
        "SET a 0",
        "INCRBYFLOAT a 0.000003814697265625",
        "INCRBYFLOAT a 1e-4940",
        "INCRBYFLOAT a 0x1p-16446",
        "INCRBYFLOAT a Infinity",
        "INCRBYFLOAT a -inf",
        "INCRBYFLOAT a nan",
    ] {
        p.check(line);
    }
    // Non-ASCII text, stored or given, with a character across byte 2.
    for (value, increment) in [
        ("C\u{17c}", "1"),
        ("1", "C\u{17c}"),
        ("0\u{17c}", "1"),
        ("1", "0x\u{17c}"),
        ("\u{17c}", "-\u{17c}"),
    ] {
        for args in [
            vec![b"SET".to_vec(), b"u".to_vec(), value.as_bytes().to_vec()],
            vec![
                b"INCRBYFLOAT".to_vec(),
                b"u".to_vec(),
                increment.as_bytes().to_vec(),
            ],
            vec![b"GET".to_vec(), b"u".to_vec()],
        ] {
            p.check_args(&args)
                .unwrap_or_else(|e| panic!("replies differ for {e}"));
        }
    }
}

/// `name:value` pairs of an `INFO` text, by name.
fn info_fields(text: &[u8]) -> std::collections::BTreeMap<String, String> {
    String::from_utf8_lossy(text)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn info_fields_are_redis_fields() {
    let Some(mut p) = Pair::new() else { return };
    p.flush();
    for line in [
        "SET a 1",
        "SET b 2 EX 100",
        "GET a",
        "GET missing",
        "GET b",
        "SET c 3 PX 1",
    ] {
        p.check(line);
    }
    std::thread::sleep(Duration::from_millis(20));
    p.check("GET c");
    // Unknown sections are empty on both sides.
    p.check("INFO nosuchsection");
    for section in ["server", "memory", "stats", "keyspace"] {
        let args = [b"INFO".to_vec(), section.as_bytes().to_vec()];
        let (R::Bulk(want), R::Bulk(got)) = p.both(&args) else {
            panic!("INFO {section} is not a bulk string on both sides");
        };
        let (want, got) = (info_fields(&want), info_fields(&got));
        assert!(!got.is_empty(), "INFO {section} is empty");
        for (name, value) in &got {
            let theirs = want
                .get(name)
                .unwrap_or_else(|| panic!("INFO {section}: Redis has no field {name}"));
            match name.as_str() {
                // Counted when reclaimed: a read sees an expired key gone
                // but leaves reclaiming it to the next write.
                "expired_keys" => assert!(value <= theirs, "expired_keys {value} vs {theirs}"),
                "keyspace_hits" | "keyspace_misses" | "evicted_keys" | "maxmemory"
                | "maxmemory_human" | "redis_version" | "arch_bits" | "redis_mode" => {
                    assert_eq!(value, theirs, "INFO {section}: {name}")
                }
                // Redis adds avg_ttl (an estimate) after keys and expires.
                "db0" => assert!(
                    theirs.starts_with(value.as_str()),
                    "db0: {theirs} vs {value}"
                ),
                _ => {}
            }
        }
    }
}

/// Arguments a client may send that no command expects: CR, LF and NUL
/// inside options, text where numbers go (spaces, signs, hexadecimal,
/// non-ASCII digits), numbers one past the `i64` range, non-ASCII keys and
/// values. Each sequence on a flushed database; every reply compared.
///
/// Redis compares option names with `strcasecmp` on C strings, so an option
/// ends at a NUL byte (`EX\0` is `EX`, `nx\0junk` is `NX`), while keys,
/// values, patterns, command names and numbers are read whole (a NUL makes
/// a number invalid), except `SCAN`'s cursor, which `strtoul` reads up to
/// the NUL.
#[test]
fn hostile_arguments_match_redis() {
    let Some(mut p) = Pair::new() else { return };
    let b = |s: &str| s.as_bytes().to_vec();
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let (in_100_s, in_80_s) = ((unix_s + 100).to_string(), (unix_s + 80).to_string());
    let in_100_s_ms = ((unix_s + 100) * 1000).to_string();
    let cases: Vec<Vec<Vec<Vec<u8>>>> = vec![
        // SET's options are C strings; its number is not.
        vec![
            vec![b("SET"), b("k"), b("v"), b("EX\0"), b("10")],
            vec![b("TTL"), b("k")],
            vec![b("SET"), b("k"), b("v"), b("nx\0junk")],
            vec![
                b("SET"),
                b("k"),
                b("v"),
                b("xx\0junk"),
                b("px\0"),
                b("5000"),
            ],
            vec![b("PTTL"), b("k")],
            vec![b("SET"), b("k"), b("v2"), b("KEEPTTL\0x")],
            vec![b("PTTL"), b("k")],
            vec![b("SET"), b("k"), b("v3"), b("GET\0x")],
            vec![
                b("SET"),
                b("k"),
                b("v"),
                b("EX"),
                b("10"),
                b("EX\0"),
                b("20"),
            ],
            vec![b("TTL"), b("k")],
            vec![
                b("SET"),
                b("k"),
                b("v"),
                b("EX"),
                b("10"),
                b("PX\0"),
                b("20"),
            ],
            vec![b("SET"), b("k"), b("v"), b("EX\0"), b("10"), b("KEEPTTL")],
            vec![b("SET"), b("k"), b("v"), b("NX"), b("XX\0")],
            vec![b("SET"), b("k"), b("v"), b("\0")],
            vec![b("SET"), b("k"), b("v"), b("\0EX"), b("10")],
            vec![b("SET"), b("k"), b("v"), b("EX"), b("10\0")],
            vec![
                b("SET"),
                b("k"),
                b("v"),
                b("EXAT\0"),
                in_100_s.clone().into_bytes(),
            ],
            vec![b("TTL"), b("k")],
            vec![
                b("SET"),
                b("k"),
                b("v"),
                b("pxat\0a"),
                in_100_s_ms.into_bytes(),
            ],
            vec![b("TTL"), b("k")],
            vec![b("GET"), b("k")],
        ],
        // GETEX's, the same parser.
        vec![
            vec![b("SET"), b("k"), b("v")],
            vec![b("GETEX"), b("k"), b("ex\0"), b("100")],
            vec![b("TTL"), b("k")],
            vec![b("GETEX"), b("k"), b("PERSIST\0")],
            vec![b("TTL"), b("k")],
            vec![b("GETEX"), b("k"), b("px\0junk"), b("5000")],
            vec![b("PTTL"), b("k")],
            vec![b("GETEX"), b("k"), b("EX"), b("10\0")],
            vec![b("GETEX"), b("k"), b("PERSIST\0"), b("EX"), b("10")],
            vec![b("GETEX"), b("missing"), b("ex\0"), b("100")],
        ],
        // EXPIRE's conditions.
        vec![
            vec![b("SET"), b("k"), b("v")],
            vec![b("EXPIRE"), b("k"), b("100"), b("nx\0")],
            vec![b("EXPIRE"), b("k"), b("50"), b("gt\0")],
            vec![b("EXPIRE"), b("k"), b("50"), b("LT\0x")],
            vec![b("TTL"), b("k")],
            vec![b("EXPIRE"), b("k"), b("60"), b("xx\0")],
            vec![b("PEXPIRE"), b("k"), b("70000"), b("XX\0junk")],
            vec![b("TTL"), b("k")],
            vec![b("EXPIREAT"), b("k"), in_80_s.into_bytes(), b("NX\0")],
            vec![b("EXPIRE"), b("k"), b("10"), b("nx\0"), b("xx\0")],
            vec![b("EXPIRE"), b("k"), b("10\0")],
            vec![b("EXPIRE"), b("k"), b("10"), b("\0nx")],
            vec![b("TTL"), b("k")],
        ],
        // FLUSHDB's mode.
        vec![
            vec![b("SET"), b("k"), b("v")],
            vec![b("FLUSHDB"), b("\0")],
            vec![b("FLUSHDB"), b("sync\0")],
            vec![b("GET"), b("k")],
            vec![b("SET"), b("k"), b("v")],
            vec![b("FLUSHDB"), b("ASYNC\0x")],
            vec![b("FLUSHDB"), b("async\0"), b("x")],
            vec![b("GET"), b("k")],
        ],
        // SCAN's options (on an empty database, so that both sides answer
        // cursor 0); a number with a NUL is not one.
        vec![
            vec![b("SCAN"), b("0"), b("COUNT\0"), b("10")],
            vec![b("SCAN"), b("0"), b("match\0x"), b("*")],
            vec![b("SCAN"), b("0"), b("TYPE\0"), b("string")],
            vec![b("SCAN"), b("0"), b("TYPE"), b("string\0x")],
            vec![b("SCAN"), b("0"), b("COUNT"), b("10\0")],
            vec![b("SCAN"), b("0"), b("\0COUNT"), b("10")],
            vec![b("SCAN"), b("0\0junk")],
            vec![b("SCAN"), b("\0junk")],
            vec![b("SCAN"), b(" 0")],
        ],
        // Numbers are read whole; command names too (the error stops at the NUL).
        vec![
            vec![b("SET"), b("n"), b("1")],
            vec![b("INCRBY"), b("n"), b("10\0")],
            vec![b("DECRBY"), b("n"), b("1\0")],
            vec![b("INCRBYFLOAT"), b("n"), b("1.5\0")],
            vec![b("SETEX"), b("n"), b("10\0"), b("v")],
            vec![b("PSETEX"), b("n"), b("100\0"), b("v")],
            vec![b("SET"), b("m"), b("1\0")],
            vec![b("INCR"), b("m")],
            vec![b("INCRBYFLOAT"), b("m"), b("1")],
            vec![b("GET\0"), b("n")],
            vec![b("get\0x"), b("n")],
            vec![b("GET"), b("n")],
        ],
        // Keys, values and patterns keep their NUL bytes.
        vec![
            vec![b("SET"), b("a\0b"), b("x\0y")],
            vec![b("GET"), b("a\0b")],
            vec![b("GET"), b("a")],
            vec![b("APPEND"), b("a\0b"), b("\0")],
            vec![b("STRLEN"), b("a\0b")],
            vec![b("EXISTS"), b("a"), b("a\0b")],
            vec![b("KEYS"), b("a\0*")],
            vec![b("KEYS"), b("a")],
            vec![b("DEL"), b("a\0b")],
        ],
        // GETRANGE's and SETRANGE's numbers are read whole; keys and values
        // keep their NUL bytes.
        vec![
            vec![b("SET"), b("k"), b("hello")],
            vec![b("GETRANGE"), b("k"), b("0\0"), b("2")],
            vec![b("GETRANGE"), b("k"), b("0"), b("2\0")],
            vec![b("SUBSTR"), b("k"), b("\0"), b("2")],
            vec![b("GETRANGE"), b("k"), b(" 1"), b("2")],
            vec![b("SETRANGE"), b("k"), b("5\0"), b("x")],
            vec![b("SETRANGE"), b("k"), b("\0"), b("x")],
            vec![b("SETRANGE"), b("k"), b("1 "), b("x")],
            vec![b("SETRANGE"), b("k"), b("\u{ff11}"), b("x")],
            vec![b("SETRANGE"), b("a\0b"), b("2"), b("x\0y")],
            vec![b("GET"), b("a\0b")],
            vec![b("GETRANGE"), b("a\0b"), b("1"), b("-2")],
            vec![b("SETRANGE"), b("k"), b("1"), b("\0\0")],
            vec![b("GET"), b("k")],
            vec![b("TOUCH"), b("a\0b"), b("a"), b("k")],
            vec![b("EXPIRETIME"), b("a\0b")],
            vec![b("UNLINK"), b("a\0b"), b("a")],
            vec![b("GETRANGE\0"), b("k"), b("0"), b("1")],
            vec![b("SETRANGE\0x"), b("k"), b("0"), b("1")],
            vec![b("SETRANGE"), b("\u{17c}"), b("1"), b("\u{17c}")],
            vec![b("GETRANGE"), b("\u{17c}"), b("0"), b("1")],
            vec![b("GETRANGE"), b("\u{17c}"), b("1"), b("1")],
        ],
        // Error text quoting an argument stays one line, and stops at a NUL.
        vec![vec![b("PEXPIRE"), b("k"), b("100"), b("\r\n")]],
        vec![vec![b("EXPIRE"), b("k"), b("100"), b("a\nb")]],
        vec![vec![b("EXPIRE"), b("k"), b("100"), b("x\r\n")]],
        vec![vec![b("PEXPIREAT"), b("k"), b("1"), b("\r\nGT")]],
        vec![vec![b("EXPIRE"), b("k"), b("100"), b("a\0b")]],
        vec![vec![b("EXPIRE"), b("k"), b("100"), b("\0")]],
        vec![vec![b("SET"), b("k"), b("v"), b("\r\n")]],
        vec![vec![b("NO\r\nSUCH"), b("a\r\nb")]],
        // Numbers as Redis reads them, and what it refuses.
        vec![
            vec![b("SET"), b("n"), b("10")],
            vec![b("INCRBY"), b("n"), b(" 1")],
            vec![b("INCRBY"), b("n"), b("1 ")],
            vec![b("INCRBY"), b("n"), b("+1")],
            vec![b("INCRBY"), b("n"), b("-0")],
            vec![b("INCRBY"), b("n"), b("01")],
            vec![b("INCRBY"), b("n"), b("0x10")],
            vec![b("INCRBY"), b("n"), b("1e3")],
            vec![b("INCRBY"), b("n"), b("\u{ff11}")],
            vec![b("INCRBY"), b("n"), b("9223372036854775808")],
            vec![b("DECRBY"), b("n"), b("-9223372036854775809")],
            vec![b("INCRBY"), b("n"), b("")],
            vec![b("GET"), b("n")],
        ],
        vec![
            vec![b("SET"), b("n"), b(" 1")],
            vec![b("INCR"), b("n")],
            vec![b("SET"), b("n"), b("\u{ff11}")],
            vec![b("DECR"), b("n")],
            vec![b("INCRBYFLOAT"), b("n"), b("1")],
            vec![b("SET"), b("n"), b("1\r\n")],
            vec![b("INCR"), b("n")],
        ],
        vec![
            vec![b("SET"), b("t"), b("v")],
            vec![b("EXPIRE"), b("t"), b(" 100")],
            vec![b("EXPIRE"), b("t"), b("100 ")],
            vec![b("EXPIRE"), b("t"), b("\u{ff11}")],
            vec![b("SET"), b("t"), b("v"), b("EX"), b("+100")],
            vec![b("SET"), b("t"), b("v"), b("PX"), b("0x10")],
            vec![b("SETEX"), b("t"), b("1e3"), b("v")],
            vec![b("GETEX"), b("t"), b("EX"), b("")],
            vec![b("TTL"), b("t")],
        ],
        // Non-ASCII keys, values and patterns.
        vec![
            vec![b("SET"), b("\u{17c}"), b("C\u{17c}")],
            vec![b("SET"), b("C\u{17c}"), b("\u{ff11}")],
            vec![b("APPEND"), b("\u{17c}"), b("\u{17c}")],
            vec![b("STRLEN"), b("\u{17c}")],
            vec![b("GET"), b("\u{17c}")],
            vec![b("MGET"), b("\u{17c}"), b("C\u{17c}"), b("\u{ff11}")],
            vec![b("EXISTS"), b("\u{17c}"), b("C\u{17c}")],
            vec![b("KEYS"), b("?")],
            vec![b("KEYS"), b("C?")],
            vec![b("KEYS"), b("[\u{17c}]")],
            vec![b("TYPE"), b("C\u{17c}")],
            vec![b("DEL"), b("\u{17c}"), b("C\u{17c}")],
        ],
    ];
    for case in &cases {
        p.flush();
        for args in case {
            if args[0].contains(&0) {
                // Redis finds a command by a hash of its whole name, then
                // compares the name as a C string: one with a NUL in it runs
                // the command only when its hash shares that command's
                // bucket, which depends on the server's random hash seed.
                // KvStore reads the name whole. Not sent to Redis, which
                // might run it and leave the two out of step.
                let got = from_kv(p.kv.execute(args));
                assert!(
                    matches!(&got, R::Err(e) if e.contains("unknown command")),
                    "{args:?}: {got:?}"
                );
                continue;
            }
            p.check_args(args)
                .unwrap_or_else(|e| panic!("replies differ for {e}"));
        }
    }
    // INFO's sections are C strings: the same sections on both sides (of
    // those KvStore has).
    p.flush();
    p.check("SET k v");
    for section in [
        "server\0x",
        "KEYSPACE\0",
        "\0server",
        "memory\0",
        "everything\0x",
    ] {
        let args = [b("INFO"), b(section)];
        let (R::Bulk(want), R::Bulk(got)) = p.both(&args) else {
            panic!("INFO {section:?} is not a bulk string on both sides");
        };
        let ours = ["# Server", "# Memory", "# Stats", "# Keyspace"];
        let headers = |text: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(text)
                .split("\r\n")
                .filter(|l| ours.contains(l))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(headers(&got), headers(&want), "INFO {section:?}");
    }
    // SCAN's TYPE is a C string, its pattern is not (the whole iteration
    // compared, each store's cursors being its own).
    p.flush();
    for line in ["SET k v", "SET a\0b v", "SET a v"] {
        p.check_args(&line.split(' ').map(b).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("replies differ for {e}"));
    }
    for options in [
        &["TYPE", "string\0x"][..],
        &["type\0", "STRING\0"],
        &["TYPE", "\0string"],
        &["TYPE", "list\0string"],
        &["MATCH", "a\0*"],
        &["MATCH\0", "a*", "COUNT\0x", "1"],
        &["MATCH", "a\0"],
        &["count\0", "2", "TYPE", "string"],
    ] {
        let options: Vec<Vec<u8>> = options.iter().map(|o| b(o)).collect();
        let (want, got) = p.scan_both(&options);
        assert_eq!(got, want, "SCAN ... {}", show(&options));
    }
    // SCAN's cursor is read by strtoul up to the NUL: a cursor past the
    // digits is taken (its meaning is each store's own), text before them
    // is refused.
    for cursor in ["5\0", "5\0junk", "+5\0", "5x\0"] {
        let args = [b("SCAN"), b(cursor)];
        let (want, got) = p.both(&args);
        let refused = |r: &R| matches!(r, R::Err(_));
        assert_eq!(
            refused(&got),
            refused(&want),
            "SCAN {cursor:?}: {want:?} vs {got:?}"
        );
    }
}
