//! The caches under test, behind one small trait.

use std::collections::VecDeque;
use std::num::NonZeroUsize;

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use shardcache::{Cache, Policy};

use crate::lirs::Lirs;
use crate::reference::Reference;

/// Names of every subject run by default, in report order.
pub(crate) const ALL: [&str; 5] = ["shardcache", "shardcache-lru", "moka", "quick_cache", "lru"];

/// Subjects run only when named: a policy plugged in from outside the crate
/// (the `sieve` example's SIEVE, through `Policy::custom`), to compare with
/// the built-ins.
pub(crate) const EXTRA: [&str; 1] = ["shardcache-sieve"];

/// Reference subjects, run only when named: not caches anyone should use,
/// but yardsticks for what the others cost.
///
/// `fifo-map` is the least a lock-striped cache can do: 64 shards, each a
/// `parking_lot::RwLock` around a `hashbrown` map with the key and value
/// inline and a FIFO queue of keys for eviction, so no policy work and no
/// per-entry metadata. Its throughput is roughly the most that a design with
/// a lock per shard reaches on a machine; its hit ratio is plain FIFO's.
///
/// `arc` is ARC (see `arc.rs`), one global cache under a mutex: the
/// adaptive policy whose ghost rule sizes shardcache's window, for hit
/// ratios beside the others (its throughput is a mutex's).
///
/// `lirs` is LIRS (see `lirs.rs`), likewise one global cache under a
/// mutex: the policy that ranks keys by how soon they came back, for hit
/// ratios beside the others.
pub(crate) const REFERENCE: [&str; 3] = ["fifo-map", "arc", "lirs"];

/// A cache of `u64 -> u64` as seen by the benchmarks.
pub(crate) trait Subject: Send + Sync {
    /// Looks `key` up; true on a hit.
    fn get(&self, key: u64) -> bool;
    /// Inserts `key` (the value is the key itself).
    fn insert(&self, key: u64);
    /// Finishes deferred maintenance so `len` and memory are settled.
    fn settle(&self) {}
    /// Number of entries currently held.
    fn len(&self) -> usize;
}

/// Checks a `--subjects` list (empty means all of [`ALL`]) and returns it in
/// report order, [`EXTRA`] and then [`REFERENCE`] subjects last.
pub(crate) fn select(names: &[String]) -> Result<Vec<&'static str>, String> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    let known = || {
        ALL.iter()
            .chain(EXTRA.iter())
            .chain(REFERENCE.iter())
            .copied()
    };
    for n in names {
        if !known().any(|k| k == n) {
            let list: Vec<_> = known().collect();
            return Err(format!(
                "unknown subject `{n}` (known: {})",
                list.join(", ")
            ));
        }
    }
    Ok(known().filter(|a| names.iter().any(|n| n == a)).collect())
}

/// A shardcache subject with `policy`.
fn shard_subject(name: &str, cap: u64, policy: Policy) -> Result<Box<dyn Subject>, String> {
    let cache = Cache::builder()
        .max_capacity(cap)
        .policy(policy)
        .build()
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Box::new(Shard(cache)))
}

/// Builds subject `name` (one of [`ALL`]) with room for `capacity` entries.
pub(crate) fn build(name: &str, capacity: u64) -> Result<Box<dyn Subject>, String> {
    let cap = capacity.max(1);
    Ok(match name {
        "shardcache" => shard_subject(name, cap, Policy::tiny_lfu())?,
        "shardcache-lru" => shard_subject(name, cap, Policy::lru())?,
        "shardcache-sieve" => shard_subject(
            name,
            cap,
            Policy::custom("sieve", |_| crate::sieve::Sieve::default()),
        )?,
        "moka" => Box::new(Moka(moka::sync::Cache::new(cap))),
        "quick_cache" => Box::new(Quick(quick_cache::sync::Cache::new(to_usize(cap)))),
        "lru" => Box::new(Lru(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(to_usize(cap)).unwrap_or(NonZeroUsize::MIN),
        )))),
        "fifo-map" => Box::new(FifoMap::new(cap)),
        "arc" => Box::new(Locked(Mutex::new(crate::arc::Arc::new(to_usize(cap))))),
        "lirs" => Box::new(Locked(Mutex::new(Lirs::new(to_usize(cap))))),
        other => return Err(format!("unknown subject `{other}`")),
    })
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

struct Shard(Cache<u64, u64>);

impl Subject for Shard {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64) {
        self.0.insert(key, key);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

struct Moka(moka::sync::Cache<u64, u64>);

impl Subject for Moka {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64) {
        self.0.insert(key, key);
    }
    fn settle(&self) {
        self.0.run_pending_tasks();
    }
    fn len(&self) -> usize {
        to_usize(self.0.entry_count())
    }
}

struct Quick(quick_cache::sync::Cache<u64, u64>);

impl Subject for Quick {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64) {
        self.0.insert(key, key);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

struct Lru(Mutex<lru::LruCache<u64, u64>>);

impl Subject for Lru {
    fn get(&self, key: u64) -> bool {
        self.0.lock().get(&key).is_some()
    }
    fn insert(&self, key: u64) {
        self.0.lock().put(key, key);
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// A reference policy under a mutex.
struct Locked<P>(Mutex<P>);

impl<P: Reference> Subject for Locked<P> {
    fn get(&self, key: u64) -> bool {
        self.0.lock().get(key)
    }
    fn insert(&self, key: u64) {
        self.0.lock().insert(key);
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// One shard of [`FifoMap`]: the map and its keys in insertion order.
type FifoShard = RwLock<(HashMap<u64, u64, ahash::RandomState>, VecDeque<u64>)>;

/// The `fifo-map` reference subject (see [`REFERENCE`]).
struct FifoMap {
    shards: Vec<FifoShard>,
    per_shard: usize,
    hasher: ahash::RandomState,
}

impl FifoMap {
    const SHARDS: usize = 64;

    fn new(capacity: u64) -> Self {
        let per_shard = to_usize(capacity.div_ceil(Self::SHARDS as u64)).max(1);
        let hasher = ahash::RandomState::new();
        Self {
            shards: (0..Self::SHARDS)
                .map(|_| {
                    RwLock::new((
                        HashMap::with_capacity_and_hasher(per_shard, hasher.clone()),
                        VecDeque::with_capacity(per_shard),
                    ))
                })
                .collect(),
            per_shard,
            hasher,
        }
    }

    fn shard(&self, key: u64) -> &FifoShard {
        // Middle bits: each map hashes with the same seed, and hashbrown
        // takes its buckets from the low bits and its tags from the top
        // seven. Shards picked from the top bits would leave the keys of a
        // shard one bit of tag between them.
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 32) as usize % Self::SHARDS]
    }
}

impl Subject for FifoMap {
    fn get(&self, key: u64) -> bool {
        self.shard(key).read().0.contains_key(&key)
    }
    fn insert(&self, key: u64) {
        let mut guard = self.shard(key).write();
        let (map, order) = &mut *guard;
        if map.insert(key, key).is_none() {
            order.push_back(key);
            if order.len() > self.per_shard {
                if let Some(oldest) = order.pop_front() {
                    map.remove(&oldest);
                }
            }
        }
    }
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().0.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_caches() {
        for name in ALL.into_iter().chain(REFERENCE) {
            let s = build(name, 100).expect("build");
            assert!(!s.get(7));
            s.insert(7);
            s.settle();
            assert!(s.get(7), "{name}");
            assert_eq!(s.len(), 1, "{name}");
        }
        assert!(select(&["nope".into()]).is_err());
        assert_eq!(
            select(&["fifo-map".into(), "shardcache".into()]).expect("valid"),
            vec!["shardcache", "fifo-map"]
        );
        assert_eq!(
            select(&["lru".into(), "moka".into()]).expect("valid"),
            vec!["moka", "lru"]
        );
    }
}
