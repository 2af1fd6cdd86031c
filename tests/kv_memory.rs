//! `max_memory` and Redis's eviction policies through `KvStore`.

use shardcache::kv::{KvError, KvStore, Reply, SetOptions, ENTRY_OVERHEAD};
use shardcache::{Policy, RedisPolicy};
#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;

fn store(policy: RedisPolicy, max: u64) -> KvStore {
    KvStore::builder()
        .max_memory(max)
        .policy(Policy::redis(policy))
        .shards(1)
        .build()
        .expect("valid")
}

#[test]
fn noeviction_refuses_writes_but_serves_reads_and_deletes() {
    let s = store(RedisPolicy::NoEviction, 10 * u64::from(ENTRY_OVERHEAD + 13)); // 8-byte keys, 5-byte values
    let mut written = 0;
    for i in 0..100 {
        match s.set(&format!("key:{i:04}"), "vvvvv", SetOptions::new()) {
            Ok(_) => written += 1,
            Err(e) => assert_eq!(e, KvError::OutOfMemory),
        }
    }
    assert_eq!(written, 10);
    let oom = s.execute(&["SET", "another", "v"]);
    assert_eq!(
        oom,
        Reply::Error("OOM command not allowed when used memory > 'maxmemory'.".into())
    );
    assert_eq!(s.execute(&["GET", "key:0000"]), Reply::Bulk("vvvvv".into()));
    assert_eq!(s.execute(&["DEL", "key:0000"]), Reply::Integer(1));
    assert_eq!(s.execute(&["SET", "another", "v"]), Reply::ok());
    let stats = s.stats();
    assert!(stats.used_memory <= stats.maxmemory);
    assert_eq!(stats.evicted_keys, 0);
}

#[test]
fn every_evicting_policy_stays_under_max_memory() {
    for policy in RedisPolicy::ALL
        .into_iter()
        .filter(|p| *p != RedisPolicy::NoEviction)
    {
        let max = 50 * u64::from(ENTRY_OVERHEAD + 20);
        let s = store(policy, max);
        for i in 0..1000 {
            let opts = if i % 2 == 0 {
                SetOptions::new().ex(100 + i)
            } else {
                SetOptions::new()
            };
            s.set(&format!("key:{i:06}"), "0123456789", opts)
                .expect("an evicting policy makes room");
            assert!(s.stats().used_memory <= max, "{policy}");
        }
        let stats = s.stats();
        assert!(stats.evicted_keys > 0, "{policy}");
        assert!(stats.keys <= 50, "{policy}");
        if policy.name().starts_with("volatile") {
            // Keys without a TTL are only evicted when nothing else is left.
            let persistent = s.keys("*").iter().filter(|k| s.ttl(k) == -1).count();
            assert!(
                persistent >= 20,
                "{policy}: {persistent} keys without TTL kept"
            );
        }
    }
}

#[test]
fn lru_and_lfu_keep_a_hot_set_better_than_random() {
    let hit_ratio = |policy: RedisPolicy| {
        let s = store(policy, 200 * u64::from(ENTRY_OVERHEAD + 20));
        let (mut hits, mut lookups) = (0u32, 0u32);
        let mut rng = Xorshift(0x1234_5678);
        for step in 0..40_000u64 {
            let x = rng.next();
            // 80% of accesses go to 100 hot keys, the rest scan through cold ones.
            let key = if x % 10 < 8 {
                format!("hot:{:06}", x % 100)
            } else {
                format!("cold:{step:06}")
            };
            lookups += 1;
            if s.get(&key).is_some() {
                hits += 1;
            } else {
                s.set(&key, "0123456789", SetOptions::new()).expect("room");
            }
        }
        f64::from(hits) / f64::from(lookups)
    };
    let random = hit_ratio(RedisPolicy::AllKeysRandom);
    let lru = hit_ratio(RedisPolicy::AllKeysLru);
    let lfu = hit_ratio(RedisPolicy::AllKeysLfu);
    eprintln!("hit ratio: allkeys-random {random:.3}, allkeys-lru {lru:.3}, allkeys-lfu {lfu:.3}");
    assert!(lru > random, "lru {lru} vs random {random}");
    assert!(lfu > random, "lfu {lfu} vs random {random}");
}

#[test]
fn policy_names_parse_like_redis_config() {
    for p in RedisPolicy::ALL {
        let parsed: Policy = p.name().parse().expect("a Redis policy name");
        assert_eq!(parsed, Policy::redis(p));
        assert_eq!(parsed.to_string(), p.name());
    }
}

/// Keys and string values are limited to 512 MiB, as Redis limits them: a
/// longer `SET` or `MSET` writes nothing, an `APPEND` past the limit leaves
/// the value as it was. (The buffers are zeroed pages the test never
/// touches, so they cost address space, not memory.)
#[test]
fn strings_over_512_mib_are_refused() {
    use shardcache::kv::MAX_STRING_LEN;
    let kv = KvStore::new();
    let long = bytes::Bytes::from(vec![0u8; MAX_STRING_LEN + 1]);
    assert!(matches!(
        kv.set("big", long.clone(), SetOptions::default()),
        Err(KvError::StringTooLong)
    ));
    assert_eq!(kv.dbsize(), 0);
    assert!(matches!(
        kv.mset(&[
            ("a", bytes::Bytes::from_static(b"1")),
            ("big", long.clone())
        ]),
        Err(KvError::StringTooLong)
    ));
    assert_eq!(kv.dbsize(), 0, "MSET is checked before any pair is written");
    let reply = kv.execute(&[&b"SET"[..], b"big", &long]);
    assert_eq!(
        reply,
        Reply::Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)".into())
    );
    let at_limit = bytes::Bytes::from(vec![0u8; MAX_STRING_LEN]);
    kv.set("k", at_limit, SetOptions::default())
        .expect("at the limit");
    assert!(matches!(kv.append("k", b"x"), Err(KvError::StringTooLong)));
    assert_eq!(
        kv.set_range("k", MAX_STRING_LEN, b"x"),
        Err(KvError::StringTooLong)
    );
    assert_eq!(
        kv.set_range("new", MAX_STRING_LEN - 1, b"xy"),
        Err(KvError::StringTooLong)
    );
    assert_eq!(kv.set_range("k", usize::MAX, b""), Ok(MAX_STRING_LEN));
    assert_eq!(kv.strlen("k"), MAX_STRING_LEN);
    assert_eq!(kv.dbsize(), 1);
}

/// A namespace view's keys are limited with its prefix, as they are
/// stored: a key at the limit on the root store is over it in a view.
#[test]
fn a_views_keys_are_limited_with_its_prefix() {
    use shardcache::kv::MAX_STRING_LEN;
    let kv = KvStore::new();
    let view = kv.namespace("tenant:");
    let key = "k".repeat(MAX_STRING_LEN - "tenant:".len());
    view.set(&key, "v", SetOptions::default())
        .expect("at the limit with the prefix");
    assert_eq!(kv.dbsize(), 1);
    let mut over = key;
    over.push('k');
    let refused = [
        view.set(&over, "v", SetOptions::default()).map(|_| ()),
        view.mset(&[(over.as_str(), "v")]),
        view.append(&over, b"v").map(|_| ()),
        view.set_range(&over, 0, b"v").map(|_| ()),
        view.setbit(&over, 0, true).map(|_| ()),
    ];
    for r in refused {
        assert_eq!(r, Err(KvError::StringTooLong));
    }
    let reply = view.execute(&[&b"SET"[..], over.as_bytes(), b"v"]);
    assert_eq!(
        reply,
        Reply::Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)".into())
    );
    assert_eq!(kv.dbsize(), 1, "nothing written");
}

/// The bytes an entry is accounted beyond its key, value and overhead.
fn spare(s: &KvStore, key: &str) -> u64 {
    let len = s.strlen(key) as u64;
    s.stats().used_memory - key.len() as u64 - len - u64::from(ENTRY_OVERHEAD)
}

/// The most spare capacity an `APPEND`-grown value of `len` bytes may keep:
/// its length below 1 MiB, then 1 MiB or an eighth of it.
fn spare_bound(len: u64) -> u64 {
    if len < 1 << 20 {
        len
    } else {
        (len / 8).max(1 << 20)
    }
}

/// Where the store's value for `key` lives (the reader's handle is dropped
/// at once, so the store's is the only one again).
fn buffer_of(s: &KvStore, key: &str) -> usize {
    s.get(key).expect("present").as_ptr() as usize
}

/// Building a value by small appends moves it to a new buffer only
/// O(log n) times: its capacity (seen in `used_memory`) at least doubles at
/// each move while under 1 MiB, and every other append writes in place (the
/// value's address does not change). Each append's result is checked, and
/// the spare capacity is counted and bounded.
#[test]
fn small_appends_move_the_value_a_logarithmic_number_of_times() {
    let s = KvStore::new();
    let (mut want, mut moves) = (Vec::new(), 0u32);
    let (mut at, mut capacity) = (0, 0);
    for i in 0..100_000usize {
        let chunk = &b"abcdefg"[..1 + i % 7];
        want.extend_from_slice(chunk);
        assert_eq!(s.append("k", chunk), Ok(want.len()));
        let len = want.len() as u64;
        let cap = len + spare(&s, "k");
        assert!(cap - len <= spare_bound(len), "{len} bytes in {cap}");
        if buffer_of(&s, "k") != at {
            moves += 1;
            assert!(cap >= 2 * capacity, "grew from {capacity} to {cap} only");
            at = buffer_of(&s, "k");
        } else {
            assert_eq!(cap, capacity, "in place, the capacity stays");
        }
        capacity = cap;
    }
    assert_eq!(s.get("k").as_deref(), Some(&want[..]));
    let log2 = usize::BITS - want.len().leading_zeros();
    assert!(moves <= log2 + 1, "{moves} moves for {} bytes", want.len());
}

/// Past 1 MiB the capacity still grows geometrically (by at least an
/// eighth), so long values are built in linear time too, with the spare
/// capacity within 1 MiB or an eighth of the value.
#[test]
fn long_values_grow_by_at_least_an_eighth() {
    let s = KvStore::new();
    let (mut len, mut moves, mut capacity) = (0u64, 0u32, 0u64);
    let chunk = vec![b'x'; 3000];
    let mut at = 0;
    while len < 40 << 20 {
        len = s.append("big", &chunk).expect("fits") as u64;
        let cap = len + spare(&s, "big");
        assert!(cap - len <= spare_bound(len), "{len} bytes in {cap}");
        if buffer_of(&s, "big") != at {
            moves += 1;
            assert!(cap >= capacity + capacity / 8, "{capacity} to {cap}");
            at = buffer_of(&s, "big");
        }
        capacity = cap;
    }
    // 3,000 → 1 MiB doubling (9), 1 → 8 MiB by 1 MiB (7), 8 → 40 MiB by
    // an eighth (14), and the first append.
    assert!(moves <= 32, "{moves} moves for {len} bytes");
}

/// A reader's value never changes under later appends: a value a reader
/// holds is copied, not written in place.
#[test]
fn appends_leave_the_values_readers_hold_alone() {
    let s = KvStore::new();
    s.append("k", b"abc").expect("append");
    s.append("k", b"def").expect("append");
    let reader = s.get("k").expect("present");
    s.append("k", b"ghi").expect("append");
    assert_eq!(&reader[..], b"abcdef");
    assert_eq!(s.get("k").as_deref(), Some(&b"abcdefghi"[..]));
    drop(reader);
    s.append("k", b"j").expect("append");
    assert_eq!(s.get("k").as_deref(), Some(&b"abcdefghij"[..]));
}

mod append_model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize, Vec<u8>),
        SetRange(usize, usize, Vec<u8>),
        Set(usize, Vec<u8>),
        Del(usize),
        /// Read the value and keep the reader's handle.
        Hold(usize),
        Expire(usize),
    }

    const KEYS: [&str; 3] = ["a", "bb", "ccc"];

    fn op() -> impl Strategy<Value = Op> {
        let key = 0..KEYS.len();
        let bytes = prop::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            6 => (key.clone(), bytes.clone()).prop_map(|(k, v)| Op::Append(k, v)),
            3 => (key.clone(), 0..700usize, bytes.clone())
                .prop_map(|(k, at, v)| Op::SetRange(k, at, v)),
            1 => (key.clone(), bytes).prop_map(|(k, v)| Op::Set(k, v)),
            1 => key.clone().prop_map(Op::Del),
            1 => key.clone().prop_map(Op::Hold),
            1 => key.prop_map(Op::Expire),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// `APPEND`, `SETRANGE`, `SET`, `DEL` and held readers against a
        /// model of the values: every value reads back as the model says,
        /// every held reader keeps its bytes, `APPEND` and `SETRANGE` keep
        /// the expiry, and
        /// `used_memory` counts each entry's key, value and overhead plus a
        /// bounded spare capacity, and nothing once the keys are gone.
        #[test]
        fn appends_match_a_model(ops in prop::collection::vec(op(), 1..120)) {
            let s = KvStore::new();
            // Value, and whether it has an expiry.
            let mut model: BTreeMap<&str, (Vec<u8>, bool)> = BTreeMap::new();
            let mut held = Vec::new();
            for op in ops {
                match op {
                    Op::Append(k, v) => {
                        let (want, _) = model.entry(KEYS[k]).or_default();
                        want.extend_from_slice(&v);
                        prop_assert_eq!(s.append(KEYS[k], &v), Ok(want.len()));
                    }
                    Op::SetRange(k, at, v) => {
                        let got = s.set_range(KEYS[k], at, &v);
                        if v.is_empty() {
                            let len = model.get(KEYS[k]).map_or(0, |(want, _)| want.len());
                            prop_assert_eq!(got, Ok(len));
                        } else {
                            let (want, _) = model.entry(KEYS[k]).or_default();
                            if want.len() < at + v.len() {
                                want.resize(at + v.len(), 0);
                            }
                            want[at..at + v.len()].copy_from_slice(&v);
                            prop_assert_eq!(got, Ok(want.len()));
                        }
                    }
                    Op::Set(k, v) => {
                        s.set(KEYS[k], v.clone(), SetOptions::new()).expect("set");
                        model.insert(KEYS[k], (v, false));
                    }
                    Op::Del(k) => {
                        s.del(&[KEYS[k]]);
                        model.remove(KEYS[k]);
                    }
                    Op::Hold(k) => {
                        if let Some(v) = s.get(KEYS[k]) {
                            held.push((v.clone(), v.to_vec()));
                        }
                    }
                    Op::Expire(k) => {
                        let set = s.expire(KEYS[k], 1000, Default::default()).expect("expire");
                        let entry = model.get_mut(KEYS[k]);
                        prop_assert_eq!(set, entry.is_some());
                        if let Some((_, expires)) = entry {
                            *expires = true;
                        }
                    }
                }
                let (mut least, mut most) = (0, 0);
                for (k, (v, expires)) in &model {
                    let got = s.get(k);
                    prop_assert_eq!(got.as_deref(), Some(&v[..]), "{}", k);
                    prop_assert_eq!(s.ttl(k) > 990, *expires, "{}", k);
                    let exact = (k.len() + v.len()) as u64 + u64::from(ENTRY_OVERHEAD);
                    least += exact;
                    most += exact + spare_bound(v.len() as u64);
                }
                let used = s.stats().used_memory;
                prop_assert!((least..=most).contains(&used), "{} not in {}..={}", used, least, most);
                for (reader, bytes) in &held {
                    prop_assert_eq!(&reader[..], &bytes[..]);
                }
            }
            s.del(&KEYS);
            prop_assert_eq!(s.stats().used_memory, 0);
        }
    }
}

/// Values built by appends under `max_memory`: every evicting policy keeps
/// `used_memory` (spare capacity included) within the limit and evicts,
/// and what survives holds exactly what was appended to it since it was
/// last evicted.
#[test]
fn appended_values_are_evicted_within_max_memory() {
    for policy in RedisPolicy::ALL
        .into_iter()
        .filter(|p| p.name().starts_with("allkeys"))
    {
        for shards in [1, 4] {
            let max = 64 * 1024;
            let s = KvStore::builder()
                .max_memory(max)
                .policy(Policy::redis(policy))
                .shards(shards)
                .build()
                .expect("valid");
            let mut model: Vec<Vec<u8>> = vec![Vec::new(); 40];
            for round in 0..200usize {
                for (k, want) in model.iter_mut().enumerate() {
                    let chunk = vec![b'a' + (round % 26) as u8; 1 + (k * 7 + round) % 60];
                    let len = s
                        .append(&format!("key:{k}"), &chunk)
                        .expect("an evicting policy makes room");
                    if len == chunk.len() {
                        want.clear(); // it was evicted (or is new)
                    }
                    want.extend_from_slice(&chunk);
                    assert_eq!(len, want.len(), "{policy} key:{k}");
                    assert!(s.stats().used_memory <= max, "{policy} {shards}");
                }
            }
            let stats = s.stats();
            assert!(stats.evicted_keys > 0, "{policy} {shards}");
            for (k, want) in model.iter().enumerate() {
                if let Some(v) = s.get(&format!("key:{k}")) {
                    assert_eq!(&v[..], &want[..], "{policy} key:{k}");
                }
            }
        }
    }
}

/// The spare capacity never costs a write that fits without it: when the
/// value fits only as it is (other keys hold the rest and may not be
/// evicted), `APPEND` stores it without spare capacity.
#[test]
fn an_append_that_fits_only_without_spare_capacity_is_kept() {
    let entry = |key: usize, value: usize| (key + value) as u64 + u64::from(ENTRY_OVERHEAD);
    let max = entry(1, 2000) + 10 * entry(6, 100);
    let s = store(RedisPolicy::NoEviction, max);
    for i in 0..10 {
        s.set(&format!("other{i}"), vec![b'o'; 100], SetOptions::new())
            .expect("fits");
    }
    s.append("k", &[b'k'; 1000]).expect("fits");
    assert_eq!(s.append("k", &[b'k'; 1000]), Ok(2000), "fits exactly");
    assert_eq!(s.stats().used_memory, max, "no spare capacity");
    assert_eq!(s.append("k", b"k"), Err(KvError::OutOfMemory));
    assert_eq!(s.strlen("k"), 2000, "an append refused leaves the value");
    // With room, the spare capacity is kept but stays within max_memory.
    let s = store(RedisPolicy::NoEviction, entry(1, 3000));
    s.append("k", &[b'k'; 1000]).expect("fits");
    s.append("k", &[b'k'; 1000]).expect("fits");
    assert_eq!(spare(&s, "k"), 1000, "capped by max_memory");
    assert_eq!(s.append("k", &[b'k'; 1000]), Ok(3000));
    assert_eq!(s.stats().used_memory, entry(1, 3000));
}

/// `SETRANGE` under `max_memory`: a write that grows the value reserves its
/// growth (a value that fits only without spare capacity is stored
/// without), one that does not fit is refused with the value unchanged, and
/// `used_memory` counts exactly the key, value, overhead and spare capacity.
#[test]
fn setrange_is_accounted_and_refused_whole() {
    let entry = |key: usize, value: usize| (key + value) as u64 + u64::from(ENTRY_OVERHEAD);
    let s = store(RedisPolicy::NoEviction, entry(1, 2000));
    assert_eq!(s.set_range("k", 999, b"x"), Ok(1000));
    assert_eq!(s.stats().used_memory, entry(1, 1000), "a new key: exact");
    assert_eq!(s.set_range("k", 10, b"over"), Ok(1000));
    assert_eq!(s.stats().used_memory, entry(1, 1000), "no growth: exact");
    assert_eq!(s.set_range("k", 1999, b"y"), Ok(2000), "fits exactly");
    assert_eq!(s.stats().used_memory, entry(1, 2000), "no spare capacity");
    assert_eq!(s.set_range("k", 2000, b"z"), Err(KvError::OutOfMemory));
    assert_eq!(s.set_range("k", 1999, b"zz"), Err(KvError::OutOfMemory));
    let v = s.get("k").expect("kept");
    assert_eq!(
        (v.len(), v[999], &v[10..14], v[1999]),
        (2000, b'x', &b"over"[..], b'y')
    );
    assert_eq!(s.set_range("other", 0, b"a"), Err(KvError::OutOfMemory));
    assert_eq!(s.stats().used_memory, entry(1, 2000));
    // With room, growth past the end keeps spare capacity (within
    // max_memory), and later writes past the end use it in place.
    let s = store(RedisPolicy::NoEviction, entry(1, 5000));
    s.set_range("k", 0, &[b'k'; 1000]).expect("fits");
    assert_eq!(s.set_range("k", 1500, b"x"), Ok(1501));
    assert_eq!(spare(&s, "k"), 1501, "doubled");
    let at = buffer_of(&s, "k");
    assert_eq!(s.set_range("k", 2000, b"y"), Ok(2001));
    assert_eq!(buffer_of(&s, "k"), at, "written in place");
    assert_eq!(spare(&s, "k"), 1001);
    // Over the value's bytes, with no reader holding it: in place, the
    // buffer and its spare capacity kept.
    assert_eq!(s.set_range("k", 0, b"z"), Ok(2001));
    assert_eq!(buffer_of(&s, "k"), at, "written over in place");
    assert_eq!(spare(&s, "k"), 1001);
    // With a reader holding the value: a new exact buffer, and the
    // reader's bytes as they were.
    let held = s.get("k").expect("present");
    assert_eq!(s.set_range("k", 1, b"w"), Ok(2001));
    assert_eq!(
        (held[0], held[1]),
        (b'z', b'k'),
        "a reader's bytes never change"
    );
    assert_ne!(buffer_of(&s, "k"), at);
    assert_eq!(
        spare(&s, "k"),
        0,
        "a write over the bytes a reader holds copies them exactly"
    );
    assert_eq!(&s.get("k").expect("present")[..2], b"zw");
    drop(held);
    s.del(&["k"]);
    assert_eq!(s.stats().used_memory, 0);
}
