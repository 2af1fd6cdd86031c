//! Batches (`MSET`, `RENAME`, `COPY`) under `max_memory` with every Redis
//! policy: a refused batch rolls back exactly (values, spare capacity in
//! `used_memory`, the log), and an acknowledged one is whole.

use shardcache::kv::{KvError, KvStore, SetOptions, ENTRY_OVERHEAD};
use shardcache::persist::{FileLog, Fsync, MemStorage};
use shardcache::{Policy, RedisPolicy};

const MAX: u64 = 6_000;

fn builder(policy: RedisPolicy, shards: usize) -> shardcache::kv::KvStoreBuilder {
    KvStore::builder()
        .max_memory(MAX)
        .policy(Policy::redis(policy))
        .shards(shards)
}

fn persistent(storage: &MemStorage, policy: RedisPolicy, shards: usize) -> KvStore {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    builder(policy, shards)
        .build_persistent(log)
        .expect("open")
        .0
}

fn snapshot(kv: &KvStore) -> Vec<(String, Option<Vec<u8>>, i64)> {
    let mut keys = kv.keys("*");
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let v = kv.get(&k).map(|b| b.to_vec());
            let ttl = kv.ttl(&k);
            (k, v, ttl)
        })
        .collect()
}

/// Under noeviction, a full store: a grown value `g` (spare capacity
/// counted), then an `MSET` that replaces `g` and then fails on a value
/// that does not fit. Nothing changes: values, TTLs, `used_memory` (the
/// restored `g` counted with its spare capacity again), and the log.
#[test]
fn a_refused_mset_rolls_back_exactly_under_noeviction() {
    for shards in [1, 4] {
        let storage = MemStorage::new();
        let kv = persistent(&storage, RedisPolicy::NoEviction, shards);
        for _ in 0..40 {
            kv.append("g", b"0123456789").expect("append");
        }
        kv.set("t", "ttl", SetOptions::new().ex(500)).expect("set");
        let mut i = 0;
        while kv
            .set(&format!("f{i}"), "x".repeat(100), SetOptions::new())
            .is_ok()
        {
            i += 1;
        }
        let before = (snapshot(&kv), kv.stats().used_memory);
        let big = "y".repeat(2_000);
        for pairs in [
            vec![("g", "small".to_string()), ("huge", big.clone())],
            vec![
                ("t", "z".to_string()),
                ("g", big.clone()),
                ("new", "n".into()),
            ],
            vec![
                ("new", "n".to_string()),
                ("g", String::new()),
                ("huge", big.clone()),
            ],
        ] {
            assert_eq!(kv.mset(&pairs), Err(KvError::OutOfMemory), "{shards}");
            assert_eq!((snapshot(&kv), kv.stats().used_memory), before, "{shards}");
        }
        // A refused RENAME or COPY of the grown value changes nothing either.
        let long = "k".repeat(300);
        match kv.rename("g", &long) {
            Err(KvError::OutOfMemory) => {
                assert_eq!((snapshot(&kv), kv.stats().used_memory), before)
            }
            other => panic!("rename into a full store: {other:?}"),
        }
        assert_eq!(kv.copy("g", "gg", false), Err(KvError::OutOfMemory));
        assert_eq!((snapshot(&kv), kv.stats().used_memory), before);
        drop(kv);
        let kv = persistent(&storage, RedisPolicy::NoEviction, shards);
        assert_eq!(snapshot(&kv), before.0, "reloaded {shards}");
    }
}

/// Under every policy, an `MSET` the store acknowledges is whole: a reader
/// right after it sees every one of its values (a batch does not evict
/// its own keys), and `used_memory` stays within `max_memory` under the
/// evicting policies.
#[test]
fn an_acknowledged_mset_is_whole_under_every_policy() {
    for policy in RedisPolicy::ALL {
        for shards in [1, 2] {
            let kv = builder(policy, shards).build().expect("build");
            for i in 0..30 {
                let _ = kv.set(&format!("f{i}"), "x".repeat(100), SetOptions::new().ex(100));
            }
            let v = "v".repeat(1_500);
            let mut acked = 0;
            for round in 0..20 {
                let keys: Vec<String> = (0..3).map(|j| format!("m{round}:{j}")).collect();
                let pairs: Vec<(&str, String)> =
                    keys.iter().map(|k| (k.as_str(), v.clone())).collect();
                if kv.mset(&pairs).is_ok() {
                    acked += 1;
                    for k in &keys {
                        assert_eq!(
                            kv.get(k).map(|b| b.len()),
                            Some(v.len()),
                            "{policy} {shards} round {round}: {k} missing after MSET"
                        );
                    }
                }
                if policy != RedisPolicy::NoEviction {
                    assert!(kv.stats().used_memory <= MAX, "{policy}");
                }
                // Acknowledged or rolled back, `used_memory` counts exactly
                // the entries left (no spare capacity here).
                let held: u64 = kv
                    .keys("*")
                    .iter()
                    .map(|k| k.len() as u64 + kv.strlen(k) as u64 + u64::from(ENTRY_OVERHEAD))
                    .sum();
                assert_eq!(
                    kv.stats().used_memory,
                    held,
                    "{policy} {shards} round {round}"
                );
            }
            if policy.to_string().starts_with("allkeys") {
                assert!(acked > 0, "{policy} {shards}: no MSET acknowledged");
            }
        }
    }
}

/// `used_memory` after batches is exactly the sum of what the keys hold.
#[test]
fn used_memory_after_renames_and_copies_is_exact() {
    let kv = KvStore::new();
    kv.mset(&[("a", "1234"), ("bb", "56")]).expect("mset");
    let o = u64::from(ENTRY_OVERHEAD);
    assert_eq!(kv.stats().used_memory, (1 + 4 + o) + (2 + 2 + o));
    kv.rename("a", "bb").expect("rename");
    assert_eq!(kv.stats().used_memory, 2 + 4 + o);
    assert!(kv.copy("bb", "ccc", false).expect("copy"));
    assert_eq!(kv.stats().used_memory, (2 + 4 + o) + (3 + 4 + o));
    assert!(kv.rename_nx("ccc", "d").expect("renamenx"));
    kv.del(&["bb", "d"]);
    assert_eq!(kv.stats().used_memory, 0);
}

/// Under every policy, a `COPY` the store acknowledges leaves both keys
/// there: the copy's insert does not evict the source it copied (Redis
/// evicts before a command, never in the middle of it); one it refuses
/// leaves the source whole and no copy.
#[test]
fn an_acknowledged_copy_keeps_its_source_under_every_policy() {
    for policy in RedisPolicy::ALL {
        let kv = builder(policy, 1).build().expect("build");
        let v = "v".repeat(2_000);
        let mut acked = 0;
        for round in 0..40 {
            let (src, dst) = (format!("s{round}"), format!("d{round}"));
            let opts = if round % 2 == 0 {
                SetOptions::new()
            } else {
                SetOptions::new().ex(100)
            };
            if kv.set(&src, v.clone(), opts).is_err() {
                continue;
            }
            let copied = kv.copy(&src, &dst, false);
            if copied.is_err() {
                // A refused COPY leaves its source as it was.
                assert_eq!(copied, Err(KvError::OutOfMemory), "{policy}");
                assert_eq!(kv.strlen(&src), v.len(), "{policy} round {round}");
                assert_eq!(kv.get(&dst), None, "{policy} round {round}");
            }
            if copied == Ok(true) {
                acked += 1;
                assert!(
                    kv.get(&src).is_some() && kv.get(&dst).is_some(),
                    "{policy} round {round}: COPY acknowledged, source {:?} copy {:?}",
                    kv.get(&src).map(|b| b.len()),
                    kv.get(&dst).map(|b| b.len())
                );
            }
        }
        if policy.to_string().starts_with("allkeys") {
            assert!(acked > 0, "{policy}: no COPY acknowledged");
        }
    }
}

/// A `RENAME` (or `COPY ... REPLACE`, `MSET`) of a large value that the log
/// fails to keep under `Fsync::Always`, in a store whose `max_memory` holds
/// the value once but not twice: the undo puts the source back before it
/// removes the destination, so it must not lose the source for want of
/// room.
#[test]
fn an_undone_rename_of_a_large_value_keeps_its_source() {
    use shardcache::persist::FaultOn;
    for policy in RedisPolicy::ALL {
        for shards in [1, 2] {
            for on in [FaultOn::Append, FaultOn::Sync] {
                let storage = MemStorage::new();
                let kv = persistent(&storage, policy, shards);
                let v = "v".repeat(3_500);
                kv.set("a", v.clone(), SetOptions::new().ex(1_000))
                    .expect("set");
                storage.inject(on, 0, std::io::ErrorKind::Other, false);
                let what = format!("{policy} {shards} {on:?}");
                assert!(kv.durably(|| kv.rename("a", "b")).is_err(), "{what}");
                assert_eq!(kv.strlen("a"), v.len(), "{what}: source lost");
                assert_eq!(kv.get("b"), None, "{what}");
                storage.heal();
                let _ = kv.sync();
                drop(kv);
                let kv = persistent(&storage, policy, shards);
                assert_eq!(kv.strlen("a"), v.len(), "{what}: source lost on reopen");
            }
        }
    }
}

/// An `MSET` that shrinks one large value and grows another, refused by the
/// log under `Fsync::Always` in a store that holds one large value at a
/// time: the undo restores both, whatever order it restores them in.
#[test]
fn an_undone_mset_that_swaps_sizes_keeps_both_values() {
    use shardcache::persist::FaultOn;
    for policy in [RedisPolicy::NoEviction, RedisPolicy::VolatileLru] {
        for shards in [1, 2] {
            let storage = MemStorage::new();
            let kv = persistent(&storage, policy, shards);
            let big = "v".repeat(3_500);
            kv.mset(&[("a", big.clone()), ("b", "small".to_string())])
                .expect("mset");
            storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, false);
            let what = format!("{policy} {shards}");
            let swapped = [("a", "small".to_string()), ("b", big.clone())];
            assert!(kv.durably(|| kv.mset(&swapped)).is_err(), "{what}");
            assert_eq!(kv.strlen("a"), big.len(), "{what}: a lost");
            assert_eq!(kv.get("b").as_deref(), Some(&b"small"[..]), "{what}");
        }
    }
}
