//! Planning a batch (see `batch.rs`): which of its writes change
//! something, with their deadlines and weights; whether they could ever fit
//! together; and the order that frees room before taking it.
//!
//! Reads the locked shards and the weigher (once per value stored, here:
//! the weight goes with the step to the checks and the insert); writes
//! nothing.

use super::batch::{BatchWrite, Plan, Step};
use super::batch_locked::Locked;
use super::Cache;
use crate::callback::Held;
use crate::compute::Ttl;
use crate::shard::Env;
use std::hash::{BuildHasher, Hash};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// The writes of `writes` that change something, with their deadlines
    /// and weights, in the order that frees room first (see
    /// [`freeing_first`](Self::freeing_first)): the order they are applied,
    /// logged and replayed in.
    pub(super) fn plan(
        &self,
        locked: &mut Locked<'_, K, V>,
        keys: &[K],
        idx: &[Option<u32>],
        writes: Vec<BatchWrite<V>>,
        env: &Env<'_, K, V, S>,
    ) -> Plan<V> {
        let mut plan = Vec::with_capacity(writes.len());
        for (i, write) in writes.into_iter().enumerate().take(idx.len()) {
            match write {
                BatchWrite::Keep => {}
                BatchWrite::Remove if idx[i].is_none() => {}
                BatchWrite::Remove => plan.push((i, Step::Remove)),
                BatchWrite::Put(v, ttl) => {
                    let deadline = match ttl {
                        Ttl::Keep => idx[i].and_then(|ix| locked.shard(i).at(ix).deadline),
                        Ttl::Never => None,
                        Ttl::After(d) => self.stored_deadline(Some(env.deadline_after(d))),
                    };
                    let shard = locked.shard_mut(i);
                    let weight = self.inner.weights.weigh(&keys[i], &v, 0, Held::of(shard));
                    plan.push((i, Step::Put(v, deadline, weight)));
                }
                BatchWrite::Move(j) => {
                    // The weight the weigher cannot see in the value moves
                    // with it; what it sees is weighed under the new key.
                    if let Some(Some(from)) = idx.get(j).copied() {
                        let (value, deadline, all) = self.held(locked, keys, j, from, env);
                        let weights = &self.inner.weights;
                        let seen =
                            weights.weigh(&keys[j], &value, 0, Held::of(locked.shard_mut(j)));
                        let hidden = all.saturating_sub(seen);
                        let shard = locked.shard_mut(i);
                        let weight = weights.weigh(&keys[i], &value, hidden, Held::of(shard));
                        plan.push((i, Step::Put(value, deadline, weight)));
                    }
                }
            }
        }
        self.freeing_first(locked, keys, plan, env)
    }

    /// Whether the values `plan` stores weigh more than the cache can hold
    /// (all of them under a shared budget, those of one shard against its
    /// share otherwise): they could never be stored together, so the batch
    /// is refused before anything changes, rather than after evicting
    /// everything else to find out.
    pub(super) fn too_heavy(&self, locked: &Locked<'_, K, V>, plan: &Plan<V>) -> bool {
        let mut per_shard = vec![0u64; locked.guards.len()];
        for (i, step) in plan {
            if let Step::Put(_, _, weight) = step {
                let g = locked.guard(*i);
                per_shard[g] = per_shard[g].saturating_add(*weight);
            }
        }
        if self.budget().is_some() {
            let total = per_shard.iter().fold(0u64, |t, &w| t.saturating_add(w));
            return total > self.max_capacity();
        }
        per_shard
            .iter()
            .zip(locked.guards.iter())
            .any(|(&w, shard)| w > shard.capacity())
    }

    /// `plan` in the order that frees room before taking it: removals, then
    /// the values that weigh less than what their key holds, then the rest
    /// by how much they add. The batch's keys are distinct and it applies
    /// as one step, so the order changes nothing but whether the room is
    /// there: an `MSET` that swaps two values' sizes on a full store needs
    /// none, and a `RENAME` gives its source's room to its destination.
    pub(super) fn freeing_first(
        &self,
        locked: &mut Locked<'_, K, V>,
        keys: &[K],
        plan: Plan<V>,
        env: &Env<'_, K, V, S>,
    ) -> Plan<V> {
        if plan.len() < 2 || self.budget().is_none() {
            return plan;
        }
        let mut ranked: Vec<(i128, (usize, Step<V>))> = plan
            .into_iter()
            .map(|(i, step)| {
                let adds = match &step {
                    Step::Remove => i128::MIN,
                    Step::Put(_, _, new) => {
                        let h = locked.hash(i);
                        let old = locked.shard(i).weight_of(env, h, &keys[i]);
                        i128::from(*new) - i128::from(old)
                    }
                };
                (adds, (i, step))
            })
            .collect();
        // Stable: writes that add as much keep the batch's order.
        ranked.sort_by_key(|&(adds, _)| adds);
        ranked.into_iter().map(|(_, write)| write).collect()
    }
}

#[cfg(test)]
#[path = "batch_plan_tests.rs"]
mod tests;
