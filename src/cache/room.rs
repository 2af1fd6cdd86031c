//! Making room across shards for one capacity shared by every shard
//! (Redis's `maxmemory` is one number for the whole store, not a share per
//! shard).
//!
//! Owns the cross-shard step of a write: when the shared
//! [`Budget`](crate::shard::Budget) has no room, evict by the policy in the
//! writer's own shard first (never the key being written), and then, through
//! [`Cache::make_room`], in the other shards, only ever trying their locks.
//! Calls the shards (under their locks) and nothing above the cache.

use crate::cache::Cache;
use crate::callback::Held;
use crate::listener::Removed;
use crate::shard::{Budget, Env, Inserted, Shard};
use std::hash::{BuildHasher, Hash};

/// How many passes over the other shards a write makes to find room.
const PASSES: usize = 2;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Called with shard `s` write-locked, before a write that grows it by
    /// `need`: evicts by the policy from the other shards until the shared
    /// budget has `need` units free, or nothing more can be evicted. Other
    /// shards are only tried (`try_write`), never waited for, so two writers
    /// holding each other's shard cannot deadlock; a shard busy at that
    /// moment is skipped. Evicted entries go to `removed`.
    pub(crate) fn make_room(&self, s: usize, need: u64, removed: &mut Removed<K, V>) {
        let Some(budget) = self.budget() else {
            return;
        };
        let n = self.shard_count();
        for _ in 0..PASSES {
            let mut progress = false;
            for o in (1..n).map(|i| (s + i) % n) {
                if budget.available() >= need {
                    return;
                }
                let Some(mut other) = self.shard(o).try_write() else {
                    continue;
                };
                let env = self.write_env(o);
                while budget.available() < need && other.evict_one(&env, removed) {
                    progress = true;
                }
            }
            if !progress {
                return;
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
    /// Inserts `key` = `value` into shard `s` (held as `shard`), making
    /// room in the shared budget if there is one: when this shard's own
    /// evictable weight cannot cover the growth, the other shards are asked
    /// first (see [`make_room`](Self::make_room)); and if the insert is still
    /// refused (the policy kept naming entries it may not evict), they are
    /// asked for the whole growth and the insert is tried once more.
    ///
    /// `hidden` is weight the weigher cannot see in `value` (see
    /// [`compute_slot`](Self::compute_slot)); 0 for every other write.
    ///
    /// Always inlined: the call alone, ten arguments partly on the stack,
    /// cost about 30 instructions per insert.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn insert_with_room(
        &self,
        s: usize,
        shard: &mut Shard<K, V>,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: K,
        value: V,
        hidden: u64,
        deadline: Option<u64>,
        removed: &mut Removed<K, V>,
    ) -> Result<Inserted, (K, V)> {
        match self.budget() {
            None => shard.insert(env, hash, key, value, hidden, deadline, removed),
            Some(budget) => self.insert_in_budget(
                budget, s, shard, env, hash, key, value, hidden, deadline, removed,
            ),
        }
    }

    /// [`insert_with_room`](Self::insert_with_room) with a shared budget.
    #[allow(clippy::too_many_arguments)]
    fn insert_in_budget(
        &self,
        budget: &Budget,
        s: usize,
        shard: &mut Shard<K, V>,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: K,
        value: V,
        hidden: u64,
        deadline: Option<u64>,
        removed: &mut Removed<K, V>,
    ) -> Result<Inserted, (K, V)> {
        let weight = env
            .weights
            .weigh(&key, &value, hidden, Held::of(&mut *shard));
        // Heavier than the whole budget: it could never fit, so nothing is
        // evicted for it.
        if weight > self.max_capacity() {
            return Err((key, value));
        }
        // Room for the whole entry: no need to look up what it replaces.
        if budget.available() < weight {
            let old = shard.weight_of(env, hash, &key);
            let need = weight.saturating_sub(old);
            let own_spare = shard.weight().saturating_sub(old);
            if need > budget.available().saturating_add(own_spare) {
                self.make_room(s, need.saturating_sub(own_spare), removed);
            }
        }
        match shard.insert(env, hash, key, value, hidden, deadline, removed) {
            Err((key, value)) if weight <= self.max_capacity() => {
                let need = weight.saturating_sub(shard.weight_of(env, hash, &key));
                self.make_room(s, need, removed);
                shard.insert(env, hash, key, value, hidden, deadline, removed)
            }
            done => done,
        }
    }
}
