//! The shards a batch ([`Cache::write_batch`]) holds: their write locks,
//! taken in ascending shard index, the keys they spare from eviction while
//! the batch applies, and room made in them for one of the batch's inserts.
//!
//! Owns [`Locked`]; calls the shards under the locks it holds.

use super::locked::WriteLocked;
use super::Cache;
use crate::listener::Removed;
use crate::shard::{Env, Inserted};
use crate::weigher::Weight;
use std::hash::{BuildHasher, Hash};
use std::ops::{Deref, DerefMut};

/// The shards of a batch's keys, write-locked in ascending index (see
/// `locked.rs`). Dropping it lifts what its shards spare
/// ([`spare_batch`](Self::spare_batch)) before the locks go.
pub(super) struct Locked<'c, K: Hash + Eq + 'static, V: 'static>(WriteLocked<'c, K, V>);

impl<'c, K: Hash + Eq + 'static, V: 'static> Deref for Locked<'c, K, V> {
    type Target = WriteLocked<'c, K, V>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<K: Hash + Eq + 'static, V: 'static> DerefMut for Locked<'_, K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<K: Hash + Eq + 'static, V: 'static> Locked<'_, K, V> {
    /// Makes every key of the batch, present or not, one its shard's
    /// evictions pass over until the locks are released: the room for the
    /// batch's inserts is made from other keys.
    pub(super) fn spare_batch(&mut self) {
        let mut per_shard = vec![Vec::new(); self.guards.len()];
        for i in 0..self.at_len() {
            per_shard[self.guard(i)].push(self.hash(i));
        }
        for (guard, hashes) in self.0.guards.iter_mut().zip(per_shard) {
            guard.spare_keys(hashes.into_iter());
        }
    }
}

impl<K: Hash + Eq + 'static, V: 'static> Drop for Locked<'_, K, V> {
    fn drop(&mut self) {
        for g in &mut self.0.guards {
            g.spare_none();
        }
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Write-locks the shards of `keys`, in ascending shard index, for a
    /// batch.
    pub(super) fn lock_keys<'q, Q>(&self, keys: impl Iterator<Item = &'q Q>) -> Locked<'_, K, V>
    where
        Q: Hash + ?Sized + 'q,
    {
        Locked(self.write_lock_keys(keys))
    }

    /// Stores `value` as key `i` of a batch (see
    /// [`insert_with_room`](Self::insert_with_room), which evicts from the
    /// key's shard and from the shards the batch does not hold). If that
    /// is refused under a shared budget, the batch's other locked shards
    /// give room too (by their policies, sparing the batch's keys), and
    /// the insert is tried once more. `weight` is the value's, weighed as
    /// the batch was planned: the weigher is not asked again.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_in_batch(
        &self,
        locked: &mut Locked<'_, K, V>,
        key: K,
        i: usize,
        value: V,
        weight: u64,
        deadline: Option<u64>,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) -> Result<Inserted, (K, V)> {
        let (h, s) = (locked.hash(i), locked.shard_index(i));
        let shard = locked.shard_mut(i);
        let known = Weight::Known(weight);
        let (key, value) =
            match self.insert_with_room(s, shard, env, h, key, value, known, deadline, removed) {
                Err(refused) if locked.guards.len() > 1 => refused,
                done => return done,
            };
        let Some(budget) = self.budget() else {
            return Err((key, value));
        };
        let shard = locked.shard_mut(i);
        let need = weight.saturating_sub(shard.weight_of(env, h, &key));
        let mine = locked.guard(i);
        let shards = &mut locked.0;
        for (g, &o) in shards.order.iter().enumerate() {
            if g == mine {
                continue;
            }
            let other_env = self.write_env(o);
            other_env.now_ms.set(Some(env.now()));
            let other = &mut shards.guards[g];
            while budget.available() < need && other.evict_one(&other_env, removed) {}
        }
        let shard = locked.shard_mut(i);
        self.insert_with_room(s, shard, env, h, key, value, known, deadline, removed)
    }
}
