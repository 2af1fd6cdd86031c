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

/// Thread tokens handed out but given back by exited threads.
static FREE_TOKENS: Mutex<Vec<u16>> = Mutex::new(Vec::new());
/// The next never-used token.
static NEXT_TOKEN: Mutex<u32> = Mutex::new(1);

/// A thread's token: a number from 1 that no other live thread holds,
/// returned for reuse when the thread exits, or 0 past `u16::MAX` live
/// threads (no token). Unlike a slot it takes no reader row, so a thread
/// that only writes can hold one without pushing readers off their rows.
/// The mutex hand-over orders the old owner's last writes before the new
/// owner's first, as for slots.
struct Token(u16);

impl Token {
    fn claim() -> Self {
        if let Some(t) = FREE_TOKENS.lock().pop() {
            return Self(t);
        }
        let mut next = NEXT_TOKEN.lock();
        match u16::try_from(*next) {
            Ok(t) => {
                *next += 1;
                Self(t)
            }
            Err(_) => Self(0),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        FAST_TOKEN.with(|t| t.set(0));
        if self.0 != 0 {
            FREE_TOKENS.lock().push(self.0);
        }
    }
}

thread_local! {
    static TOKEN: Token = Token::claim();
    /// A copy of the token, read as a plain thread-local load.
    static FAST_TOKEN: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
}

/// This thread's token (see [`Token`]); 0 without one, including from a
/// thread-local destructor after the token was given back.
#[inline]
pub(crate) fn thread_token() -> u16 {
    let fast = FAST_TOKEN.with(|t| t.get());
    if fast != 0 {
        return fast;
    }
    claim_token()
}

#[cold]
fn claim_token() -> u16 {
    let t = TOKEN.try_with(|t| t.0).unwrap_or(0);
    FAST_TOKEN.with(|f| f.set(t));
    t
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_threads_hold_distinct_tokens() {
        let mine = thread_token();
        assert_ne!(mine, 0);
        assert_eq!(thread_token(), mine, "a thread keeps its token");
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let tokens: Vec<u16> = (0..8)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    let t = thread_token();
                    // All eight alive at once.
                    b.wait();
                    t
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let mut seen: Vec<u16> = tokens.iter().copied().chain([mine]).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9, "tokens of live threads collide: {tokens:?}");
        assert!(!tokens.contains(&0));
    }
}
