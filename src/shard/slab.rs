//! The shard's slab of entries: each entry holds its policy [`Node`] beside
//! its key and value, addressed by `u32` tokens; and the view of it the
//! policy gets ([`Nodes`]).
//!
//! Owns the entry layout; calls the policy's node types and `prefetch`.

use crate::policy::node::{Node, Nodes};
use std::hash::{BuildHasher, Hash};

/// One cached entry: its policy node, key and value, together.
///
/// 32-byte aligned so that an entry of up to 32 bytes (`u64 -> u64` is
/// exactly that) never straddles two cache lines: in a 16-byte-aligned slab
/// half of them did, and a hit then missed twice on the entry alone. Larger
/// entries pay up to 31 bytes of padding.
#[repr(align(32))]
pub(crate) struct Entry<K, V> {
    pub(super) node: Node,
    pub(super) key: K,
    pub(super) value: V,
}

/// Panics for a token that should hold an entry but is free: an invariant
/// broken. Out of line, with the token passed by value: formatting it in
/// place made every slab accessor keep the token on the stack (and the
/// small ones set up a stack frame) on the path that never panics.
#[cold]
#[inline(never)]
pub(super) fn not_occupied(what: &str, idx: u32) -> ! {
    unreachable!("{what} {idx} is not occupied")
}

/// The slab: a free slot is `None` (free for the niche in [`Node`]'s links).
pub(super) type Slab<K, V> = Vec<Option<Entry<K, V>>>;

/// The slab as the policy sees it: nodes, and key hashes on request.
pub(super) struct SlabView<'a, K, V, S> {
    pub(super) entries: &'a mut Slab<K, V>,
    pub(super) hasher: &'a S,
}

impl<K: Hash, V, S: BuildHasher> Nodes for SlabView<'_, K, V, S> {
    #[inline]
    fn node(&self, idx: u32) -> &Node {
        match &self.entries[idx as usize] {
            Some(e) => &e.node,
            None => not_occupied("policy token", idx),
        }
    }

    #[inline]
    fn node_mut(&mut self, idx: u32) -> &mut Node {
        match &mut self.entries[idx as usize] {
            Some(e) => &mut e.node,
            None => not_occupied("policy token", idx),
        }
    }

    fn contains(&self, idx: u32) -> bool {
        matches!(self.entries.get(idx as usize), Some(Some(_)))
    }

    fn for_each_node(&self, f: &mut dyn FnMut(&Node)) {
        self.entries.iter().flatten().for_each(|e| f(&e.node));
    }

    fn hash_of(&self, idx: u32) -> u64 {
        match &self.entries[idx as usize] {
            Some(e) => self.hasher.hash_one(&e.key),
            None => not_occupied("policy token", idx),
        }
    }

    #[inline]
    fn prefetch(&self, idx: u32) {
        // Address arithmetic only: reading the slot to check it is occupied
        // would be the very miss the prefetch is meant to hide.
        crate::prefetch::prefetch(self.entries.as_ptr().wrapping_add(idx as usize));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_cost_nothing() {
        assert_eq!(std::mem::size_of::<Option<Entry<u64, u64>>>(), 32);
        assert_eq!(
            std::mem::size_of::<Option<Entry<u64, u64>>>(),
            std::mem::size_of::<Entry<u64, u64>>()
        );
    }
}
