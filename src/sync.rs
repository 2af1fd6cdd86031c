//! The one import point for locks and atomics.
//!
//! Every module takes its synchronisation primitives from here, so a model
//! checker (loom, shuttle) can be swapped in behind a `cfg` without touching
//! the cache's logic.

pub(crate) use parking_lot::{Condvar, Mutex, RwLock};
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
pub(crate) use std::sync::Arc;

/// A value on cache lines of its own: aligned to, and padded to a multiple
/// of, 64 bytes, so that neighbours in an array never share a line.
#[repr(align(64))]
pub(crate) struct CacheAligned<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheAligned<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
