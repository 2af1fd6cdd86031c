//! The caches under test, behind one small trait.

use std::num::NonZeroUsize;

use parking_lot::Mutex;
use shardcache::{Cache, Policy};

/// Names of every subject, in report order.
pub(crate) const ALL: [&str; 5] = ["shardcache", "shardcache-lru", "moka", "quick_cache", "lru"];

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

/// Checks a `--subjects` list (empty means all) and returns it in report order.
pub(crate) fn select(names: &[String]) -> Result<Vec<&'static str>, String> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    for n in names {
        if !ALL.contains(&n.as_str()) {
            return Err(format!("unknown subject `{n}` (known: {})", ALL.join(", ")));
        }
    }
    Ok(ALL
        .iter()
        .copied()
        .filter(|a| names.iter().any(|n| n == a))
        .collect())
}

/// Builds subject `name` (one of [`ALL`]) with room for `capacity` entries.
pub(crate) fn build(name: &str, capacity: u64) -> Result<Box<dyn Subject>, String> {
    let cap = capacity.max(1);
    Ok(match name {
        "shardcache" => Box::new(Shard(
            Cache::builder()
                .max_capacity(cap)
                .policy(Policy::tiny_lfu())
                .build()
                .map_err(|e| format!("shardcache: {e}"))?,
        )),
        "shardcache-lru" => Box::new(Shard(
            Cache::builder()
                .max_capacity(cap)
                .policy(Policy::lru())
                .build()
                .map_err(|e| format!("shardcache-lru: {e}"))?,
        )),
        "moka" => Box::new(Moka(moka::sync::Cache::new(cap))),
        "quick_cache" => Box::new(Quick(quick_cache::sync::Cache::new(to_usize(cap)))),
        "lru" => Box::new(Lru(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(to_usize(cap)).unwrap_or(NonZeroUsize::MIN),
        )))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_caches() {
        for name in ALL {
            let s = build(name, 100).expect("build");
            assert!(!s.get(7));
            s.insert(7);
            s.settle();
            assert!(s.get(7), "{name}");
            assert_eq!(s.len(), 1, "{name}");
        }
        assert!(select(&["nope".into()]).is_err());
        assert_eq!(
            select(&["lru".into(), "moka".into()]).expect("valid"),
            vec!["moka", "lru"]
        );
    }
}
