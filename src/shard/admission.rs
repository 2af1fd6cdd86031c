//! The admission policy's state per entry (estimate, segment, unfolded
//! hits), read for a log rewrite's summary and restored from it when a
//! persistent cache is opened.

use super::{Shard, SlabView};
use crate::policy::node::meta;
use crate::policy::Saved;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

impl<K: Hash + Eq, V> Shard<K, V> {
    /// The admission sketch's estimate for the key hashed `hash` (0..=15),
    /// or `None` when the policy keeps no sketch.
    pub(crate) fn admission_estimate(&self, hash: u64) -> Option<u8> {
        self.policy.frequency(hash).map(|f| f.min(15) as u8)
    }

    /// What to save for `key` (hashed `hash`): its sketch estimate, the
    /// list its entry is on and the hits it has not folded yet (beyond 3,
    /// added to the estimate); `None` when the policy keeps no sketch.
    pub(crate) fn admission_entry_of<Q>(&self, hash: u64, key: &Q) -> Option<Saved>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let sketch = self.policy.frequency(hash)?;
        let m = self
            .find(hash, key)
            .and_then(|idx| self.entries.get(idx as usize)?.as_ref())
            .map(|e| e.node.get());
        // Up to 3 hits are saved as hits; more go into the estimate.
        let hits = m.map_or(0, meta::hits);
        Some(Saved {
            estimate: (sketch + hits.saturating_sub(3)).min(15) as u8,
            segment: m.map_or(0, meta::list),
            hits: hits.min(3) as u8,
        })
    }

    /// The adaptive window's share of this shard, if the policy has one.
    pub(crate) fn window_share(&self) -> Option<f64> {
        self.policy.window_share()
    }

    /// Starts the adaptive window at share `w` (saved before a restart).
    pub(crate) fn set_window_share(&mut self, w: f64) {
        self.policy.set_window_share(w);
    }

    /// Restores the saved `(hash, packed entry state)` pairs (see
    /// `TinyLfu::restore`).
    pub(crate) fn restore_admission<S: BuildHasher>(&mut self, hasher: &S, counts: &[(u64, u8)]) {
        self.policy.restore_saved(
            &mut SlabView {
                entries: &mut self.entries,
                hasher,
            },
            counts,
        );
    }
}
