//! `max_memory` and Redis's eviction policies through `KvStore`.

use shardcache::kv::{KvError, KvStore, Reply, SetOptions, ENTRY_OVERHEAD};
use shardcache::{Policy, RedisPolicy};

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
        let mut x = 0x1234_5678_u64;
        for step in 0..40_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
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
    assert_eq!(kv.strlen("k"), MAX_STRING_LEN);
}
