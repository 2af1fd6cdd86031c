//! What the shard is handed and hands back: the write's environment (hasher,
//! weigher, a clock read at most once), lookups' results.
//!
//! Owns these small types only; calls the clock.

use crate::weigher::Weights;
use std::cell::Cell;

/// What a write needs from the cache around the shard.
pub(crate) struct Env<'a, K, V, S> {
    pub(crate) hasher: &'a S,
    pub(crate) weights: &'a Weights<K, V>,
    /// The clock, read at most once per write and only if needed.
    pub(crate) clock: &'a crate::clock::Millis,
    pub(crate) now_ms: Cell<Option<u64>>,
    /// Time-to-idle in ms, if configured.
    pub(crate) tti: Option<u64>,
    /// How much later than their time to live entries are kept, in ms (the
    /// refresh windows; 0 without them). Kept entries are expired to every
    /// write: only the read paths that serve stale values see them.
    pub(crate) grace: u64,
    /// How many hits an entry stores (the policy's rule), for a write
    /// that counts as an access.
    pub(crate) hits: crate::policy::node::HitCount,
}

impl<K, V, S> Env<'_, K, V, S> {
    /// Monotonic milliseconds now (read on first use, then fixed for this write).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        if let Some(v) = self.now_ms.get() {
            return v;
        }
        let v = self.clock.now();
        self.now_ms.set(Some(v));
        v
    }
}

/// The clock, read at most once per lookup and only if an entry needs it.
pub(crate) struct LazyNow<F: Fn() -> u64> {
    read: F,
    value: Cell<Option<u64>>,
}

impl<F: Fn() -> u64> LazyNow<F> {
    pub(crate) fn new(read: F) -> Self {
        Self {
            read,
            value: Cell::new(None),
        }
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        if let Some(v) = self.value.get() {
            return v;
        }
        let v = (self.read)();
        self.value.set(Some(v));
        v
    }
}

/// The result of a lookup.
pub(crate) enum Lookup<T> {
    Hit(T),
    Miss,
    /// Present but past its deadline (a miss to the caller).
    Expired,
}

/// A live entry's view for read-modify-write operations.
pub(crate) struct Found<'a, V> {
    pub(crate) value: &'a V,
    pub(crate) deadline: Option<u64>,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    New,
    Replaced,
}
