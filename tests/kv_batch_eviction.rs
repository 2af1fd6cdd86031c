#![allow(clippy::unwrap_used)]
//! Multi-key writes (`MSET`, `COPY`, `RENAME`) on a full store under every
//! evicting policy: their room is made by evicting other keys, never their
//! own, so none is refused while the store can hold it, and each one
//! acknowledged is whole right after it. `noeviction` still refuses a write
//! that does not fit, and a batch heavier than `max_memory` is refused whole.

use bytes::Bytes;
use shardcache::kv::{KvError, KvStore, SetOptions, ENTRY_OVERHEAD};
use shardcache::{Policy, RedisPolicy};

/// Every policy that evicts: Redis's (the `volatile-*` ones fall back on
/// any key when no key has an expiry), and the crate's own `lru` and
/// `tinylfu`.
fn evicting() -> Vec<Policy> {
    let mut all: Vec<Policy> = [
        RedisPolicy::AllKeysLru,
        RedisPolicy::AllKeysLfu,
        RedisPolicy::AllKeysRandom,
        RedisPolicy::VolatileLru,
        RedisPolicy::VolatileLfu,
        RedisPolicy::VolatileRandom,
        RedisPolicy::VolatileTtl,
    ]
    .into_iter()
    .map(Policy::redis)
    .collect();
    all.extend([Policy::lru(), Policy::tiny_lfu()]);
    all
}

/// `max_memory` of each store: 64 KiB, 1 MiB, 16 MiB.
const SIZES: [u64; 3] = [64 << 10, 1 << 20, 16 << 20];

fn store(policy: &Policy, max: u64) -> KvStore {
    KvStore::builder()
        .max_memory(max)
        .policy(policy.clone())
        .build()
        .unwrap()
}

/// Enough 100-byte writes to fill a store of `max` bytes one and a half
/// times over (each entry weighs about 270 bytes), and at least 20,000.
fn writes_for(max: u64) -> u64 {
    (max * 3 / 2 / 270).max(20_000)
}

/// A store filled by `SET`s of new keys with 100-byte values (none with an
/// expiry), with an `MSET` of three new keys every tenth write: no `MSET`
/// is refused, every key of each is there right after it, and
/// `used_memory` stays within `max_memory`.
#[test]
fn msets_on_a_full_store_are_never_refused() {
    let value = Bytes::from("v".repeat(100));
    let mut refused = Vec::new();
    for max in SIZES {
        for policy in &evicting() {
            let kv = store(policy, max);
            let (mut msets, mut no) = (0u64, 0u64);
            for w in 0..writes_for(max) {
                if w % 10 != 9 {
                    kv.set(&format!("s:{w}"), value.clone(), SetOptions::new())
                        .unwrap();
                    continue;
                }
                msets += 1;
                let keys: Vec<String> = (0..3).map(|j| format!("m:{w}:{j}")).collect();
                let pairs: Vec<(&str, Bytes)> =
                    keys.iter().map(|k| (k.as_str(), value.clone())).collect();
                match kv.mset(&pairs) {
                    Ok(()) => {
                        for k in &keys {
                            assert_eq!(
                                kv.get(k).map(|b| b.len()),
                                Some(value.len()),
                                "{policy} max {max}: {k} missing right after its MSET"
                            );
                        }
                    }
                    Err(e) => {
                        assert_eq!(e, KvError::OutOfMemory);
                        no += 1;
                    }
                }
            }
            let stats = kv.stats();
            assert!(stats.used_memory <= max, "{policy} max {max}");
            assert!(stats.evicted_keys > 0, "{policy} max {max}: never full");
            if no > 0 {
                refused.push(format!("{policy} at {max}: {no} of {msets}"));
            }
        }
    }
    assert!(refused.is_empty(), "MSETs refused with OOM: {refused:?}");
}

/// Fills `kv` with `n` keys of 100-byte values.
fn fill(kv: &KvStore, n: u64) {
    let value = "f".repeat(100);
    for i in 0..n {
        kv.set(&format!("fill:{i}"), value.clone(), SetOptions::new())
            .unwrap();
    }
}

/// Every other round's key gets an expiry (under a `volatile-*` policy it
/// is then among the few keys the policy would pick).
fn options(round: u32) -> SetOptions {
    if round.is_multiple_of(2) {
        SetOptions::new()
    } else {
        SetOptions::new().ex(1_000)
    }
}

/// `COPY` of a freshly written key on a full store: copied, with the source
/// still there.
#[test]
fn copies_on_a_full_store_are_never_refused() {
    let value = "c".repeat(100);
    let refused = refusals_on_full_stores(|kv, policy, round| {
        let (src, dst) = (format!("src:{round}"), format!("dst:{round}"));
        kv.set(&src, value.clone(), options(round)).unwrap();
        let copied = kv.copy(&src, &dst, false);
        // Copied or not, the source stays.
        assert_eq!(kv.get(&src).map(|b| b.len()), Some(100), "{policy}");
        match copied {
            Ok(copied) => {
                assert!(copied, "{policy} round {round}");
                assert_eq!(kv.get(&dst).map(|b| b.len()), Some(100), "{policy}");
                false
            }
            Err(e) => {
                assert_eq!(e, KvError::OutOfMemory);
                true
            }
        }
    });
    assert!(refused.is_empty(), "COPYs refused with OOM: {refused:?}");
}

/// `RENAME` to a longer name (a heavier entry) on a full store: renamed,
/// never refused.
#[test]
fn renames_to_longer_names_on_a_full_store_are_never_refused() {
    let value = "r".repeat(100);
    let refused = refusals_on_full_stores(|kv, policy, round| {
        let (from, to) = (format!("a:{round}"), format!("renamed-longer:{round}"));
        kv.set(&from, value.clone(), options(round)).unwrap();
        match kv.rename(&from, &to) {
            Ok(()) => {
                assert_eq!(kv.get(&from), None, "{policy}");
                assert_eq!(kv.get(&to).map(|b| b.len()), Some(100), "{policy}");
                false
            }
            Err(e) => {
                assert_eq!(e, KvError::OutOfMemory);
                assert_eq!(kv.get(&from).map(|b| b.len()), Some(100), "{policy}");
                true
            }
        }
    });
    assert!(refused.is_empty(), "RENAMEs refused with OOM: {refused:?}");
}

/// Runs 2,000 rounds of `round` (which answers whether its write was
/// refused) on a full store of every size under every evicting policy;
/// the cells where any was refused, and how many.
fn refusals_on_full_stores(round: impl Fn(&KvStore, &Policy, u32) -> bool) -> Vec<String> {
    let mut refused = Vec::new();
    for max in SIZES {
        for policy in &evicting() {
            let kv = store(policy, max);
            fill(&kv, writes_for(max));
            let no = (0..2_000).filter(|&r| round(&kv, policy, r)).count();
            assert!(kv.stats().used_memory <= max, "{policy} max {max}");
            if no > 0 {
                refused.push(format!("{policy} at {max}: {no} of 2000"));
            }
        }
    }
    refused
}

/// Under `noeviction` a full store still refuses an `MSET` of new keys
/// (and writes none of them), a `COPY` and a `RENAME` to a longer name.
#[test]
fn noeviction_still_refuses_batches_on_a_full_store() {
    for max in [64 << 10, 1 << 20] {
        let kv = store(&Policy::redis_noeviction(), max);
        let value = "n".repeat(100);
        let mut i = 0;
        while kv
            .set(&format!("k:{i}"), value.clone(), SetOptions::new())
            .is_ok()
        {
            i += 1;
        }
        // The last bytes go to `k:0`'s value, to the byte: any growth is
        // then refused.
        let left = (max - kv.stats().used_memory) as usize;
        kv.set("k:0", "n".repeat(100 + left), SetOptions::new())
            .unwrap();
        let used = kv.stats().used_memory;
        assert_eq!(used, max);
        let keys = ["new:a", "new:b", "new:c"];
        let pairs: Vec<(&str, String)> = keys.iter().map(|&k| (k, value.clone())).collect();
        assert_eq!(kv.mset(&pairs), Err(KvError::OutOfMemory), "max {max}");
        assert!(keys.iter().all(|k| kv.get(k).is_none()), "max {max}");
        assert_eq!(kv.copy("k:1", "copy", false), Err(KvError::OutOfMemory));
        assert_eq!(
            kv.rename("k:1", "a-much-longer-name-than-the-old-one"),
            Err(KvError::OutOfMemory)
        );
        assert_eq!(kv.get("k:1").map(|b| b.len()), Some(100));
        assert_eq!(kv.stats().used_memory, used, "max {max}");
        assert_eq!(kv.stats().evicted_keys, 0, "max {max}");
    }
}

/// An `MSET` whose values together weigh more than `max_memory` (each fits
/// alone) is refused whole under every evicting policy: none of its keys is
/// written, and a key it would have replaced keeps its value.
#[test]
fn a_batch_heavier_than_the_store_is_refused_whole() {
    let max: u64 = 64 << 10;
    for policy in &evicting() {
        let kv = store(policy, max);
        fill(&kv, 1_000);
        kv.set("old", "small", SetOptions::new()).unwrap();
        // Three values of 40 % of the store each.
        let big = Bytes::from("b".repeat((max * 2 / 5) as usize - 100));
        for pairs in [
            [
                ("old", big.clone()),
                ("n1", big.clone()),
                ("n2", big.clone()),
            ],
            [
                ("n1", big.clone()),
                ("n2", big.clone()),
                ("old", big.clone()),
            ],
        ] {
            assert_eq!(kv.mset(&pairs), Err(KvError::OutOfMemory), "{policy}");
            assert_eq!(kv.get("n1"), None, "{policy}");
            assert_eq!(kv.get("n2"), None, "{policy}");
            assert_eq!(kv.get("old").as_deref(), Some(&b"small"[..]), "{policy}");
            assert!(kv.stats().used_memory <= max, "{policy}");
        }
        // Two of them fit together: written whole, over every other key.
        let pairs = [("n1", big.clone()), ("n2", big.clone())];
        assert_eq!(kv.mset(&pairs), Ok(()), "{policy}");
        assert_eq!(kv.get("n1").map(|b| b.len()), Some(big.len()), "{policy}");
        assert_eq!(kv.get("n2").map(|b| b.len()), Some(big.len()), "{policy}");
        let entry = |k: &str, v: usize| k.len() as u64 + v as u64 + u64::from(ENTRY_OVERHEAD);
        assert!(
            kv.stats().used_memory >= 2 * entry("n1", big.len()),
            "{policy}"
        );
    }
}

/// An `MSET` of many small keys that together weigh more than
/// `max_memory` is refused before it evicts anything: every key the store
/// held before it is still there, with its value. (Found refused only once
/// its inserts had evicted every other key and then searched the spared
/// ones for room, for a minute and more at 300,000 keys.)
#[test]
fn a_many_key_batch_heavier_than_the_store_evicts_nothing() {
    let max: u64 = 1 << 20;
    for policy in &evicting() {
        let kv = store(policy, max);
        fill(&kv, 10_000);
        let mut before: Vec<(String, Option<Bytes>)> = kv
            .keys("*")
            .into_iter()
            .map(|k| (k.clone(), kv.get(&k)))
            .collect();
        before.sort();
        let n = (2 * max / u64::from(ENTRY_OVERHEAD)) as usize;
        let pairs: Vec<(String, &str)> = (0..n).map(|i| (format!("new:{i}"), "v")).collect();
        assert_eq!(kv.mset(&pairs), Err(KvError::OutOfMemory), "{policy}");
        let mut after: Vec<(String, Option<Bytes>)> = kv
            .keys("*")
            .into_iter()
            .map(|k| (k.clone(), kv.get(&k)))
            .collect();
        after.sort();
        assert_eq!(
            after.len(),
            before.len(),
            "{policy}: keys evicted by a refused MSET"
        );
        assert!(
            after == before,
            "{policy}: a refused MSET changed the store"
        );
    }
}
