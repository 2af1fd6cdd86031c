//! Atomic reads of several keys, across shards: [`Cache::read_batch`],
//! what `KvStore`'s `MGET` and multi-key `EXISTS` and `TOUCH` stand on.
//!
//! A read batch takes the read locks of every shard its keys live in, each
//! once, in ascending shard index (see `locked.rs`), reads every key, and
//! releases them. A [`write_batch`](Cache::write_batch) holds the write
//! locks of all its keys' shards while it applies its writes, so a read
//! batch that shares a key with it sees all of the batch's writes or none;
//! a single-key write changes one key under one lock, which the read batch
//! sees before or after. Every key is read at one reading of the clock.
//!
//! Holding several read locks on one thread is sound under the shard lock:
//! a reader's count is one counter per (thread slot, shard), so the guards
//! of different shards raise different counters, as readers on different
//! threads would; the one rule for readers, never to take a read lock on a
//! shard the thread already holds, is kept by locking each shard once.
//!
//! No wait of a read batch closes a cycle with the cache's own locking:
//! every thread that holds one shard and waits for another (a write batch,
//! a read batch, [`clear`](Cache::clear)) holds only shards below the one it
//! waits for, single-key reads and writes wait for no second shard, and the
//! cross-shard eviction of [`make_room`](Cache::make_room) only tries locks.
//! A writer that closed a shard and waits for its readers to leave waits
//! for read batches that wait, in turn, only for higher shards. So, from
//! the highest shard down, every wait ends. As with write batches, user
//! code the cache runs under a shard's lock (a `compute` closure) that
//! calls the cache could close a cycle through a batch that the graph of
//! waits does not see (a batch's locks are not held in user code): batches
//! are for callers whose caches run no such code (`KvStore`). A batch's own
//! waits for a shard are registered in the graph as any other's are.

use super::Cache;
use crate::shard::{LazyNow, Lookup, Shard};
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

/// How a [`read_batch`](Cache::read_batch) counts its reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAs {
    /// As [`get`](Cache::get): an access for the eviction policy (and the
    /// time-to-idle), and a hit or a miss in the statistics.
    Access,
    /// As [`contains_key`](Cache::contains_key): neither.
    Peek,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Reads several keys as one step: with every one of their shards
    /// read-locked at once, calls `read` on each key's live value (in the
    /// order of `keys`, which may repeat) and answers its result, `None`
    /// for a key absent or expired. Expiry is judged at one reading of the
    /// clock, as [`get`](Self::get) judges it for [`ReadAs::Access`] and
    /// [`contains_key`](Self::contains_key) for [`ReadAs::Peek`]; an
    /// access starts no refresh-ahead reload.
    ///
    /// `read` runs under shard locks and must not call the cache.
    pub(crate) fn read_batch<Q, R>(
        &self,
        keys: &[&Q],
        as_: ReadAs,
        mut read: impl FnMut(&V) -> R,
    ) -> Vec<Option<R>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = LazyNow::new(|| self.inner.clock.now_past());
        let found: Vec<Option<R>> = {
            let locked = self.read_lock_keys(keys.iter().copied());
            keys.iter()
                .enumerate()
                .map(|(i, key)| {
                    let shard = locked.shard(i);
                    self.read_live(shard, locked.hash(i), key, &now, as_, &mut read)
                })
                .collect()
        };
        if as_ == ReadAs::Access {
            for f in &found {
                self.inner.stats.bump_lookup(f.is_some());
            }
        }
        found
    }

    /// `read` on `key`'s live value in its read-locked `shard`.
    fn read_live<Q, R, F: Fn() -> (u64, bool)>(
        &self,
        shard: &Shard<K, V>,
        hash: u64,
        key: &Q,
        now: &LazyNow<F>,
        as_: ReadAs,
        read: &mut impl FnMut(&V) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (tti, hits) = (self.inner.tti, self.inner.hits);
        if as_ == ReadAs::Access && self.refresher().is_none() {
            // What `get` does, in one lookup.
            return match shard.get(hash, key, now, tti, hits) {
                Lookup::Hit(v) => Some(read(v)),
                Lookup::Miss | Lookup::Expired => None,
            };
        }
        let found = shard.peek(hash, key, now, tti)?;
        // Past its time to live, an entry kept for the refresh windows is
        // served as `get` serves it (stale, within the window), and is gone
        // to a peek, as `contains_key` judges it.
        let served = match (as_, self.refresher()) {
            (_, None) => true,
            (ReadAs::Access, Some(r)) => r.freshness(found.deadline, now.get()).is_some(),
            (ReadAs::Peek, Some(_)) => self.visible(found.deadline, now.get()),
        };
        if !served {
            return None;
        }
        if as_ == ReadAs::Access {
            let _ = shard.get(hash, key, now, tti, hits);
        }
        Some(read(found.value))
    }
}

#[cfg(test)]
#[path = "read_batch_tests.rs"]
mod tests;
