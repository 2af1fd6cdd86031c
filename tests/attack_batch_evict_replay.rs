//! A persistent store under an evicting policy: batches and splices of
//! values that are evicted live (evictions are not logged) and during the
//! replay. Whatever comes back holds the last value written to its key,
//! never bytes a splice made up on another base, and no key removed or
//! renamed away comes back.

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/kv_log.rs"]
#[allow(dead_code)]
mod kv_log;

use kv_log::{bulk, splice};
use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, MemStorage};
use shardcache::{Policy, RedisPolicy};
use std::collections::BTreeMap;
use std::time::Duration;

fn open(storage: &MemStorage, policy: RedisPolicy) -> (KvStore, u64) {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always)
        .write_delay(Duration::ZERO)
        .rewrite_policy(0, u64::MAX);
    let (kv, report) = KvStore::builder()
        .max_memory(4_000)
        .policy(Policy::redis(policy))
        .shards(2)
        .build_persistent(log)
        .expect("open");
    (kv, report.orphan_splices)
}

#[test]
fn evicted_batches_and_splices_reload_only_last_written_values() {
    let (mut orphans, mut evicted) = (0, 0);
    for policy in [
        RedisPolicy::AllKeysLru,
        RedisPolicy::AllKeysRandom,
        RedisPolicy::AllKeysLfu,
    ] {
        for seed in 1..=30u64 {
            let mut rng = Xorshift::seeded(seed);
            let mut next = move |n: u64| rng.below(n);
            let storage = MemStorage::new();
            let (kv, _) = open(&storage, policy);
            // The last value written to each key (evictions aside).
            let mut last: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for step in 0..150 {
                let k1 = format!("k{}", next(12));
                let k2 = format!("k{}", next(12));
                // What the store holds now, as the write starts from it.
                let live = |k: &str| bulk(&kv, k);
                match next(7) {
                    0 | 1 => {
                        let extra = vec![b'a' + (step % 26) as u8; 1 + next(120) as usize];
                        let mut v = live(&k1).unwrap_or_default();
                        if kv.append(&k1, &extra).is_ok() {
                            v.extend_from_slice(&extra);
                            last.insert(k1, v);
                        }
                    }
                    2 => {
                        let offset = next(300) as usize;
                        let mut v = live(&k1).unwrap_or_default();
                        if kv.set_range(&k1, offset, b"SR").is_ok() {
                            splice(&mut v, offset, b"SR");
                            last.insert(k1, v);
                        }
                    }
                    3 => {
                        let v = live(&k1);
                        if kv.rename(&k1, &k2).is_ok() && k1 != k2 {
                            last.remove(&k1);
                            last.insert(k2, v.expect("renamed"));
                        }
                    }
                    4 => {
                        let v = live(&k1);
                        if kv.copy(&k1, &k2, true) == Ok(true) {
                            last.insert(k2, v.expect("copied"));
                        }
                    }
                    5 => {
                        let v = vec![b'm'; 50 + next(400) as usize];
                        if kv.mset(&[(&*k1, v.clone()), (&*k2, v.clone())]).is_ok() {
                            last.insert(k1, v.clone());
                            last.insert(k2, v);
                        }
                    }
                    _ => {
                        kv.del(&[&k1]);
                        last.remove(&k1);
                    }
                }
                if step % 50 == 49 {
                    kv.rewrite_log().expect("rewrite");
                }
            }
            evicted += kv.stats().evicted_keys;
            drop(kv);
            let (kv, orphan) = open(&storage, policy);
            orphans += orphan;
            for k in kv.keys("*") {
                assert_eq!(
                    bulk(&kv, &k),
                    last.get(&k).cloned(),
                    "{policy} seed {seed}: {k} reloaded with a value never written last"
                );
            }
        }
    }
    eprintln!("orphan splices: {orphans}, evicted live: {evicted}");
    assert!(evicted > 100, "too few evictions: {evicted}");
}
