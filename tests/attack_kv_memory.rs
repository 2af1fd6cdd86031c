#![allow(clippy::unwrap_used)]
//! Attacks on `KvStore`'s `max_memory` accounting, eviction-policy
//! semantics and multi-key atomicity under concurrency, with inputs the
//! other tests do not use.

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/watchdog.rs"]
mod watchdog;

use shardcache::kv::{KvStore, Reply, SetOptions, ENTRY_OVERHEAD};
use shardcache::{Policy, RedisPolicy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OH: u64 = ENTRY_OVERHEAD as u64;

fn store(policy: RedisPolicy, max: u64, shards: usize) -> KvStore {
    KvStore::builder()
        .max_memory(max)
        .policy(Policy::redis(policy))
        .shards(shards)
        .build()
        .unwrap()
}

fn used(kv: &KvStore) -> u64 {
    kv.stats().used_memory
}

fn info_used(kv: &KvStore) -> u64 {
    let info = kv.info(&["memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn is_oom(r: &Reply) -> bool {
    matches!(r, Reply::Error(e) if e.starts_with("OOM"))
}

fn ex<const N: usize>(kv: &KvStore, args: [&str; N]) -> Reply {
    kv.execute(&args)
}

/// Fills a store exactly to `max_memory` with a filler key (noeviction).
fn fill_exactly(kv: &KvStore, max: u64, name: &str) {
    let room = max - used(kv);
    let vlen = room - OH - name.len() as u64;
    kv.set(name, "f".repeat(vlen as usize), SetOptions::new())
        .unwrap();
    assert_eq!(used(kv), max, "filled exactly");
}

/// Under noeviction, on a store filled exactly to max_memory, every write
/// that would grow a key is refused with OOM and leaves the key's value,
/// its TTL and used_memory as they were.
#[test]
fn noeviction_oom_leaves_value_and_ttl_for_every_growing_command() {
    let max = 8 << 10;
    for shards in [1, 4] {
        let kv = store(RedisPolicy::NoEviction, max, shards);
        assert_eq!(ex(&kv, ["SET", "k", "hello", "EX", "1000"]), Reply::ok());
        assert_eq!(ex(&kv, ["SET", "n", "9", "EX", "1000"]), Reply::ok());
        assert_eq!(ex(&kv, ["SET", "f", "1.5", "EX", "1000"]), Reply::ok());
        assert_eq!(ex(&kv, ["SET", "src", "0123456789abcdef"]), Reply::ok());
        fill_exactly(&kv, max, "filler");
        let big = "B".repeat(100);
        let cases: Vec<Vec<&str>> = vec![
            vec!["SET", "k", &big],
            vec!["SET", "k", &big, "KEEPTTL"],
            vec!["SET", "k", &big, "GET"],
            vec!["SET", "k", &big, "XX", "KEEPTTL", "GET"],
            vec!["GETSET", "k", &big],
            vec!["SETEX", "k", "50", &big],
            vec!["APPEND", "k", "x"],
            vec!["SETRANGE", "k", "5", "x"],
            vec!["SETRANGE", "k", "100", "x"],
            vec!["SETBIT", "k", "40", "1"],
            vec!["SETBIT", "k", "4000", "0"],
            vec!["INCR", "n"],
            vec!["INCRBY", "n", "1000"],
            vec!["DECRBY", "n", "100"],
            vec!["INCRBYFLOAT", "f", "0.25"],
            vec!["INCRBYFLOAT", "n", "0.5"],
            vec!["COPY", "src", "k", "REPLACE"],
            vec!["RENAME", "src", "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"],
            vec!["MSET", "k", &big, "zz", "1"],
            vec!["MSET", "zz", "1", "k", &big],
            vec!["MSETNX", "new1", "1", "new2", "2"],
            vec!["SET", "brandnew", "1"],
            vec!["INCR", "brandnew"],
            vec!["SETBIT", "brandnew", "0", "1"],
            vec!["APPEND", "brandnew", "1"],
        ];
        for c in cases {
            let before: Vec<_> = ["k", "n", "f", "src"]
                .iter()
                .map(|k| (kv.get(k), kv.pttl(k)))
                .collect();
            let u0 = used(&kv);
            let r = kv.execute(&c);
            assert!(is_oom(&r), "shards {shards} {c:?}: expected OOM, got {r:?}");
            let after: Vec<_> = ["k", "n", "f", "src"]
                .iter()
                .map(|k| (kv.get(k), kv.pttl(k)))
                .collect();
            for ((b, a), name) in before.iter().zip(&after).zip(["k", "n", "f", "src"]) {
                assert_eq!(b.0, a.0, "shards {shards} {c:?}: {name} value changed");
                // TTLs tick down; allow a few ms.
                assert!(
                    (b.1 - a.1).abs() < 50 && (b.1 < 0) == (a.1 < 0),
                    "shards {shards} {c:?}: {name} ttl {} -> {}",
                    b.1,
                    a.1
                );
            }
            assert_eq!(used(&kv), u0, "shards {shards} {c:?}: used_memory moved");
            assert_eq!(kv.get("brandnew"), None);
            assert_eq!(kv.get("new1"), None);
            assert_eq!(kv.get("zz"), None);
        }
    }
}

/// Tiny and odd max_memory values: nothing ever passes the limit; a write
/// whose entry is larger than the whole store is refused and evicts nothing.
#[test]
fn tiny_max_memory_never_passes_and_never_evicts_for_impossible_writes() {
    for policy in RedisPolicy::ALL {
        for max in [1u64, 163, 164, 165, 1024, 4096] {
            for shards in [1, 2, 16] {
                let kv = store(policy, max, shards);
                let what = format!("{policy} max {max} shards {shards}");
                // Every key that can exist: key "a", value len max-165.
                if max > OH {
                    let vlen = (max - OH - 1) as usize;
                    assert!(
                        kv.set("a", "x".repeat(vlen), SetOptions::new().ex(100))
                            .is_ok(),
                        "{what}: exact fit"
                    );
                    assert_eq!(used(&kv), max, "{what}");
                    // One byte too big for the whole store: refused, `a` kept.
                    let r = kv.set("b", "x".repeat(vlen + 1), SetOptions::new());
                    assert!(r.is_err(), "{what}: over-size accepted");
                    assert_eq!(kv.strlen("a"), vlen, "{what}: evicted for impossible write");
                    let r = ex(&kv, ["APPEND", "a", "x"]);
                    assert!(is_oom(&r), "{what}: {r:?}");
                    assert_eq!(kv.strlen("a"), vlen, "{what}");
                    let r = ex(&kv, ["SETBIT", "b", &((max * 8) as usize).to_string(), "1"]);
                    assert!(is_oom(&r), "{what}: {r:?}");
                    assert_eq!(kv.strlen("a"), vlen, "{what}");
                    let r = ex(&kv, ["SETRANGE", "b", &(max as usize).to_string(), "1"]);
                    assert!(is_oom(&r), "{what}: {r:?}");
                    assert_eq!(kv.strlen("a"), vlen, "{what}");
                    let r = kv.execute(&["MSET", "c", "1", "d", &"x".repeat(vlen)]);
                    assert!(is_oom(&r), "{what}: {r:?}");
                    assert_eq!(kv.strlen("a"), vlen, "{what}");
                } else {
                    for c in [
                        vec!["SET", "a", ""],
                        vec!["INCR", "a"],
                        vec!["SETBIT", "a", "0", "0"],
                        vec!["APPEND", "a", "z"],
                        vec!["MSET", "a", "1", "b", "2"],
                        vec!["INCRBYFLOAT", "a", "1"],
                        vec!["SETRANGE", "a", "0", "x"],
                    ] {
                        let r = kv.execute(&c);
                        assert!(is_oom(&r), "{what} {c:?}: {r:?}");
                    }
                    assert_eq!(ex(&kv, ["SETRANGE", "a", "10", ""]), Reply::Integer(0));
                    assert_eq!(kv.dbsize(), 0);
                }
                assert!(used(&kv) <= max, "{what}");
                assert_eq!(used(&kv), info_used(&kv));
            }
        }
    }
}

/// A store whose only other content is a key that has expired (invisible
/// to GET/EXISTS/DBSIZE/KEYS) must accept a write that fits once it is
/// gone: an expired key is not data, and Redis's active expiry reclaims it
/// within its next cron cycles (checked against redis-server below).
// Under noeviction with several shards, an expired key in another shard is
// reclaimed to make room for a write (as Redis's active expiry would). It
// used to stay: DBSIZE 0, used_memory showing the dead key's bytes, and
// writes to other shards refused with OOM until some write happened to
// land on the dead key's shard.
#[test]
fn expired_keys_in_other_shards_block_writes_under_noeviction() {
    let max = 64 << 10;
    let mut failures = Vec::new();
    for policy in RedisPolicy::ALL {
        for shards in [1, 8] {
            // The hasher is seeded per store: several stores, so that the
            // written key lands on another shard than the dead one.
            let mut blocked = Vec::new();
            for trial in 0..8 {
                let kv = store(policy, max, shards);
                let big = "x".repeat(60 << 10);
                assert_eq!(kv.execute(&["SET", "big", &big, "PX", "20"]), Reply::ok());
                std::thread::sleep(Duration::from_millis(40));
                assert_eq!(kv.get("big"), None);
                assert_eq!(kv.dbsize(), 0);
                assert_eq!(kv.exists(&["big"]), 0);
                // The same 10 KiB SET, retried for 200 ms: it fits once
                // `big` is gone.
                let until = Instant::now() + Duration::from_millis(200);
                let mut tries = 0;
                let mut last = Reply::Nil;
                while Instant::now() < until {
                    tries += 1;
                    last = kv.execute(&["SET", "k", &"y".repeat(10 << 10)]);
                    if !last.is_error() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                if last.is_error() {
                    blocked.push(format!(
                        "trial {trial}: SET k (10 KiB) refused {tries} times over 200 ms: {last:?}; \
                         DBSIZE {}, used_memory {}",
                        kv.dbsize(),
                        used(&kv)
                    ));
                }
            }
            if !blocked.is_empty() {
                failures.push(format!(
                    "{policy} shards {shards}: blocked in {}/8 trials; {}",
                    blocked.len(),
                    blocked[0]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The same scenario on a real redis-server with `maxmemory-policy
/// noeviction`: once the big key's expiry has passed, the write is taken.
#[test]
fn redis_accepts_a_write_once_an_expired_key_is_gone_under_noeviction() {
    let server = redis_server::RedisServer::start(&["--maxmemory-policy", "noeviction"]).unwrap();
    let mut c = server.raw();
    let used_now = |c: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("memory").query(c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let big = "x".repeat(3 << 20);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .arg("PX")
        .arg(300)
        .query(&mut c)
        .unwrap();
    drop(big);
    // maxmemory just above what the server holds with `big` in it.
    let max = used_now(&mut c) + (300 << 10);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(max)
        .query(&mut c)
        .unwrap();
    // Before expiry: a 1 MiB write does not fit.
    let r: redis::RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg("y".repeat(1 << 20))
        .query(&mut c);
    assert!(r.is_err(), "redis took a write past maxmemory: {r:?}");
    std::thread::sleep(Duration::from_millis(350));
    // After expiry, without touching `big`: the write is taken within 200 ms.
    std::thread::sleep(Duration::from_millis(40));
    let until = Instant::now() + Duration::from_millis(1000);
    let mut ok = false;
    while Instant::now() < until {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg("k")
            .arg("y".repeat(200 << 10))
            .query(&mut c);
        if r.is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ok, "redis never took the write");
}

/// Swapping two values' sizes with one MSET on a store filled to
/// max_memory: the result weighs exactly what the store holds now, so it
/// needs no room. Redis (used_memory not over maxmemory) runs it and evicts
/// nothing.
// An MSET that weighs what the store already holds needs no room: it
// applies the writes that free room first. It used to apply its pairs in
// order, so on an exactly full store it was refused with OOM (every
// policy, no other keys) or evicted unrelated keys to make room it never
// needed; the same pairs in the other order succeeded.
#[test]
fn mset_that_swaps_sizes_on_an_exactly_full_store() {
    let max = 8 << 10;
    let mut failures = Vec::new();
    for policy in RedisPolicy::ALL {
        for shards in [1, 4] {
            // Only the two keys.
            let kv = store(policy, max, shards);
            kv.set("a", "s", SetOptions::new()).unwrap();
            fill_exactly(&kv, max, "b");
            let blen = kv.strlen("b");
            let big = "B".repeat(blen);
            let r = kv.execute(&["MSET", "a", &big, "b", "s"]);
            if r != Reply::ok() {
                failures.push(format!("{policy} shards {shards}, two keys: {r:?}"));
            }
            // The same pairs in the other order are taken.
            let kv = store(policy, max, shards);
            kv.set("a", "s", SetOptions::new()).unwrap();
            fill_exactly(&kv, max, "b");
            assert_eq!(kv.execute(&["MSET", "b", "s", "a", &big]), Reply::ok());
            assert!(used(&kv) <= max);
            // With 20 other keys (with expiries, so volatile-* may evict them).
            let kv = store(policy, max, shards);
            kv.set("a", "s", SetOptions::new()).unwrap();
            for i in 0..20 {
                kv.set(
                    &format!("other{i:02}"),
                    "o".repeat(100),
                    SetOptions::new().ex(1000),
                )
                .unwrap();
            }
            fill_exactly(&kv, max, "b");
            let blen = kv.strlen("b");
            let big = "B".repeat(blen);
            let ev0 = kv.stats().evicted_keys;
            let r = kv.execute(&["MSET", "a", &big, "b", "s"]);
            let evicted = kv.stats().evicted_keys - ev0;
            if r != Reply::ok() || evicted > 0 {
                failures.push(format!(
                    "{policy} shards {shards}, 20 other keys: {r:?}, {evicted} unrelated keys \
                     evicted, {} of 20 left, used_memory {} of {max}",
                    kv.keys("other*").len(),
                    used(&kv)
                ));
            }
            assert!(used(&kv) <= max);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The same swap on a persistent store: the log keeps the batch in the
/// order it was applied (the shrinking write first), so the reopened store
/// replays it within max_memory and holds exactly what was acknowledged.
#[test]
fn an_mset_swap_on_a_full_store_replays_as_applied() {
    use shardcache::persist::{FileLog, Fsync, MemStorage};
    let max = 8 << 10;
    for policy in [RedisPolicy::NoEviction, RedisPolicy::AllKeysLru] {
        for shards in [1, 4] {
            let storage = MemStorage::new();
            let open = || {
                KvStore::builder()
                    .max_memory(max)
                    .policy(Policy::redis(policy))
                    .shards(shards)
                    .build_persistent(FileLog::with_storage(storage.clone(), Fsync::Always))
                    .unwrap()
                    .0
            };
            let kv = open();
            kv.set("a", "s", SetOptions::new()).unwrap();
            fill_exactly(&kv, max, "b");
            let big = "B".repeat(kv.strlen("b"));
            assert_eq!(kv.execute(&["MSET", "a", &big, "b", "s"]), Reply::ok());
            let before = (kv.get("a"), kv.get("b"), used(&kv));
            drop(kv);
            let kv = open();
            assert_eq!(
                (kv.get("a"), kv.get("b"), used(&kv)),
                before,
                "{policy} shards {shards}"
            );
            assert_eq!(kv.stats().evicted_keys, 0, "{policy} shards {shards}");
        }
    }
}

/// Shrinking writes on an exactly full noeviction store: Redis runs them
/// (used_memory is not over maxmemory); so must the store.
#[test]
fn shrinking_writes_on_an_exactly_full_noeviction_store() {
    let max = 8 << 10;
    for shards in [1, 4] {
        let kv = store(RedisPolicy::NoEviction, max, shards);
        kv.set("longer-name-source", "v", SetOptions::new())
            .unwrap();
        kv.set("d", "0123456789", SetOptions::new()).unwrap();
        fill_exactly(&kv, max, "fill");
        let what = format!("shards {shards}");
        assert_eq!(
            ex(&kv, ["RENAME", "longer-name-source", "s"]),
            Reply::ok(),
            "{what}"
        );
        assert_eq!(
            ex(&kv, ["COPY", "s", "d", "REPLACE"]),
            Reply::Integer(1),
            "{what}"
        );
        assert_eq!(ex(&kv, ["SET", "fill", "small"]), Reply::ok(), "{what}");
        assert!(used(&kv) <= max);
    }
}

// ---------------------------------------------------------------------------
// Concurrency: accounting under racing writes of every kind.
// ---------------------------------------------------------------------------

/// A tiny xorshift, per thread.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random write (or read that holds the value) on a small keyspace.
fn random_op(kv: &KvStore, rng: &mut Rng, held: &mut Vec<bytes::Bytes>, allow_flush: bool) {
    let k = |rng: &mut Rng| format!("key:{}", rng.below(24));
    let val = |rng: &mut Rng, max: u64| "v".repeat(rng.below(max) as usize);
    let r = match rng.below(20) {
        0 => kv.execute(&["SET", &k(rng), &val(rng, 3000)]),
        1 => kv.execute(&[
            "SET",
            &k(rng),
            &val(rng, 3000),
            "PX",
            &(1 + rng.below(30)).to_string(),
        ]),
        2 => kv.execute(&["APPEND", &k(rng), &val(rng, 700)]),
        3 => kv.execute(&[
            "SETRANGE",
            &k(rng),
            &rng.below(4000).to_string(),
            &val(rng, 300),
        ]),
        4 => kv.execute(&[
            "SETBIT",
            &k(rng),
            &rng.below(30_000).to_string(),
            &rng.below(2).to_string(),
        ]),
        5 => {
            let (a, b, c) = (k(rng), k(rng), k(rng));
            kv.execute(&[
                "MSET",
                &a,
                &val(rng, 1500),
                &b,
                &val(rng, 1500),
                &c,
                &val(rng, 200),
            ])
        }
        6 => kv.execute(&["COPY", &k(rng), &k(rng), "REPLACE"]),
        7 => kv.execute(&["RENAME", &k(rng), &k(rng)]),
        8 => kv.execute(&["DEL", &k(rng), &k(rng), &k(rng)]),
        9 => kv.execute(&[
            "INCRBYFLOAT",
            &format!("num:{}", rng.below(4)),
            "1.000000001",
        ]),
        10 => kv.execute(&["GETDEL", &k(rng)]),
        11 => kv.execute(&["PEXPIRE", &k(rng), &(1 + rng.below(20)).to_string()]),
        12 | 13 => {
            if let Some(v) = kv.get(&k(rng)) {
                held.push(v);
                if held.len() > 8 {
                    held.remove(0);
                }
            }
            Reply::Nil
        }
        14 => kv.execute(&["MSETNX", &k(rng), &val(rng, 900), &k(rng), &val(rng, 900)]),
        15 => kv.execute(&["SET", &k(rng), &val(rng, 500), "KEEPTTL", "GET"]),
        16 => kv.execute(&["INCR", &format!("num:{}", rng.below(4))]),
        17 => kv.execute(&[
            "RENAMENX",
            &k(rng),
            &format!("longer-name:{}", rng.below(4)),
        ]),
        18 => kv.execute(&["COPY", &format!("longer-name:{}", rng.below(4)), &k(rng)]),
        _ => {
            if allow_flush && rng.below(50) == 0 {
                kv.execute(&["FLUSHDB"])
            } else {
                kv.execute(&["GETEX", &k(rng), "PERSIST"])
            }
        }
    };
    if let Reply::Error(e) = &r {
        assert!(
            e.starts_with("OOM")
                || e.starts_with("ERR no such key")
                || e.starts_with("ERR value is not")
                || e.starts_with("ERR source and destination")
                || e.starts_with("ERR increment would produce"),
            "unexpected error {e}"
        );
    }
}

/// Many threads of mixed writes under every policy: afterwards used_memory
/// is within max_memory, INFO agrees, DBSIZE agrees with KEYS, and once
/// flushed the whole budget is usable again (no bytes leaked in the shared
/// budget by racing writes, rollbacks or prepaid room).
#[test]
fn racing_mixed_writes_stay_in_budget_and_leak_nothing() {
    let max: u64 = 48 << 10;
    let mut failures = Vec::new();
    for policy in RedisPolicy::ALL {
        for shards in [1, 8] {
            let kv = Arc::new(store(policy, max, shards));
            let stop = Arc::new(AtomicBool::new(false));
            let over = Arc::new(AtomicU64::new(0));
            let kv2 = kv.clone();
            let stop2 = stop.clone();
            let done = watchdog::bounded(60, move || {
                let threads: Vec<_> = (0..4)
                    .map(|t| {
                        let (kv, stop) = (kv2.clone(), stop2.clone());
                        std::thread::spawn(move || {
                            let mut rng = Rng(0x9E37_79B9 ^ ((t as u64 + 1) * 7919));
                            let mut held = Vec::new();
                            while !stop.load(Ordering::Relaxed) {
                                random_op(&kv, &mut rng, &mut held, t == 0);
                            }
                        })
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(500));
                stop2.store(true, Ordering::Relaxed);
                threads.into_iter().all(|t| t.join().is_ok())
            });
            let what = format!("{policy} shards {shards}");
            match done {
                Err(()) => {
                    failures.push(format!("{what}: hung (deadlock?)"));
                    continue;
                }
                Ok(false) => {
                    failures.push(format!("{what}: a writer panicked"));
                    continue;
                }
                Ok(true) => {}
            }
            let _ = over.load(Ordering::Relaxed);
            // Every expiry set above is at most 30 ms: let them all pass, so
            // KEYS and DBSIZE below count the same live keys.
            std::thread::sleep(Duration::from_millis(80));
            let u = used(&kv);
            if u > max {
                failures.push(format!("{what}: used_memory {u} > max {max}"));
            }
            if u != info_used(&kv) {
                failures.push(format!("{what}: INFO disagrees"));
            }
            let keys = kv.keys("*");
            if keys.len() != kv.dbsize() {
                failures.push(format!(
                    "{what}: KEYS {} vs DBSIZE {}",
                    keys.len(),
                    kv.dbsize()
                ));
            }
            kv.flushdb();
            if used(&kv) != 0 {
                failures.push(format!("{what}: used_memory {} after FLUSHDB", used(&kv)));
            }
            // The whole budget is usable again: entries of 1,000 bytes each.
            let w = 1000u64;
            let n = max / w;
            let ev0 = kv.stats().evicted_keys;
            let mut refused = 0;
            for i in 0..n {
                let name = format!("fill{i:05}");
                let v = "z".repeat((w - OH - name.len() as u64) as usize);
                if kv.set(&name, v, SetOptions::new()).is_err() {
                    refused += 1;
                }
            }
            let evicted = kv.stats().evicted_keys - ev0;
            if refused > 0 || evicted > 0 || kv.dbsize() as u64 != n {
                failures.push(format!(
                    "{what}: after FLUSHDB, {n} entries of {w} B in {max} B: {refused} refused, \
                     {evicted} evicted, dbsize {}",
                    kv.dbsize()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------
// Atomicity of multi-key commands, with namespaces, eviction pressure and
// expiring keys running at the same time.
// ---------------------------------------------------------------------------

/// A racing writer, given the stop flag.
type Writer = Box<dyn Fn(&AtomicBool) + Send + Sync>;
/// A racing reader, given the stop flag; returns the violations it saw.
type Reader = Box<dyn Fn(&AtomicBool) -> Vec<String> + Send + Sync>;

/// Runs `writers` and `readers` (each given its index and the stop flag)
/// for `ms` under a watchdog; the readers' returned violations, if any.
fn run_race(ms: u64, writers: Vec<Writer>, readers: Vec<Reader>) -> Vec<String> {
    let res = watchdog::bounded(60, move || {
        let stop = Arc::new(AtomicBool::new(false));
        let ws: Vec<_> = writers
            .into_iter()
            .map(|w| {
                let stop = stop.clone();
                std::thread::spawn(move || w(&stop))
            })
            .collect();
        let rs: Vec<_> = readers
            .into_iter()
            .map(|r| {
                let stop = stop.clone();
                std::thread::spawn(move || r(&stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(ms));
        stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for w in ws {
            if w.join().is_err() {
                out.push("writer panicked".to_string());
            }
        }
        for r in rs {
            match r.join() {
                Ok(v) => out.extend(v),
                Err(_) => out.push("reader panicked".to_string()),
            }
        }
        out
    });
    res.unwrap_or_else(|()| vec!["hung: deadlock?".to_string()])
}

/// A writer that keeps the store full: big SETs of fresh keys in the root
/// view (some with expiries), under an evicting policy.
fn pressure(kv: KvStore, seed: u64) -> Writer {
    Box::new(move |stop: &AtomicBool| {
        let mut rng = Rng(seed);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let v = "p".repeat(200 + rng.below(1500) as usize);
            let name = format!("pressure:{}", i % 500);
            if rng.below(2) == 0 {
                let _ = kv.execute(&["SET", &name, &v, "PX", &(1 + rng.below(50)).to_string()]);
            } else {
                let _ = kv.execute(&["SET", &name, &v]);
            }
        }
    })
}

fn gen_of(v: &Option<bytes::Bytes>) -> Option<u64> {
    v.as_ref().map(|b| {
        std::str::from_utf8(b)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    })
}

/// MGET (and EXISTS) in a namespace with a glob-laden prefix never see two
/// generations of an MSET, while other writers evict under pressure and a
/// DEL of all keys races; under every evicting policy.
#[test]
fn mget_sees_one_generation_under_eviction_pressure_in_a_namespace() {
    let mut failures = Vec::new();
    let policies = [
        RedisPolicy::AllKeysLru,
        RedisPolicy::AllKeysLfu,
        RedisPolicy::AllKeysRandom,
        RedisPolicy::VolatileLru,
        RedisPolicy::VolatileTtl,
        RedisPolicy::VolatileRandom,
    ];
    for policy in policies {
        let root = store(policy, 24 << 10, 16);
        let ns = root.namespace("g[*]?\\:");
        let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
        let w_ns = ns.clone();
        let w_keys = keys.clone();
        let msetter: Writer = Box::new(move |stop| {
            let mut g = 0u64;
            while !stop.load(Ordering::Relaxed) {
                g += 1;
                let pairs: Vec<(String, String)> = w_keys
                    .iter()
                    .map(|k| (k.clone(), format!("{g}:{}", "x".repeat((g % 300) as usize))))
                    .collect();
                let _ = w_ns.mset(&pairs);
                if g.is_multiple_of(7) {
                    w_ns.del(&w_keys);
                }
            }
        });
        let r_ns = ns.clone();
        let r_keys = keys.clone();
        let reader: Reader = Box::new(move |stop| {
            let mut bad = Vec::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) && bad.len() < 5 {
                reads += 1;
                let got = r_ns.mget(&r_keys);
                let gens: std::collections::BTreeSet<u64> = got.iter().filter_map(gen_of).collect();
                if gens.len() > 1 {
                    bad.push(format!("MGET saw generations {gens:?}"));
                }
            }
            if reads < 100 {
                bad.push(format!("only {reads} reads"));
            }
            bad
        });
        let out = run_race(
            700,
            vec![
                msetter,
                pressure(root.clone(), 11),
                pressure(root.clone(), 12),
            ],
            vec![reader],
        );
        for o in out {
            failures.push(format!("{policy}: {o}"));
        }
        assert!(root.stats().used_memory <= 24 << 10);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// RENAME ping-pong across shards, with the keys carrying an expiry (moved
/// with them), under eviction pressure: an atomic reader never sees the
/// value at both names. COPY from a key whose generation only grows: the
/// copy is never newer than its source in one MGET.
#[test]
fn rename_and_copy_under_pressure_never_duplicate_or_run_ahead() {
    let mut failures = Vec::new();
    for policy in [
        RedisPolicy::AllKeysLru,
        RedisPolicy::VolatileTtl,
        RedisPolicy::AllKeysRandom,
        RedisPolicy::NoEviction,
    ] {
        let root = store(policy, 32 << 10, 16);
        let ns = root.namespace("rn:");
        // The renamed pair, with a long expiry.
        ns.set("x", "only", SetOptions::new().ex(10_000)).unwrap();
        let w = ns.clone();
        let renamer: Writer = Box::new(move |stop| {
            while !stop.load(Ordering::Relaxed) {
                let _ = w.rename("x", "y");
                let _ = w.rename("y", "x");
            }
        });
        let w = ns.clone();
        let copier: Writer = Box::new(move |stop| {
            let mut g = 0u64;
            while !stop.load(Ordering::Relaxed) {
                g += 1;
                let _ = w.set(
                    "src",
                    format!("{g}:{}", "c".repeat((g % 500) as usize)),
                    SetOptions::new(),
                );
                let _ = w.copy("src", "dst", true);
            }
        });
        let r = ns.clone();
        let reader: Reader = Box::new(move |stop| {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) && bad.len() < 5 {
                let n = r.exists(&["x", "y"]);
                if n > 1 {
                    bad.push(format!("EXISTS x y = {n}"));
                }
                let got = r.mget(&["x", "y"]);
                if got.iter().flatten().count() > 1 {
                    bad.push("MGET x y saw both".to_string());
                }
                let got = r.mget(&["dst", "src"]);
                if let (Some(d), Some(s)) = (gen_of(&got[0]), gen_of(&got[1])) {
                    if d > s {
                        bad.push(format!("copy gen {d} ahead of source gen {s}"));
                    }
                }
            }
            bad
        });
        let mut writers = vec![renamer, copier];
        if policy != RedisPolicy::NoEviction {
            writers.push(pressure(root.clone(), 21));
        }
        let out = run_race(700, writers, vec![reader]);
        for o in out {
            failures.push(format!("{policy}: {o}"));
        }
        if policy == RedisPolicy::NoEviction {
            // Nothing evicts: the renamed value is at exactly one name, with its TTL.
            assert_eq!(ns.exists(&["x", "y"]), 1, "{policy}");
            let t = ns.ttl("x").max(ns.ttl("y"));
            assert!(t > 9_000, "{policy}: ttl lost in renames: {t}");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// MSETNX against a multi-key DEL of the same keys: EXISTS of all of them
/// is always all or none, and two MSETNX sharing one key never both win.
#[test]
fn msetnx_and_multi_del_are_all_or_none() {
    let root = store(RedisPolicy::NoEviction, 1 << 20, 16);
    let ns = root.namespace("nx:");
    let wins = Arc::new(AtomicU64::new(0));
    let mk = |pairs: Vec<(&'static str, &'static str)>| -> Writer {
        let ns = ns.clone();
        let wins = wins.clone();
        Box::new(move |stop| {
            while !stop.load(Ordering::Relaxed) {
                if ns.mset_nx(&pairs).unwrap() {
                    wins.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let w1 = mk(vec![("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]);
    let w2 = mk(vec![("d", "2"), ("e", "2"), ("f", "2"), ("g", "2")]);
    let d = ns.clone();
    let deleter: Writer = Box::new(move |stop| {
        while !stop.load(Ordering::Relaxed) {
            d.del(&["a", "b", "c", "d", "e", "f", "g"]);
        }
    });
    let r = ns.clone();
    let reader: Reader = Box::new(move |stop| {
        let mut bad = Vec::new();
        while !stop.load(Ordering::Relaxed) && bad.len() < 5 {
            let got = r.mget(&["a", "b", "c", "d", "e", "f", "g"]);
            let ones = got[..3].iter().flatten().count();
            let twos = got[4..].iter().flatten().count();
            let d = got[3].as_deref().map(|b| b.to_vec());
            let ok = match d.as_deref() {
                None => ones == 0 && twos == 0,
                Some(b"1") => ones == 3 && twos == 0,
                Some(b"2") => ones == 0 && twos == 3,
                _ => false,
            };
            if !ok {
                bad.push(format!("MGET a..g = {got:?}"));
            }
            let n = r.exists(&["a", "b", "c", "d"]);
            if n != 0 && n != 4 && n != 1 {
                bad.push(format!("EXISTS a b c d = {n}"));
            }
        }
        bad
    });
    let out = run_race(700, vec![w1, w2, deleter], vec![reader]);
    assert!(out.is_empty(), "{out:#?}");
    assert!(wins.load(Ordering::Relaxed) > 10);
}

// ---------------------------------------------------------------------------
// Namespaces with hostile prefixes.
// ---------------------------------------------------------------------------

#[test]
fn namespaces_with_hostile_prefixes_see_only_their_keys() {
    let root = KvStore::builder().shards(4).build().unwrap();
    let prefixes = [
        "", "*", "a*", "a", "ab", "[", "[a]", "\\", "?", "a\\*", "é", "\u{0}",
    ];
    for p in prefixes {
        for k in ["1", "2", "*", ""] {
            root.set(&format!("{p}{k}"), "v", SetOptions::new())
                .unwrap();
        }
    }
    let all = root.keys("*");
    for p in prefixes {
        let ns = root.namespace(p);
        let mut expect: Vec<String> = all
            .iter()
            .filter_map(|k| k.strip_prefix(p).map(str::to_owned))
            .collect();
        expect.sort();
        let mut got = ns.keys("*");
        got.sort();
        assert_eq!(got, expect, "KEYS in {p:?}");
        assert_eq!(ns.dbsize(), expect.len(), "DBSIZE in {p:?}");
        let mut scanned = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, batch) = ns.scan(cursor, &shardcache::kv::ScanOptions::new().count(3));
            scanned.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        scanned.sort();
        scanned.dedup();
        assert_eq!(scanned, expect, "SCAN in {p:?}");
        // Literal pattern characters in KEYS inside the namespace.
        let star = ns.keys("\\*");
        assert_eq!(
            star.len(),
            usize::from(expect.iter().any(|k| k == "*")),
            "{p:?}"
        );
        if let Some(r) = ns.random_key() {
            assert!(expect.contains(&r), "RANDOMKEY {r:?} in {p:?}");
        }
    }
    // FLUSHDB of a glob-looking prefix removes only keys starting with it literally.
    let before = root.dbsize();
    let ns = root.namespace("a*");
    let n = ns.dbsize();
    ns.flushdb();
    assert_eq!(root.dbsize(), before - n);
    assert!(root.keys("*").iter().all(|k| !k.starts_with("a*")));
    assert!(root.exists(&["a1", "ab1", "a\\*1", "*1", "[1"]) == 5);
    // Nested views compose their prefixes.
    let nested = root.namespace("a").namespace("b");
    assert_eq!(nested.prefix(), "ab");
    let mut got = nested.keys("*");
    got.sort();
    assert_eq!(got, vec!["", "*", "1", "2"]);
    nested.flushdb();
    assert_eq!(root.exists(&["ab1", "a1", "abx"]), 1);
    // The empty namespace is the root.
    root.namespace("").flushdb();
    assert_eq!(root.dbsize(), 0);
    assert_eq!(root.stats().used_memory, 0);
}
