//! The one import point for locks and atomics.
//!
//! Every module takes its synchronisation primitives from here, so a model
//! checker (loom, shuttle) can be swapped in behind a `cfg` without touching
//! the cache's logic.

pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
pub(crate) use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
pub(crate) use std::sync::Arc;

/// A value on cache lines of its own: aligned to, and padded to a multiple
/// of, 128 bytes, so that neighbours in an array never share a line, nor a
/// pair of lines. Intel's L2 spatial prefetcher fetches a 64-byte line's
/// partner in its aligned 128-byte pair, so one thread's writes to a line
/// slow another thread that uses its neighbour; and some CPUs (Apple's)
/// have 128-byte lines. `crossbeam_utils::CachePadded` pads to 128 on
/// x86-64 and aarch64 for the same reasons.
#[repr(align(128))]
pub(crate) struct CacheAligned<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheAligned<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Slots (thread numbers) freed by exited threads, for the next new thread.
static FREE_SLOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The next never-used slot.
static NEXT_SLOT: Mutex<usize> = Mutex::new(0);

/// A thread's slot: a number no other live thread holds, returned for reuse
/// when the thread exits, so slots stay small and dense. The mutex hand-over
/// orders the old owner's last writes to per-slot data before the new
/// owner's first.
struct Slot(usize);

impl Slot {
    fn claim() -> Self {
        if let Some(i) = FREE_SLOTS.lock().pop() {
            return Self(i);
        }
        let mut next = NEXT_SLOT.lock();
        *next += 1;
        Self(*next - 1)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Later thread-local destructors must not use the slot once it can
        // be handed to another thread.
        FAST_SLOT.with(|s| s.set(NO_SLOT));
        FREE_SLOTS.lock().push(self.0);
    }
}

/// [`FAST_SLOT`] before the thread claimed a slot, and after it gave it back.
const NO_SLOT: usize = usize::MAX;

thread_local! {
    /// The slot, owned (and given back on exit) by the thread.
    static SLOT: Slot = Slot::claim();
    /// A copy of the slot in a constant-initialised cell without a
    /// destructor, which reads as a plain thread-local load.
    static FAST_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(NO_SLOT) };
}

/// This thread's slot, or `None` from a thread-local destructor after the
/// slot was given back.
#[inline]
pub(crate) fn try_thread_slot() -> Option<usize> {
    let fast = FAST_SLOT.with(|s| s.get());
    if fast != NO_SLOT {
        return Some(fast);
    }
    claim_slot()
}

#[cold]
fn claim_slot() -> Option<usize> {
    let slot = SLOT.try_with(|s| s.0).ok()?;
    FAST_SLOT.with(|s| s.set(slot));
    Some(slot)
}

/// Spins before a waiting thread yields its CPU in [`backoff`].
const SPINS: u32 = 64;

/// One round of waiting for another thread: a spin hint for the first
/// rounds, then a yield of the CPU (the other thread may need it).
#[inline]
pub(crate) fn backoff(spins: &mut u32) {
    if *spins < SPINS {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}
