//! Building a [`Cache`] from its builder: the shard count, each shard's
//! share of the capacity, the policy's state per shard, the shared budget.
//!
//! Owns the sizing rules; calls the policy (for its per-shard state and
//! tuner) and the shard's constructor.

use super::{Cache, Inner};
use crate::builder::{BuildError, CacheBuilder};
use crate::clock::Millis;
use crate::expire_after::WriteTtl;
use crate::flight::Flights;
use crate::refresh::Refresher;
use crate::shard::Shard;
use crate::shard_lock::{ReaderCounts, ShardLock};
use crate::stats::StatsCounters;
use crate::sync::{Arc, CacheAligned};
use crate::weigher::Weights;
use std::hash::{BuildHasher, Hash};

/// The most table slots presized over all of a cache's shards.
const PRESIZED_SLOTS: u64 = 1 << 18;
/// The largest capacity, in entries (unit weights), that memory could fill:
/// 2^32 entries take over 200 GB at the 51 bytes a `u64 → u64` entry needs.
/// A larger one never evicts, and its policy is sized as an unbounded
/// cache's.
const FILLABLE: u64 = 1 << 32;
/// The entries a weighted cache's policy is sized for, over all shards, at
/// most. A weight says nothing of how many entries a shard will hold, so
/// each is sized for 4,096; this bound keeps that for every default shard
/// count (1,024 at most) and scales it down past them: 4,096 in each of
/// 65,536 shards sized ghosts and sketches for 2^28 entries, 1.6 GiB before
/// the first insert.
const WEIGHTED_ENTRIES: u64 = 1 << 22;

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `max_capacity` entries with the default settings.
    /// A `max_capacity` of 0 is treated as 1.
    pub fn new(max_capacity: u64) -> Self {
        Self::from_builder(CacheBuilder::new().max_capacity(max_capacity.max(1)))
    }

    /// A builder for every other setting.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// Checks the settings and builds the cache.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first setting that cannot work: a zero
    /// capacity, a shard count that is not a power of two, a zero or overlong
    /// TTL or TTI, refresh settings that do not fit together.
    pub fn build(self) -> Result<Cache<K, V, S>, BuildError>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: BuildHasher + Clone + Send + Sync + 'static,
    {
        let (b, refresher) = self.checked()?;
        Ok(Cache::with_refresher(b, refresher))
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    pub(crate) fn from_builder(b: CacheBuilder<K, V, S>) -> Self {
        Self::with_refresher(b, None)
    }

    pub(crate) fn with_refresher(
        b: CacheBuilder<K, V, S>,
        refresh: Option<Refresher<K, V>>,
    ) -> Self {
        let max_capacity = b.max_capacity.unwrap_or(u64::MAX);
        // Never more shards than capacity, so every shard holds at least one.
        let shards = b.shard_count().min(prev_power_of_two(max_capacity));
        let per_shard = max_capacity / shards as u64;
        let remainder = max_capacity % shards as u64;
        let unit = matches!(b.weigher, Weights::Unit);
        // Tables start small and grow with the entries: presized for a large
        // capacity they would be sparse while the cache fills, and a sparse
        // table misses the CPU cache on every lookup (10k keys in a cache
        // built for 1M: GETs 1.7x slower). Growth doubles, so a full shard
        // ends at the same size either way.
        // One slot more than the capacity: an insert takes its slot before
        // its eviction frees one, and a slab presized to the capacity
        // doubled at the first eviction (a 100k-entry cache held about 16
        // bytes per entry of slab it never used).
        // At most 2^18 slots presized over all shards (4,096 a shard at
        // the default 64): 65,536 shards presized 4,096 each held gigabytes
        // before the first insert.
        let presize = if unit {
            per_shard
                .saturating_add(1)
                .min(1 << 12)
                .min((PRESIZED_SLOTS / shards as u64).max(1)) as usize
        } else {
            0
        };
        // An unbounded cache never evicts, so it never asks its sketch: it
        // gets the smallest (0), which keeps it from touching a large zeroed
        // allocation (at 65,536 shards the 16 KiB floor alone was a GiB).
        // So does a capacity no memory can fill (`max_capacity(u64::MAX)`
        // meant as "unbounded"): sized by capacity, its sketch and ghosts
        // took 160 MiB a shard, touched a page per key.
        // (A weigher's capacity is in its own units, bytes say: any bound
        // on it can fill.)
        let sketch_entries = match b.max_capacity {
            None => 0,
            Some(c) if unit && c > FILLABLE => 0,
            Some(_) if unit => per_shard.min(1 << 24) as usize,
            Some(_) => (WEIGHTED_ENTRIES / shards as u64).clamp(16, 1 << 12) as usize,
        };
        let seed = b.hasher.hash_one(0x5EED_u64);
        let budget = (b.shared_capacity && b.max_capacity.is_some())
            .then(|| Arc::new(crate::shard::Budget::new(max_capacity)));
        let fronts: Box<[_]> = if b.expired_first && budget.is_some() {
            (0..shards)
                .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)))
                .collect()
        } else {
            Box::default()
        };
        let readers = Arc::new(ReaderCounts::new(shards));
        let common = Arc::new(crate::policy::CommonShare::new(shards));
        let built: Arc<[_]> = (0..shards)
            .map(|i| {
                let state = b.policy.state(sketch_entries, &common);
                let capacity = match &budget {
                    Some(_) => max_capacity,
                    None => per_shard + u64::from((i as u64) < remainder),
                };
                let slab_bound = if unit {
                    usize::try_from(capacity).map_or(usize::MAX, |c| c.saturating_add(1))
                } else {
                    usize::MAX
                };
                let mut shard = Shard::new(
                    capacity,
                    state,
                    b.policy.can_evict(),
                    presize,
                    slab_bound,
                    seed.wrapping_add(i as u64),
                );
                if let Some(budget) = &budget {
                    shard.share_budget(budget.clone());
                }
                if let Some(front) = fronts.get(i) {
                    shard.order_deadlines(front.clone());
                }
                CacheAligned(ShardLock::new(shard, i as u32, readers.clone()))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards: built,
                mask: shards - 1,
                hasher: b.hasher,
                weights: b.weigher,
                clock: Millis::new(b.clock),
                ttl: WriteTtl::new(b.expire_after, b.ttl),
                tti: b.tti.map(crate::shard::expiry::ttl_ms),
                hits: b.policy.hit_count(),
                listener: b.listener,
                stats: StatsCounters::new(),
                max_capacity,
                budget,
                fronts,
                log_evictions: b.log_evictions,
                flights: Flights::new(shards),
                journal: std::sync::OnceLock::new(),
                refresh: refresh.map(Box::new),
            }),
        }
    }
}

/// The largest power of two not above `n` (n ≥ 1), as a shard count.
fn prev_power_of_two(n: u64) -> usize {
    let p = 1u64 << (63 - n.max(1).leading_zeros());
    usize::try_from(p).unwrap_or(1 << 16).min(1 << 16)
}
