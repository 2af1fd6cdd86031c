//! Cursor iteration over the whole cache, with Redis's `SCAN` guarantee.
//!
//! A cursor is a shard (low 16 bits) and a home slot of that shard's table
//! (the bits above). Shards are walked in order and each one's table in
//! reverse-binary order of home slots (see `shard/table/scan.rs`), so an entry
//! present from the first call to the last is returned at least once, even
//! when tables grow or entries come and go in between; entries added or
//! removed meanwhile may or may not be. A call holds one shard's read lock at
//! a time and does work in proportion to its `count`: it stops after `count`
//! entries or `10 × count` home slots, whichever comes first.

use crate::cache::Cache;
use crate::shard::{LazyNow, ScanBudget};
use std::hash::{BuildHasher, Hash};

/// Bits of a cursor that name the shard (shard counts are at most 2^16).
const SHARD_BITS: u32 = 16;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// One `SCAN` step from `cursor` (0 to start): calls `f` on about `count`
    /// live entries (key, value, whether it has an expiry) and returns the cursor to pass next, 0 when the walk is
    /// complete. A cursor this cache did not hand out is not an error: it
    /// resumes at some point of the walk, or ends it.
    pub(crate) fn scan_step(
        &self,
        cursor: u64,
        count: usize,
        mut f: impl FnMut(&K, &V, bool),
    ) -> u64 {
        let shards = self.shard_count() as u64;
        let mut shard = cursor & ((1 << SHARD_BITS) - 1);
        let mut home = cursor >> SHARD_BITS;
        if shard >= shards {
            return 0;
        }
        let count = count.max(1);
        let mut budget = ScanBudget {
            entries: count,
            homes: count.saturating_mul(10),
        };
        let (hasher, tti, clock) = self.read_env();
        let now = LazyNow::new(|| clock.now_past());
        loop {
            let next = {
                let guard = self.shard(shard as usize).read();
                // An empty shard is done at once (so is an empty cache, as in Redis).
                if guard.len() == 0 {
                    0
                } else {
                    guard.scan(home, hasher, &now, tti, &mut budget, |k, v, d| {
                        f(k, v, d.is_some())
                    })
                }
            };
            if next != 0 {
                return next << SHARD_BITS | shard;
            }
            shard += 1;
            home = 0;
            if shard == shards {
                return 0;
            }
            if budget.entries == 0 || budget.homes == 0 {
                return shard;
            }
        }
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Calls `f` on every live entry (key, value, whether it has an expiry),
    /// holding one shard's read lock at a time for a bounded step, and
    /// copying nothing. Entries written meanwhile may or may not be seen.
    pub(crate) fn for_each_entry(&self, mut f: impl FnMut(&K, &V, bool)) {
        let mut cursor = 0;
        loop {
            cursor = self.scan_step(cursor, 1024, &mut f);
            if cursor == 0 {
                return;
            }
        }
    }
}
