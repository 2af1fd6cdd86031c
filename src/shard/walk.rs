//! Walks over a shard's entries: its occupied slots, and its live entries
//! all at once or a chunk of slots at a time.

use super::{LazyNow, Shard};
use crate::policy::node::meta;
use std::hash::Hash;

impl<K: Hash + Eq, V> Shard<K, V> {
    /// The occupied tokens.
    pub(super) fn occupied(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .map(|(i, _)| i as u32)
    }

    /// Calls `f` on every live entry.
    pub(crate) fn for_each_live<F: Fn() -> (u64, bool)>(
        &self,
        now: &LazyNow<F>,
        tti: Option<u64>,
        f: impl FnMut(&K, &V, Option<u64>),
    ) {
        self.for_each_live_from(0, usize::MAX, now, tti, f);
    }

    /// Calls `f` on the live entries among at most `limit` slots from slot
    /// `start`; returns where to continue, or `None` past the last slot. Lets
    /// a caller walk a shard in chunks, releasing the lock in between.
    pub(crate) fn for_each_live_from<F: Fn() -> (u64, bool)>(
        &self,
        start: usize,
        limit: usize,
        now: &LazyNow<F>,
        tti: Option<u64>,
        mut f: impl FnMut(&K, &V, Option<u64>),
    ) -> Option<usize> {
        let end = start.saturating_add(limit).min(self.entries.len());
        for idx in start..end {
            if let Some(e) = &self.entries[idx] {
                let m = e.node.get();
                if !self.expired_at(idx as u32, m, now, tti) {
                    f(&e.key, &e.value, meta::deadline(m));
                }
            }
        }
        (end < self.entries.len()).then_some(end)
    }
}
