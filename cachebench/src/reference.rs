//! What a reference policy (`arc`, `lirs`) offers the benchmarks: one
//! single-threaded cache of `u64` keys, which `subjects` runs under a
//! mutex beside the real caches.

/// A single-threaded cache policy simulated over keys only.
pub(crate) trait Reference: Send {
    /// A lookup; whether `key` is cached (a hit updates the policy).
    fn get(&mut self, key: u64) -> bool;
    /// Admits `key` after a miss; a cached key counts as a hit.
    fn insert(&mut self, key: u64);
    /// Cached keys.
    fn len(&self) -> usize;
}
