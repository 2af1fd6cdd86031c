//! The loads in flight on a shard's keys, so that a load whose key is
//! written while it runs does not store its value over that write.
//!
//! A read-through load begins (under the shard's lock) before its loader
//! runs and ends under the lock of the write that would store its value.
//! A write to the key in between, `insert`, `compute`, `remove` (even of an
//! absent key: an invalidation), `retain` or `clear`, marks the load
//! *overtaken*: its value was read from the source before that write, so
//! storing it would bring back something older. Entries the cache removes
//! itself (expiry, eviction) overtake nothing: what they remove was either
//! there before the load began or written during it, and that write has
//! already marked the load. Nor does changing a live entry's time to live,
//! which writes no value.
//!
//! Loads are named by the key's hash, so a write to another key with the
//! same hash overtakes a load too: a spurious overtake costs a store, never
//! correctness. Owns this list and the shard's calls into it; the shard
//! marks it from its writes.

use super::Shard;
use std::hash::Hash;
use std::num::NonZeroU64;

/// One load's place in [`Loads`], from [`Loads::begin`] (never zero, so
/// an `Option` of one is a single word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadId(NonZeroU64);

/// The loads in flight on one shard's keys.
#[derive(Default)]
pub(crate) struct Loads {
    marks: Vec<Mark>,
    /// How many ids were handed out.
    issued: u64,
}

struct Mark {
    hash: u64,
    id: LoadId,
    overtaken: bool,
}

impl Loads {
    /// Whether any load is in flight: the one question every write asks.
    #[inline(always)]
    pub(crate) fn any(&self) -> bool {
        !self.marks.is_empty()
    }

    /// How many loads are in flight (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.marks.len()
    }

    /// A load of the key hashing to `hash` begins.
    pub(crate) fn begin(&mut self, hash: u64) -> LoadId {
        let id = LoadId(NonZeroU64::MIN.saturating_add(self.issued));
        self.issued += 1;
        self.marks.push(Mark {
            hash,
            id,
            overtaken: false,
        });
        id
    }

    /// Load `id` ends; returns whether it may store its value (no write to
    /// its key came since it began). False if it had already ended.
    pub(crate) fn end(&mut self, id: LoadId) -> bool {
        match self.marks.iter().position(|m| m.id == id) {
            Some(i) => !self.marks.swap_remove(i).overtaken,
            None => false,
        }
    }

    /// The key hashing to `hash` is written: its loads are overtaken.
    #[cold]
    #[inline(never)]
    pub(crate) fn overtake(&mut self, hash: u64) {
        for m in self.marks.iter_mut().filter(|m| m.hash == hash) {
            m.overtaken = true;
        }
    }

    /// Every key is written (a clear): every load is overtaken.
    pub(crate) fn overtake_all(&mut self) {
        for m in &mut self.marks {
            m.overtaken = true;
        }
    }
}

impl<K: Hash + Eq, V> Shard<K, V> {
    /// A read-through load of the key hashing to `hash` begins: a write to
    /// that key before it [ends](Self::end_load) overtakes it.
    pub(crate) fn begin_load(&mut self, hash: u64) -> LoadId {
        self.loads.begin(hash)
    }

    /// How many loads are in flight on this shard's keys (for tests).
    #[cfg(test)]
    pub(crate) fn loads_in_flight(&self) -> usize {
        self.loads.len()
    }

    /// Load `id` ends; returns whether it may store its value (its key was
    /// not written since it began).
    pub(crate) fn end_load(&mut self, id: LoadId) -> bool {
        self.loads.end(id)
    }

    /// Notes a write to the key hashing to `hash`, for the loads in flight:
    /// one compare when there are none.
    #[inline(always)]
    pub(super) fn written(&mut self, hash: u64) {
        if self.loads.any() {
            self.loads.overtake(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_write_to_the_key_overtakes_its_load() {
        let mut loads = Loads::default();
        assert!(!loads.any());
        let (a, b, c) = (loads.begin(1), loads.begin(2), loads.begin(1));
        loads.overtake(1);
        assert!(loads.end(b), "another key's write");
        assert!(!loads.end(a) && !loads.end(c));
        assert!(!loads.any());
        let d = loads.begin(1);
        assert!(loads.end(d), "began after the write");
        assert!(!loads.end(d), "ended once");
        let e = loads.begin(3);
        loads.overtake_all();
        assert!(!loads.end(e));
    }
}
