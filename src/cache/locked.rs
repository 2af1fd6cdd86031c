//! The shards of several keys, locked at once: what a multi-key write
//! ([`write_batch`](Cache::write_batch)) and a multi-key read
//! ([`read_batch`](Cache::read_batch)) hold while they look at their keys.
//!
//! Both take their shards' locks in ascending shard index, each shard once
//! however many of the keys live there, as [`clear`](Cache::clear) does:
//! one total order for every thread that holds more than one shard, so no
//! two of them wait for each other in a cycle (see `batch.rs` and
//! `read_batch.rs`). A wait for one of these locks goes through the shard
//! lock's slow path, which registers it in the graph of waits
//! (`lock_waits.rs`) when this thread runs user code under another lock or
//! leads a load, a rollback or a repair, as any other wait for a shard.

use super::Cache;
use crate::shard::Shard;
use crate::shard_lock::{ReadGuard, WriteGuard};
use std::hash::{BuildHasher, Hash};
use std::ops::{Deref, DerefMut};

/// The shards of a set of keys, locked with guards `G` in ascending shard
/// index, and where each key (by its index in the set) lives.
pub(super) struct Shards<G> {
    pub(super) guards: Vec<G>,
    /// The locked shards' indexes, ascending, as `guards` holds them.
    pub(super) order: Vec<usize>,
    /// Each key's hash and shard index.
    at: Vec<(u64, usize)>,
}

/// Shards write-locked, as a batch of writes holds them (`batch_locked.rs`
/// adds what the batch spares from eviction).
pub(super) type WriteLocked<'c, K, V> = Shards<WriteGuard<'c, Shard<K, V>>>;

/// Shards read-locked for a batch of reads.
pub(super) type ReadLocked<'c, K, V> = Shards<ReadGuard<'c, Shard<K, V>>>;

impl<G> Shards<G> {
    /// Key `i`'s hash.
    pub(super) fn hash(&self, i: usize) -> u64 {
        self.at[i].0
    }

    /// Key `i`'s shard index.
    pub(super) fn shard_index(&self, i: usize) -> usize {
        self.at[i].1
    }

    /// How many keys (repeats included) the shards were locked for.
    pub(super) fn at_len(&self) -> usize {
        self.at.len()
    }

    /// The position in `guards` of key `i`'s shard.
    pub(super) fn guard(&self, i: usize) -> usize {
        self.order.binary_search(&self.at[i].1).unwrap_or(0)
    }
}

impl<G, K, V> Shards<G>
where
    G: Deref<Target = Shard<K, V>>,
{
    /// Key `i`'s locked shard.
    pub(super) fn shard(&self, i: usize) -> &Shard<K, V> {
        &self.guards[self.guard(i)]
    }
}

impl<G, K, V> Shards<G>
where
    G: DerefMut<Target = Shard<K, V>>,
{
    /// Key `i`'s locked shard, to write.
    pub(super) fn shard_mut(&mut self, i: usize) -> &mut Shard<K, V> {
        let g = self.guard(i);
        &mut self.guards[g]
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Write-locks the shards of `keys`, in ascending shard index.
    pub(super) fn write_lock_keys<'q, Q>(
        &self,
        keys: impl Iterator<Item = &'q Q>,
    ) -> WriteLocked<'_, K, V>
    where
        Q: Hash + ?Sized + 'q,
    {
        self.lock_shards(keys, |s| self.shard(s).write())
    }

    /// Read-locks the shards of `keys`, in ascending shard index.
    pub(super) fn read_lock_keys<'q, Q>(
        &self,
        keys: impl Iterator<Item = &'q Q>,
    ) -> ReadLocked<'_, K, V>
    where
        Q: Hash + ?Sized + 'q,
    {
        self.lock_shards(keys, |s| self.shard(s).read())
    }

    /// Locks each shard of `keys` once with `lock`, in ascending index.
    fn lock_shards<'q, Q, G>(
        &self,
        keys: impl Iterator<Item = &'q Q>,
        lock: impl FnMut(usize) -> G,
    ) -> Shards<G>
    where
        Q: Hash + ?Sized + 'q,
    {
        let at: Vec<(u64, usize)> = keys.map(|k| self.locate(k)).collect();
        let mut order: Vec<usize> = at.iter().map(|&(_, s)| s).collect();
        order.sort_unstable();
        order.dedup();
        let guards = order.iter().copied().map(lock).collect();
        Shards { guards, order, at }
    }
}
