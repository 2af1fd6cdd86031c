//! Removing many entries at once from one shard: Redis-style sampling of
//! expired entries on writes, a full purge, `retain`, and `clear`.
//!
//! Owns no state of its own; calls the shard's removal path, which tells the
//! policy.

use super::{Env, RemovalCause, Removed, Shard};
use std::hash::{BuildHasher, Hash};

impl<K, V> Shard<K, V>
where
    K: Hash + Eq + 'static,
    V: 'static,
{
    /// Samples entries that can expire and removes the expired ones (Redis's
    /// active expiry): rounds of 8 samples, another round only while more than a
    /// quarter of the last one was expired, at most 4 rounds. Under ordered
    /// deadlines (see [`order_deadlines`](Self::order_deadlines)) every
    /// entry past its deadline is removed instead, without sampling.
    #[inline]
    pub(crate) fn expire_some<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) {
        // Under ordered deadlines, every entry past its deadline leaves
        // (idle entries are still sampled).
        let ordered = self.expiring.is_ordered();
        if ordered {
            self.expire_due(env, removed);
        }
        if env.tti.is_some() || (!ordered && !self.expiring.is_empty()) {
            self.sample_expired(env, removed);
        }
    }

    /// Under ordered deadlines, removes every entry whose deadline has
    /// passed, earliest first, and stops at the first that may still be
    /// read (within its refresh windows). Out of line: only the caches
    /// that order their deadlines call it.
    #[inline(never)]
    fn expire_due<S: BuildHasher>(&mut self, env: &Env<'_, K, V, S>, removed: &mut Removed<K, V>) {
        while let Some((deadline, idx)) = self.expiring.first_due() {
            if !super::expiry::is_expired(deadline, env.now()) || !self.is_expired_now(idx, env) {
                break;
            }
            let (k, v) = self.remove_at(env, idx);
            removed.push((k, v, RemovalCause::Expired));
        }
    }

    fn sample_expired<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) {
        for _ in 0..4 {
            let mut expired = 0;
            for _ in 0..8 {
                let r = self.next_random();
                let idx = if env.tti.is_some() {
                    if self.table.is_empty() {
                        return;
                    }
                    let idx = (r % self.entries.len() as u64) as u32;
                    if self.entries[idx as usize].is_none() {
                        continue;
                    }
                    idx
                } else {
                    match self.expiring.sample(r) {
                        Some(idx) => idx,
                        None => return,
                    }
                };
                if self.is_expired_now(idx, env) {
                    let (k, v) = self.remove_at(env, idx);
                    removed.push((k, v, RemovalCause::Expired));
                    expired += 1;
                }
            }
            if expired <= 2 {
                return;
            }
        }
    }

    pub(super) fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Removes every expired entry among those that can expire.
    pub(crate) fn purge_expired<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) {
        let candidates: Vec<u32> = if env.tti.is_some() {
            self.occupied().collect()
        } else {
            self.expiring.tokens().to_vec()
        };
        for idx in candidates {
            if self.is_expired_now(idx, env) {
                let (k, v) = self.remove_at(env, idx);
                removed.push((k, v, RemovalCause::Expired));
            }
        }
    }

    /// Keeps the entries for which `keep` returns true; the rest, and every
    /// reclaimable expired entry, go to `removed`. An entry kept past its
    /// time to live for the refresh windows is asked about too (so that a
    /// stale read no longer serves what `keep` refused), and leaves as
    /// expired. `dropped` is told of each entry `keep` refused, before it
    /// goes to `removed`.
    pub(crate) fn retain<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        mut keep: impl FnMut(&K, &V) -> bool,
        mut dropped: impl FnMut(&K),
        removed: &mut Removed<K, V>,
    ) {
        let tokens: Vec<u32> = self.occupied().collect();
        for idx in tokens {
            let reclaim = self.is_expired_now(idx, env);
            if !reclaim {
                let e = self.entry(idx);
                if keep(&e.key, &e.value) {
                    continue;
                }
                dropped(&e.key);
            }
            let cause = if reclaim || self.is_past_now(idx, env) {
                RemovalCause::Expired
            } else {
                RemovalCause::Removed
            };
            let (k, v) = self.remove_at(env, idx);
            if !reclaim && self.loads.any() {
                self.loads.overtake(env.hasher.hash_one(&k));
            }
            removed.push((k, v, cause));
        }
    }

    /// Empties the shard into `removed`; every load in flight is overtaken.
    pub(crate) fn clear(&mut self, removed: &mut Removed<K, V>) {
        // The policy first: a custom one that panics leaves the entries,
        // the table and the weights as they were, in step with each other.
        self.policy.clear();
        self.loads.overtake_all();
        self.table.clear();
        self.free.clear();
        self.idle.clear();
        self.weights.clear();
        self.expiring.clear();
        if let Some(b) = &self.budget {
            b.release(self.weight);
        }
        self.weight = 0;
        removed.extend(
            self.entries
                .drain(..)
                .flatten()
                .map(|e| (e.key, e.value, RemovalCause::Removed)),
        );
    }
}
