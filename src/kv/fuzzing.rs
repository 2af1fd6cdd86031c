//! The driver behind `fuzz/fuzz_targets/kv_commands.rs` and
//! `tests/fuzz_corpus_kv.rs`: decodes bytes into a command sequence and runs
//! it on two stores, one through [`KvStore::execute`] and one through the typed
//! methods, against a reference model of values and deadlines (on a mock
//! clock). Panics on any disagreement. Not a stable API.

use super::{ExpireOptions, KvStore, Reply, ScanOptions, SetOptions};
use crate::MockClock;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;

mod bits;
mod multi;

const KEYS: [&str; 5] = ["a", "b", "ab", "a*", "c[1]"];
const VALUES: [&str; 6] = ["0", "-1", "9223372036854775807", "x", "", "12"];
const PATTERNS: [&str; 6] = ["*", "a*", "?", "[ab]*", "a\\*", "[^a]"];

/// Bytes, read one at a time (zeros past the end).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }
}

/// The model: value and deadline (mock ms) per key.
#[derive(Default)]
struct Model {
    now: u64,
    entries: BTreeMap<String, (Bytes, Option<u64>)>,
}

impl Model {
    fn live(&mut self, key: &str) -> Option<&mut (Bytes, Option<u64>)> {
        let now = self.now;
        if self
            .entries
            .get(key)
            .is_some_and(|(_, d)| d.is_some_and(|d| d <= now))
        {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }
}

/// Runs the command sequence encoded by `data`.
///
/// # Panics
///
/// When the two stores or the model disagree: that is a bug.
pub fn run(data: &[u8]) {
    let clock = MockClock::new();
    let build = || KvStore::builder().clock(clock.clone()).shards(2).build();
    let (Ok(exec), Ok(typed)) = (build(), build()) else {
        panic!("building a store failed")
    };
    let mut model = Model::default();
    let mut input = Input(data);
    while !input.0.is_empty() {
        step(&exec, &typed, &mut model, &clock, &mut input);
    }
}

fn step(
    exec: &KvStore,
    typed: &KvStore,
    model: &mut Model,
    clock: &MockClock,
    input: &mut Input<'_>,
) {
    let (k, v) = (input.pick(&KEYS), input.pick(&VALUES));
    let n = i64::from(input.byte() as i8);
    // The top sixteen values are the bitmap commands, the eight below
    // them the multi-key writes.
    let op = input.byte();
    let kind = match op {
        240.. => 20,
        232..=239 => 21,
        _ => op % 20,
    };
    let (got, want): (Reply, Reply) = match kind {
        0 => {
            let want = typed
                .set(k, Bytes::from(v), SetOptions::new())
                .map(|_| Reply::ok());
            model.entries.insert(k.to_owned(), (Bytes::from(v), None));
            (
                exec.execute(&["SET", k, v]),
                want.unwrap_or_else(Reply::from),
            )
        }
        1 => {
            let secs = n.rem_euclid(5) + 1;
            let want = typed.set(k, Bytes::from(v), SetOptions::new().nx().ex(secs));
            let was = model.live(k).is_some();
            if !was {
                model.entries.insert(
                    k.to_owned(),
                    (Bytes::from(v), Some(model.now + secs.unsigned_abs() * 1000)),
                );
            }
            let want = want.map(|o| if o.written { Reply::ok() } else { Reply::Nil });
            assert_eq!(
                want.as_ref().ok(),
                Some(&if was { Reply::Nil } else { Reply::ok() }),
                "SET NX model"
            );
            (
                exec.execute(&["SET", k, v, "NX", "EX", &secs.to_string()]),
                want.unwrap_or_else(Reply::from),
            )
        }
        2 => {
            let want = typed.get(k);
            assert_eq!(want, model.live(k).map(|e| e.0.clone()), "GET {k} vs model");
            (exec.execute(&["GET", k]), Reply::from_option(want))
        }
        3 => {
            let removed = model.live(k).is_some();
            model.entries.remove(k);
            let want = typed.del(&[k]);
            assert_eq!(want, usize::from(removed), "DEL model");
            (exec.execute(&["DEL", k]), want.into())
        }
        4 => {
            let want = typed.incr_by(k, n);
            if let Ok(x) = &want {
                let deadline = model.live(k).and_then(|e| e.1);
                model
                    .entries
                    .insert(k.to_owned(), (Bytes::from(x.to_string()), deadline));
            }
            (
                exec.execute(&["INCRBY", k, &n.to_string()]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        5 => {
            let want = typed.append(k, v.as_bytes());
            let entry = model.live(k).cloned();
            let mut joined = entry.as_ref().map(|e| e.0.to_vec()).unwrap_or_default();
            joined.extend_from_slice(v.as_bytes());
            model
                .entries
                .insert(k.to_owned(), (Bytes::from(joined), entry.and_then(|e| e.1)));
            (
                exec.execute(&["APPEND", k, v]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        6 => {
            let want = typed.expire(k, n, ExpireOptions::new());
            let now = model.now;
            if let Some(e) = model.live(k) {
                e.1 = Some(now.saturating_add_signed(n * 1000));
            }
            (
                exec.execute(&["EXPIRE", k, &n.to_string()]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        7 => {
            let want = typed.persist(k);
            if let Some(e) = model.live(k) {
                e.1 = None;
            }
            (
                exec.execute(&["PERSIST", k]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        8 => {
            let want = typed.pttl(k);
            let now = model.now;
            let expected = model.live(k).map_or(-2, |e| {
                e.1.map_or(-1, |d| i64::try_from(d - now).unwrap_or(i64::MAX))
            });
            assert_eq!(want, expected, "PTTL {k} vs model");
            (exec.execute(&["PTTL", k]), want.into())
        }
        9 => {
            let by = u64::from(input.byte()) * 40;
            clock.advance(Duration::from_millis(by));
            model.now += by;
            (Reply::Nil, Reply::Nil)
        }
        10 => {
            let p = input.pick(&PATTERNS);
            let mut want = typed.keys(p);
            want.sort();
            let now = model.now;
            let mut expected: Vec<String> = model
                .entries
                .iter()
                .filter(|(key, (_, d))| {
                    d.is_none_or(|d| d > now) && super::glob_match(p.as_bytes(), key.as_bytes())
                })
                .map(|(key, _)| key.clone())
                .collect();
            expected.sort();
            assert_eq!(want, expected, "KEYS {p} vs model");
            let mut got = exec.keys(p);
            got.sort();
            (
                Reply::Integer(got.len() as i64),
                Reply::Integer(want.len() as i64),
            )
        }
        11 => {
            let (_, batch) = typed.scan(0, &ScanOptions::new().count(100));
            assert!(batch.len() <= KEYS.len());
            (exec.execute(&["DBSIZE"]), typed.dbsize().into())
        }
        12 => {
            let want = typed.get_del(k);
            model.live(k);
            model.entries.remove(k);
            (exec.execute(&["GETDEL", k]), Reply::from_option(want))
        }
        op @ 13..=15 => range_step(exec, typed, model, input, (k, v, n), op - 13),
        16 => {
            let (k2, removed) = (input.pick(&KEYS), model.live(k).is_some());
            let removed = usize::from(removed) + usize::from(k2 != k && model.live(k2).is_some());
            model.entries.remove(k);
            model.entries.remove(k2);
            let want = typed.del(&[k, k2]);
            assert_eq!(want, removed, "UNLINK model");
            (exec.execute(&["UNLINK", k, k2]), want.into())
        }
        17 => {
            let want = typed.pexpire_time(k);
            // The mock wall clock starts at 2024-01-01 and moves with the
            // monotonic one, so a deadline reads back exactly.
            let expected = model.live(k).map_or(-2, |e| {
                e.1.map_or(-1, |d| {
                    1_704_067_200_000 + i64::try_from(d).unwrap_or(i64::MAX)
                })
            });
            assert_eq!(want, expected, "PEXPIRETIME {k} vs model");
            (exec.execute(&["PEXPIRETIME", k]), want.into())
        }
        18 => lcs_step(exec, typed, model, input, k),
        19 => {
            // Arbitrary bytes as a command: must not panic, and must agree.
            let len = usize::from(input.byte() % 6);
            let args: Vec<Vec<u8>> = (0..len)
                .map(|_| vec![input.byte() % 4 + b'a', input.byte()])
                .collect();
            (exec.execute(&args), typed.execute(&args))
        }
        21 => multi::step(exec, typed, model, input, k, op - 232),
        _ => bits::step(exec, typed, model, input, (k, n), op - 240),
    };
    assert_eq!(got, want, "execute and typed methods disagree");
}

/// `SETRANGE`, `GETRANGE` or `TOUCH` (`which`: 0, 1, 2) on both stores and
/// the model, with the step's key, value and number.
fn range_step(
    exec: &KvStore,
    typed: &KvStore,
    model: &mut Model,
    input: &mut Input<'_>,
    (k, v, n): (&str, &str, i64),
    which: u8,
) -> (Reply, Reply) {
    let m = i64::from(input.byte() as i8);
    match which {
        0 => {
            let offset = n.rem_euclid(12).unsigned_abs() as usize;
            let want = typed.set_range(k, offset, v.as_bytes());
            if !v.is_empty() {
                let entry = model.live(k).cloned();
                let mut value = entry.as_ref().map(|e| e.0.to_vec()).unwrap_or_default();
                if value.len() < offset + v.len() {
                    value.resize(offset + v.len(), 0);
                }
                value[offset..offset + v.len()].copy_from_slice(v.as_bytes());
                let deadline = entry.and_then(|e| e.1);
                model
                    .entries
                    .insert(k.to_owned(), (Bytes::from(value), deadline));
            }
            let len = model.live(k).map_or(0, |e| e.0.len());
            assert_eq!(want, Ok(len), "SETRANGE {k} {offset} {v:?} vs model");
            (
                exec.execute(&["SETRANGE", k, &offset.to_string(), v]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        1 => {
            let want = typed.get_range(k, n, m);
            let value = model.live(k).map(|e| e.0.clone()).unwrap_or_default();
            // Redis 7.0: positions counted from the end when negative, then
            // raised to 0 (so `-75 -52` on a short value is its first byte);
            // both negative and crossed is empty.
            let at = |i: i64| {
                if i < 0 {
                    (i + value.len() as i64).max(0)
                } else {
                    i
                }
            };
            let crossed = n < 0 && m < 0 && n > m;
            let expected: Vec<u8> = (0..value.len())
                .filter(|&i| !crossed && (at(n)..=at(m)).contains(&(i as i64)))
                .map(|i| value[i])
                .collect();
            assert_eq!(&want[..], &expected[..], "GETRANGE {k} {n} {m} vs model");
            (
                exec.execute(&["GETRANGE", k, &n.to_string(), &m.to_string()]),
                Reply::Bulk(want),
            )
        }
        _ => {
            let k2 = input.pick(&KEYS);
            let want = typed.touch(&[k, k2, k]);
            let found = usize::from(model.live(k).is_some());
            let expected = 2 * found + usize::from(model.live(k2).is_some());
            assert_eq!(want, expected, "TOUCH model");
            (exec.execute(&["TOUCH", k, k2, k]), want.into())
        }
    }
}

/// `LCS` of `k` and a second key on both stores, its length checked
/// against the model's values.
fn lcs_step(
    exec: &KvStore,
    typed: &KvStore,
    model: &mut Model,
    input: &mut Input<'_>,
    k: &str,
) -> (Reply, Reply) {
    let k2 = input.pick(&KEYS);
    let value = |model: &mut Model, key: &str| model.live(key).map(|e| e.0.clone());
    let (a, b) = (
        value(model, k).unwrap_or_default(),
        value(model, k2).unwrap_or_default(),
    );
    // The textbook recurrence, one row at a time.
    let mut row = vec![0usize; b.len() + 1];
    for &x in a.iter() {
        let mut diagonal = 0;
        for (j, &y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { up.max(row[j]) };
            diagonal = up;
        }
    }
    let expected = row[b.len()];
    match input.byte() % 3 {
        0 => {
            let want = typed.lcs_len(k, k2);
            assert_eq!(want, Ok(expected), "LCS {k} {k2} LEN vs model");
            (
                exec.execute(&["LCS", k, k2, "LEN"]),
                want.map_or_else(Reply::from, Reply::from),
            )
        }
        1 => {
            let want = typed.lcs(k, k2);
            assert_eq!(want.as_ref().map(|s| s.len()), Ok(expected), "LCS {k} {k2}");
            (
                exec.execute(&["LCS", k, k2]),
                want.map_or_else(Reply::from, Reply::Bulk),
            )
        }
        _ => {
            let min = usize::from(input.byte() % 4);
            let want = typed.lcs_idx(k, k2, min);
            let Ok(idx) = &want else {
                panic!("LCS {k} {k2} IDX failed on small values: {want:?}");
            };
            assert_eq!(idx.len, expected, "LCS {k} {k2} IDX vs model");
            let pair = |(x, y): (usize, usize)| Reply::Array(vec![x.into(), y.into()]);
            let matches = idx
                .matches
                .iter()
                .map(|m| {
                    assert!(
                        m.match_len() >= min
                            && a[m.first.0..=m.first.1] == b[m.second.0..=m.second.1]
                    );
                    Reply::Array(vec![pair(m.first), pair(m.second), m.match_len().into()])
                })
                .collect();
            (
                exec.execute(&[
                    "LCS",
                    k,
                    k2,
                    "IDX",
                    "MINMATCHLEN",
                    &min.to_string(),
                    "WITHMATCHLEN",
                ]),
                Reply::Array(vec![
                    Reply::Bulk(Bytes::from_static(b"matches")),
                    Reply::Array(matches),
                    Reply::Bulk(Bytes::from_static(b"len")),
                    idx.len.into(),
                ]),
            )
        }
    }
}

/// Command names [`run_edges`] draws from.
const EDGE_COMMANDS: [&str; 30] = [
    "SET",
    "APPEND",
    "GET",
    "INCRBYFLOAT",
    "KEYS",
    "SCAN",
    "SETRANGE",
    "MSET",
    "GETEX",
    "EXPIRE",
    "PEXPIREAT",
    "INFO",
    "DEL",
    "STRLEN",
    "INCRBY",
    "GETSET",
    "GETRANGE",
    "SUBSTR",
    "TOUCH",
    "UNLINK",
    "PEXPIRETIME",
    "LCS",
    "SETBIT",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "RENAME",
    "COPY",
    "MSETNX",
    "RENAMENX",
];

/// Runs `execute` on arbitrary argument lists that reach the size limits:
/// long keys, values up to 256 KiB, long glob patterns, float and expiry
/// arguments of any shape, on a store with a small `max_memory` and a policy
/// chosen by the input.
///
/// # Panics
///
/// When a reply breaks a promise: `used_memory` above `max_memory`, or a
/// `SET` answered `OK` whose value is not there right after.
pub fn run_edges(data: &[u8]) {
    use crate::RedisPolicy;
    let mut input = Input(data);
    let policies = [
        RedisPolicy::NoEviction,
        RedisPolicy::AllKeysLru,
        RedisPolicy::AllKeysLfu,
        RedisPolicy::AllKeysRandom,
        RedisPolicy::VolatileLru,
        RedisPolicy::VolatileTtl,
    ];
    let max_memory = 64 * 1024;
    let Ok(store) = KvStore::builder()
        .max_memory(max_memory)
        .policy(crate::Policy::redis(input.pick(&policies)))
        .shards(1 << (input.byte() % 7))
        .clock(MockClock::new())
        .build()
    else {
        panic!("a valid configuration was refused");
    };
    for _ in 0..input.byte() % 24 {
        let name = input.pick(&EDGE_COMMANDS);
        let mut args: Vec<Vec<u8>> = vec![name.as_bytes().to_vec()];
        for _ in 0..input.byte() % 5 {
            args.push(edge_argument(&mut input));
        }
        let reply = store.execute(&args);
        assert!(
            store.stats().used_memory <= max_memory,
            "used_memory over max_memory after {name}"
        );
        if name == "SET" && args.len() == 3 && reply == Reply::ok() {
            let key = String::from_utf8_lossy(&args[1]);
            assert_eq!(
                store.get(&key).as_deref(),
                Some(&args[2][..]),
                "SET answered OK but the value is gone"
            );
        }
    }
}

/// One argument: a short token, or a long run of one byte or of a short
/// pattern (up to 256 KiB).
fn edge_argument(input: &mut Input<'_>) -> Vec<u8> {
    const TOKENS: [&str; 20] = [
        "k",
        "0",
        "-1",
        "0x1p3",
        "1e308",
        "nan",
        "inf",
        "*",
        "9223372036854775807",
        "EX",
        "PX",
        "COUNT",
        "MATCH",
        "GT",
        "IDX",
        "MINMATCHLEN",
        "WITHMATCHLEN",
        "4294967295",
        "BIT",
        "BYTE",
    ];
    match input.byte() % 4 {
        0 | 1 => input.pick(&TOKENS).as_bytes().to_vec(),
        2 => {
            let unit = input.pick(&[&b"a"[..], b"*a", b"[", b"\\", b"9", b"?*"]);
            let len = usize::from(input.byte()) << (input.byte() % 11);
            unit.repeat(len.min(256 * 1024) / unit.len())
        }
        _ => {
            let n = usize::from(input.byte() % 8);
            (0..n).map(|_| input.byte()).collect()
        }
    }
}
