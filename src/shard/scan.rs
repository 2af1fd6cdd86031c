//! A bounded step of cursor iteration over one shard (Redis's `SCAN`).

use super::{LazyNow, Shard};
use crate::shard::table::next_home;
use std::hash::{BuildHasher, Hash};

/// What one `SCAN` call may still do: entries to return and home slots to visit.
#[derive(Debug)]
pub(crate) struct ScanBudget {
    pub(crate) entries: usize,
    pub(crate) homes: usize,
}

impl ScanBudget {
    fn spent(&self) -> bool {
        self.entries == 0 || self.homes == 0
    }
}

impl<K: Hash + Eq, V> Shard<K, V> {
    /// Visits home slots from `cursor` on, calling `f` on their live
    /// entries (key, value, deadline if any), until `budget` is spent or the last home slot was visited.
    /// Returns the cursor to continue from (0: this shard is done).
    pub(crate) fn scan<S: BuildHasher, F: Fn() -> (u64, bool)>(
        &self,
        cursor: u64,
        hasher: &S,
        now: &LazyNow<F>,
        tti: Option<u64>,
        budget: &mut ScanBudget,
        mut f: impl FnMut(&K, &V, Option<u64>),
    ) -> u64 {
        let mask = self.table.home_mask();
        let mut v = cursor & mask;
        loop {
            self.table.for_each_at_home(
                v,
                |t| hasher.hash_one(&self.entry(t).key),
                |t| {
                    let e = self.entry(t);
                    let m = e.node.get();
                    if !self.expired_at(t, m, now, tti) {
                        budget.entries = budget.entries.saturating_sub(1);
                        f(&e.key, &e.value, super::meta::deadline(m));
                    }
                },
            );
            budget.homes = budget.homes.saturating_sub(1);
            v = next_home(v, mask);
            if v == 0 || budget.spent() {
                return v;
            }
        }
    }
}
