//! The shard's internal invariants, checked by the tests: every live
//! entry indexed under its own hash and linked by the policy, free slots and
//! live ones adding up to the slab, the total weight the sum of the stored
//! weights, the slab within its bound, and every entry in the expiry index
//! carrying a deadline.

use super::{meta, Shard};
use crate::callback::Held;
use crate::weigher::Weights;
use std::hash::{BuildHasher, Hash};

impl<K: Hash + Eq + 'static, V: 'static> Shard<K, V> {
    /// Checks the shard's internal invariants (tests and fuzzing).
    pub(crate) fn validate<S: BuildHasher>(&self, hasher: &S, weights: &Weights<K, V>) {
        let live = self.entries.iter().flatten().count();
        assert_eq!(live + self.free.len(), self.entries.len());
        assert_eq!(self.table.len(), live);
        assert_eq!(self.policy.linked(), live);
        let mut w = 0;
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(e) = e {
                assert_eq!(self.find(hasher.hash_one(&e.key), &e.key), Some(i as u32));
                // The tests' weighers answer the same every time; a write
                // may add weight they cannot see (`Cache::compute_slot`).
                let stored = self.stored_weight(weights, i as u32);
                let seen = weights.weigh(&e.key, &e.value, 0, Held::NONE);
                assert!(stored >= seen, "token {i}'s weight {stored} < {seen}");
                w += stored;
            }
        }
        assert_eq!(w, self.weight);
        assert!(
            self.entries.capacity() <= self.slab_bound.max(4),
            "slab of {} slots past its bound {}",
            self.entries.capacity(),
            self.slab_bound
        );
        for &t in self.expiring.tokens() {
            assert!(meta::deadline(self.entry(t).node.get()).is_some());
        }
        self.expiring
            .check_order(|t| meta::deadline(self.entry(t).node.get()));
    }
}
