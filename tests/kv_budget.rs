//! `max_memory` is one budget for the whole store, whatever the shard count:
//! a write that fits after evicting by the policy succeeds and stays; one
//! that does not is refused with Redis's OOM error and the old value is kept;
//! concurrent writers never take the store past the limit.

use shardcache::kv::{KvStore, Reply, ENTRY_OVERHEAD};
use shardcache::{MockClock, RedisPolicy};
use std::sync::{Arc, Barrier};

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

fn store(policy: RedisPolicy, max: u64, shards: usize) -> KvStore {
    KvStore::builder()
        .max_memory(max)
        .policy(shardcache::Policy::redis(policy))
        .shards(shards)
        .clock(MockClock::new())
        .build()
        .expect("valid config")
}

const EVICTING: [RedisPolicy; 3] = [
    RedisPolicy::AllKeysLru,
    RedisPolicy::AllKeysLfu,
    RedisPolicy::AllKeysRandom,
];

#[test]
fn appends_past_a_shards_share_are_kept() {
    for policy in EVICTING {
        let s = store(policy, 1 << 20, 64);
        let chunk = "x".repeat(4096);
        for i in 1..=4i64 {
            assert_eq!(
                s.execute(&["APPEND", "k", &chunk]),
                Reply::Integer(4096 * i)
            );
            assert_eq!(s.execute(&["EXISTS", "k"]), Reply::Integer(1), "{policy:?}");
        }
        assert_eq!(s.strlen("k"), 16384);
    }
}

#[test]
fn growing_the_least_recently_used_key_evicts_others() {
    for policy in EVICTING {
        for shards in [1, 4] {
            let s = store(policy, 64 * 1024, shards);
            s.execute(&["SET", "k", &"k".repeat(1000)]);
            let filler = "f".repeat(1000);
            for i in 0..50 {
                s.execute(&["SET", &format!("fill{i}"), &filler]);
            }
            assert_eq!(s.strlen("k"), 1000, "the store is not full yet");
            // "k" is the oldest entry; growing it must evict others.
            let grow = "g".repeat(20_000);
            assert_eq!(
                s.execute(&["APPEND", "k", &grow]),
                Reply::Integer(21_000),
                "{policy:?} {shards}"
            );
            assert_eq!(s.strlen("k"), 21_000);
        }
    }
}

#[test]
fn half_of_max_memory_fits_whatever_the_shard_count() {
    for shards in [1, 8, 64, 1024] {
        for policy in EVICTING.into_iter().chain([RedisPolicy::NoEviction]) {
            let max = 1u64 << 20;
            let s = store(policy, max, shards);
            s.execute(&["SET", "e", "small"]);
            let big = "v".repeat((max / 2) as usize);
            assert_eq!(
                s.execute(&["SET", "e", &big]),
                Reply::ok(),
                "{shards} {policy:?}"
            );
            assert_eq!(s.get("e").map(|v| v.len()), Some(big.len()));
            assert_eq!(
                s.execute(&["SET", "fresh", &big[..(max / 3) as usize]]),
                Reply::ok()
            );
            assert_eq!(s.strlen("fresh"), (max / 3) as usize);
            assert!(s.stats().used_memory <= max);
        }
    }
}

#[test]
fn a_write_that_cannot_fit_is_refused_and_the_old_value_kept() {
    for policy in EVICTING.into_iter().chain([RedisPolicy::NoEviction]) {
        let max = 64 * 1024;
        let s = store(policy, max, 64);
        s.execute(&["SET", "e", "small"]);
        let too_big = "v".repeat(max as usize);
        assert_eq!(s.execute(&["SET", "e", &too_big]), Reply::Error(OOM.into()));
        assert_eq!(s.get("e").as_deref(), Some(&b"small"[..]), "{policy:?}");
        assert_eq!(
            s.execute(&["APPEND", "e", &too_big]),
            Reply::Error(OOM.into())
        );
        assert_eq!(s.get("e").as_deref(), Some(&b"small"[..]));
    }
}

#[test]
fn evicting_policies_make_room_across_shards_and_never_drop_the_written_key() {
    for policy in EVICTING {
        let max = 256 * 1024;
        let s = store(policy, max, 64);
        let value = "v".repeat(3000);
        for i in 0..2000 {
            let k = format!("key:{i}");
            assert_eq!(s.execute(&["SET", &k, &value]), Reply::ok());
            // Acknowledged: the key is there right after.
            assert_eq!(s.strlen(&k), 3000, "{policy:?} {k}");
            assert!(s.stats().used_memory <= max);
        }
        // The store is full of them, not one per shard.
        let per_key = 3000 + 8 + u64::from(ENTRY_OVERHEAD);
        assert!(s.dbsize() as u64 >= max / per_key - 2, "{}", s.dbsize());
        assert!(s.stats().evicted_keys > 0);
    }
}

#[test]
fn the_default_policy_also_shares_the_budget() {
    let max = 256 * 1024;
    let s = KvStore::builder()
        .max_memory(max)
        .shards(64)
        .build()
        .expect("valid config");
    let value = "v".repeat(3000);
    for i in 0..2000 {
        let k = format!("key:{i}");
        assert_eq!(s.execute(&["SET", &k, &value]), Reply::ok());
        assert_eq!(s.strlen(&k), 3000, "{k}");
        assert!(s.stats().used_memory <= max);
    }
    let big = "b".repeat((max / 2) as usize);
    assert_eq!(s.execute(&["SET", "big", &big]), Reply::ok());
    assert_eq!(s.strlen("big"), big.len());
}

#[test]
fn noeviction_fills_to_the_limit_exactly() {
    let max = 100 * 1024;
    let s = store(RedisPolicy::NoEviction, max, 64);
    let value = "v".repeat(1000);
    let mut ok = 0u64;
    for i in 0..500 {
        match s.execute(&["SET", &format!("k{i:03}"), &value]) {
            r if r == Reply::ok() => ok += 1,
            r => assert_eq!(r, Reply::Error(OOM.into())),
        }
    }
    let per_key = 1000 + 4 + u64::from(ENTRY_OVERHEAD);
    assert_eq!(ok, max / per_key);
    assert_eq!(s.stats().used_memory, ok * per_key);
    // Reads and deletes still work; a delete frees room for a write.
    assert_eq!(s.strlen("k000"), 1000);
    assert_eq!(s.execute(&["DEL", "k000"]), Reply::Integer(1));
    assert_eq!(s.execute(&["SET", "k999", &value]), Reply::ok());
}

#[test]
fn writers_racing_for_the_last_bytes_never_pass_the_limit() {
    for policy in [RedisPolicy::NoEviction, RedisPolicy::AllKeysLru] {
        for round in 0..20 {
            let max = 64 * 1024;
            let s = store(policy, max, 64);
            // Leave room for exactly one of the racing values.
            let filler = "f".repeat(1000);
            let mut i = 0;
            while s.stats().used_memory + 1100 + 30_000 <= max {
                s.set(&format!("fill{i}"), filler.clone(), Default::default())
                    .expect("room left");
                i += 1;
            }
            let threads = 4;
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (s, barrier) = (s.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let v = "r".repeat(30_000);
                        barrier.wait();
                        let r = s.execute(&["SET", &format!("racer{t}"), &v]);
                        (r == Reply::ok(), s.strlen(&format!("racer{t}")))
                    })
                })
                .collect();
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .collect();
            assert!(s.stats().used_memory <= max, "round {round}");
            let won = results.iter().filter(|(ok, _)| *ok).count();
            if policy == RedisPolicy::NoEviction {
                assert_eq!(won, 1, "round {round}: {results:?}");
            } else {
                assert!(won >= 1, "round {round}: {results:?}");
            }
            for (ok, len) in &results {
                if !ok {
                    assert_eq!(*len, 0, "a refused write left no value");
                }
            }
        }
    }
}

/// A write whose entry is larger than `max_memory` could never fit: it is
/// refused before anything is evicted for it, a new key or an existing one,
/// by `SET` or `APPEND`, whatever the policy and the shard count.
#[test]
fn a_write_that_can_never_fit_evicts_nothing() {
    let big = vec![b'x'; 100_000];
    for policy in [
        RedisPolicy::AllKeysLru,
        RedisPolicy::AllKeysLfu,
        RedisPolicy::AllKeysRandom,
        RedisPolicy::VolatileLru,
        RedisPolicy::VolatileTtl,
        RedisPolicy::VolatileRandom,
    ] {
        for shards in [1, 4, 16] {
            let kv = store(policy, 100_000, shards);
            for i in 0..100 {
                kv.execute(&["SET", &format!("k{i}"), "v", "EX", "1000"]);
            }
            assert_eq!(kv.dbsize(), 100);
            for (what, args) in [
                ("SET of a new key", [&b"SET"[..], b"huge", &big]),
                ("SET of an existing key", [&b"SET"[..], b"k1", &big]),
                ("APPEND", [&b"APPEND"[..], b"k2", &big]),
            ] {
                assert_eq!(
                    kv.execute(&args),
                    Reply::Error(OOM.into()),
                    "{policy:?}, {shards} shards: {what}"
                );
                assert_eq!(kv.dbsize(), 100, "{policy:?}, {shards} shards: {what}");
            }
            assert_eq!(kv.get("k1").as_deref(), Some(&b"v"[..]));
            assert_eq!(kv.get("k2").as_deref(), Some(&b"v"[..]));
        }
    }
}
