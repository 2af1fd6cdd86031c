//! Each entry's weight, as the weigher gave it when the entry was written.
//!
//! The shard's total is the sum of these, so an entry that leaves takes
//! away exactly what it brought. Asking the weigher again at removal would
//! not: a weigher whose answer changed in between (a value with interior
//! mutability, a setting read at each call) would unbalance the total, and
//! with unsigned arithmetic one that now answers more would wrap it past
//! any capacity, after which the shard evicts everything it is given; a
//! weigher that panics would do so halfway through a removal. Under unit
//! weights nothing is stored.

use super::{Env, Shard};
use crate::weigher::Weights;

impl<K, V> Shard<K, V> {
    /// The weight token `idx` was given when it was last written.
    #[inline]
    pub(crate) fn weight_at<S>(&self, env: &Env<'_, K, V, S>, idx: u32) -> u64 {
        self.stored_weight(env.weights, idx)
    }

    /// [`weight_at`](Self::weight_at), given the cache's weights alone.
    #[inline]
    pub(super) fn stored_weight(&self, weights: &Weights<K, V>, idx: u32) -> u64 {
        if weights.is_unit() {
            1
        } else {
            u64::from(self.weights[idx as usize])
        }
    }

    /// Records `weight` (a weigher's `u32`) as token `idx`'s. Always
    /// inlined, so that under unit weights a write pays one test.
    #[inline(always)]
    pub(super) fn remember_weight<S>(&mut self, env: &Env<'_, K, V, S>, idx: u32, weight: u64) {
        if !env.weights.is_unit() {
            self.store_weight(idx, weight);
        }
    }

    /// [`remember_weight`](Self::remember_weight) under a custom weigher.
    fn store_weight(&mut self, idx: u32, weight: u64) {
        let i = idx as usize;
        if i >= self.weights.len() {
            self.weights.resize(i + 1, 0);
        }
        self.weights[i] = u32::try_from(weight).unwrap_or(u32::MAX);
    }
}
