//! Eviction to the shard's capacity, and the keys eviction passes over: a
//! batch's own keys, while it applies.
//!
//! A batch ([`Cache::write_batch`](crate::Cache)) holds the locks of its
//! keys' shards and makes room for its inserts by evicting as any write
//! does; a key it wrote or keeps (a `COPY`'s source) must not be the room.
//! It names them with [`spare_keys`](Shard::spare_keys) and lifts that with
//! [`spare_none`](Shard::spare_none) before it releases the lock. Every
//! eviction of the shard asks for its victim through
//! [`next_victim`](Shard::next_victim), which costs one flag's test while
//! nothing is spared; an insert's eviction to capacity tests it once.
//! Calls the policy; nothing above the shard.

use super::{Env, RemovalCause, Removed, Shard, SlabView};
use std::hash::{BuildHasher, Hash};

impl<K, V> Shard<K, V>
where
    K: Hash + Eq + 'static,
    V: 'static,
{
    /// Passes over the keys hashed `hashes` when evicting, until
    /// [`spare_none`](Self::spare_none). Call under the shard's write lock.
    /// The hashes are kept sorted, so that a test against them costs a
    /// binary search however many keys a batch spares.
    pub(crate) fn spare_keys(&mut self, hashes: impl Iterator<Item = u64>) {
        self.spare.extend(hashes);
        self.spare.sort_unstable();
        self.spare.dedup();
        self.sparing = !self.spare.is_empty();
    }

    /// Spares nothing any more. Call before the shard's lock is released.
    pub(crate) fn spare_none(&mut self) {
        self.spare.clear();
        self.sparing = false;
    }

    /// Evicts by the policy until the shard's weight is within its capacity
    /// (or the policy names no victim), to `removed`.
    #[inline(always)]
    pub(super) fn evict_to_capacity<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) {
        if self.sparing {
            return self.evict_sparing(env, removed);
        }
        while self.weight > self.capacity {
            let victim = self.policy.victim(&mut SlabView {
                entries: &mut self.entries,
                hasher: env.hasher,
            });
            let Some((v, hash)) = victim else { break };
            let (k, val) = self.remove_hashed(env, v, hash);
            removed.push((k, val, RemovalCause::Evicted));
        }
    }

    /// Whether the shard is still over its capacity after an eviction to
    /// it, with the entry just written at `idx` in it: the policy named no
    /// victim (a custom policy's `None`, or a token that is not live; a
    /// `volatile-*` policy with no entry that expires), so the write is
    /// refused, as `noeviction` refuses one. Under a shared budget the room
    /// is found before the write (see `budget.rs`).
    #[inline(always)]
    pub(super) fn over_with(&self, idx: u32) -> bool {
        self.weight > self.capacity
            && self.budget.is_none()
            && self.entries.get(idx as usize).is_some_and(Option::is_some)
    }

    /// Puts the replaced value `old` back in entry `idx` (with its weight
    /// and deadline), and hands back the value that replaced it: a
    /// replacement the policy found no room for is refused.
    #[cold]
    #[inline(never)]
    pub(super) fn take_back_replaced<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        idx: u32,
        old: V,
        old_weight: u64,
        old_deadline: Option<u64>,
    ) -> V {
        let new_weight = self.weight_at(env, idx);
        let new = std::mem::replace(&mut self.entry_mut(idx).value, old);
        self.remember_weight(env, idx, old_weight);
        self.weight = self.weight - new_weight + old_weight;
        self.set_deadline(idx, old_deadline);
        new
    }

    /// [`evict_to_capacity`](Self::evict_to_capacity) while keys are spared.
    #[cold]
    #[inline(never)]
    fn evict_sparing<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) {
        while self.weight > self.capacity {
            let Some((v, hash)) = self.victim_sparing(env) else {
                break;
            };
            let (k, val) = self.remove_hashed(env, v, hash);
            removed.push((k, val, RemovalCause::Evicted));
        }
    }

    /// The policy's next victim and its key's hash when known, passing over
    /// the spared keys (see [`PolicyState::victim_sparing`]); `None` if the
    /// policy names no entry it may evict.
    ///
    /// [`PolicyState::victim_sparing`]: crate::policy::PolicyState::victim_sparing
    #[inline(always)]
    pub(super) fn next_victim<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
    ) -> Option<(u32, Option<u64>)> {
        if self.sparing {
            return self.victim_sparing(env);
        }
        self.policy.victim(&mut SlabView {
            entries: &mut self.entries,
            hasher: env.hasher,
        })
    }

    /// [`next_victim`](Self::next_victim) while keys are spared: the
    /// policy's choice among the entries not spared, else (a policy that
    /// kept naming spared ones) the first entry of the slab not spared, so
    /// an evicting shard holding other keys always gives one up.
    #[cold]
    #[inline(never)]
    fn victim_sparing<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
    ) -> Option<(u32, Option<u64>)> {
        let chosen = self.policy.victim_sparing(
            &mut SlabView {
                entries: &mut self.entries,
                hasher: env.hasher,
            },
            &self.spare,
            env.hits,
        );
        if chosen.is_some() || !self.can_evict {
            return chosen;
        }
        self.entries.iter().enumerate().find_map(|(idx, e)| {
            let hash = env.hasher.hash_one(&e.as_ref()?.key);
            (self.spare.binary_search(&hash).is_err()).then_some((idx as u32, Some(hash)))
        })
    }
}
