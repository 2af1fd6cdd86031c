//! The capacity shared by all shards, and a shard's side of it: reserving
//! before growing, and evicting to make room.
//!
//! Each shard keeps its own weight; a [`Budget`] holds their sum. A shard
//! adds to it only through [`Budget::try_reserve`], which never lets the sum
//! pass the limit, so two writers racing for the last bytes cannot both get
//! them; every weight a shard drops is given back with [`Budget::release`].
//! Calls the policy (for victims) and nothing above the shard.

use super::{Env, RemovalCause, Removed, Shard};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared capacity: a limit and the weight every shard holds together.
#[derive(Debug)]
pub(crate) struct Budget {
    max: u64,
    used: AtomicU64,
}

impl Budget {
    pub(crate) fn new(max: u64) -> Self {
        Self {
            max,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `n` more units if the sum stays within the limit.
    pub(crate) fn try_reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    /// Gives back `n` units a shard no longer holds.
    pub(crate) fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Units not yet taken.
    pub(crate) fn available(&self) -> u64 {
        self.max.saturating_sub(self.used.load(Ordering::Acquire))
    }
}

impl<K, V> Shard<K, V>
where
    K: Hash + Eq + 'static,
    V: 'static,
{
    /// Reserves `need` in the shared budget (if any), evicting by the policy
    /// from this shard (never the entry at `keep`, nor a key it spares: see
    /// `spare.rs`) while it does not fit.
    /// False if it still does not fit: nothing was reserved.
    #[inline]
    pub(super) fn admit<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        need: u64,
        keep: Option<u32>,
        removed: &mut Removed<K, V>,
    ) -> bool {
        self.budget.is_none() || self.admit_shared(env, need, keep, removed)
    }

    /// [`admit`](Self::admit) with a shared budget.
    fn admit_shared<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        need: u64,
        keep: Option<u32>,
        removed: &mut Removed<K, V>,
    ) -> bool {
        let Some(budget) = self.budget.clone() else {
            return true;
        };
        if self.take_room(&budget, need) {
            return true;
        }
        self.expire_some(env, removed);
        // How often the policy may name the entry being written before the
        // write gives up (a sampling policy names another on the next try).
        let mut named_keep = 0;
        loop {
            if self.take_room(&budget, need) {
                return true;
            }
            // An emptied shard has nothing more to give (and `lru`'s ring
            // has no tail to name).
            if !self.can_evict || self.table.is_empty() {
                return false;
            }
            match self.next_victim(env) {
                Some((v, hash)) if Some(v) != keep => {
                    let (k, val) = self.remove_hashed(env, v, hash);
                    removed.push((k, val, RemovalCause::Evicted));
                }
                Some(_) if named_keep < 16 && self.table.len() > 1 => named_keep += 1,
                _ => return false,
            }
        }
    }

    /// Reserves `need` units for a write, drawing first on what was
    /// prepaid for it; false (and nothing taken) if the budget is short.
    fn take_room(&mut self, budget: &Budget, need: u64) -> bool {
        let rest = need.saturating_sub(self.prepaid);
        if rest > 0 && !budget.try_reserve(rest) {
            return false;
        }
        self.prepaid = self.prepaid.saturating_sub(need);
        true
    }

    /// Hands this shard `units` of the shared budget, reserved by the
    /// caller for the write it is about to make (under the shard's write
    /// lock): that write takes them before it reserves anything, so a
    /// racing writer cannot take the room made for it. The caller gives
    /// back what the write left with [`refund`](Self::refund).
    pub(crate) fn prepay(&mut self, units: u64) {
        self.prepaid += units;
    }

    /// Gives back to the shared budget what was prepaid and not used.
    pub(crate) fn refund(&mut self) {
        if self.prepaid > 0 {
            if let Some(b) = &self.budget {
                b.release(self.prepaid);
            }
            self.prepaid = 0;
        }
    }

    /// Evicts one entry by the policy; false if the policy names none.
    pub(crate) fn evict_one<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) -> bool {
        if !self.can_evict || self.table.is_empty() {
            return false;
        }
        let Some((v, hash)) = self.next_victim(env) else {
            return false;
        };
        let (k, val) = self.remove_hashed(env, v, hash);
        removed.push((k, val, RemovalCause::Evicted));
        true
    }

    /// The weight of the live entry for `key` (0 if absent), for sizing a write.
    pub(crate) fn weight_of<S>(&self, env: &Env<'_, K, V, S>, hash: u64, key: &K) -> u64 {
        self.find(hash, key).map_or(0, |i| self.weight_at(env, i))
    }
}
