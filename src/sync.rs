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

/// Numbers held by live threads: each is held by one thread at a time and
/// given back when it exits, so they stay small and dense. The mutex
/// hand-over orders the old holder's last writes under a number before the
/// new holder's first.
struct Numbers {
    /// Given back by exited threads, for the next new thread.
    free: Mutex<Vec<usize>>,
    /// The next never-used number.
    next: Mutex<usize>,
}

impl Numbers {
    const fn starting_at(first: usize) -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            next: Mutex::new(first),
        }
    }

    fn claim(&self) -> usize {
        if let Some(i) = self.free.lock().pop() {
            return i;
        }
        let mut next = self.next.lock();
        *next += 1;
        *next - 1
    }

    fn give_back(&self, i: usize) {
        self.free.lock().push(i);
    }
}

/// Thread slots: one reader row per slot below a cache's slot count.
static SLOTS: Numbers = Numbers::starting_at(0);

/// A thread's slot (see [`Numbers`]).
struct Slot(usize);

impl Slot {
    fn claim() -> Self {
        Self(SLOTS.claim())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Later thread-local destructors must not use the slot once it can
        // be handed to another thread.
        FAST_SLOT.with(|s| s.set(NO_SLOT));
        SLOTS.give_back(self.0);
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

/// Thread tokens, from 1 (0 means none).
static TOKENS: Numbers = Numbers::starting_at(1);

/// A thread's token (see [`Numbers`]), used as a `u16`: 0 past
/// `u16::MAX` live threads (no token). Unlike a slot it takes no reader row,
/// so a thread that only writes can hold one without pushing readers off
/// their rows.
struct Token(usize);

impl Token {
    fn get(&self) -> u16 {
        u16::try_from(self.0).unwrap_or(0)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        FAST_TOKEN.with(|t| t.set(0));
        TOKENS.give_back(self.0);
    }
}

thread_local! {
    static TOKEN: Token = Token(TOKENS.claim());
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
    let t = TOKEN.try_with(Token::get).unwrap_or(0);
    FAST_TOKEN.with(|f| f.set(t));
    t
}

/// One round of waiting for a lock's holder before sleeping, on the
/// schedule `parking_lot`'s mutex uses: three rounds of 2, 4 and 8 spin
/// hints, then seven yields of the CPU; `false` once the ten rounds are
/// spent. Short: a writer holds a shard for well under a microsecond, and
/// a holder that takes longer has usually lost its CPU, which spinning
/// keeps from it (eight writers on one shard of a two-CPU machine ran about
/// 2.7 times as many writes with this schedule as with 64 spins before the
/// yields).
pub(crate) fn spin_wait(round: &mut u32) -> bool {
    match *round {
        r @ 0..=2 => {
            for _ in 0..2u32 << r {
                std::hint::spin_loop();
            }
        }
        3..=9 => std::thread::yield_now(),
        _ => return false,
    }
    *round += 1;
    true
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

/// Sleeping until another thread wakes the sleepers of an address, as
/// `parking_lot`'s mutex sleeps (its `parking_lot_core` queues, one per
/// address, kept in a global table): zero-sized, so a lock that sleeps on
/// its own address carries nothing for it.
pub(crate) struct Parking;

impl Parking {
    /// Longest sleep: a sleeper wakes by itself after this and looks again.
    /// Only a wake-up lost to an error (a failed `membarrier` call after
    /// registration) relies on it; it bounds what such an error costs. The
    /// unit tests sleep for good instead, so that a lost wake-up hangs them.
    #[cfg(not(test))]
    const NAP: Option<std::time::Duration> = Some(std::time::Duration::from_millis(10));
    #[cfg(test)]
    const NAP: Option<std::time::Duration> = None;

    pub(crate) const fn new() -> Self {
        Self
    }

    /// Sleeps on `key` if `still` holds when checked under the address's
    /// queue lock; returns after a [`wake_all`](Self::wake_all) on `key`,
    /// after [`NAP`](Self::NAP), or at once if `still` was false.
    pub(crate) fn wait_while(&self, key: usize, still: impl FnOnce() -> bool) {
        let until = Self::NAP.map(|nap| std::time::Instant::now() + nap);
        // SAFETY: `park` requires that its callbacks neither panic nor call
        // into `parking_lot` (they run under the queue's lock): `still` is
        // an atomic load and the two others do nothing. `key` is the
        // address of a live lock, not one `parking_lot`'s own locks use.
        #[allow(unsafe_code)]
        unsafe {
            parking_lot_core::park(
                key,
                still,
                || {},
                |_, _| {},
                parking_lot_core::DEFAULT_PARK_TOKEN,
                until,
            );
        }
    }

    /// Wakes every thread sleeping on `key`.
    pub(crate) fn wake_all(&self, key: usize) {
        // SAFETY: as in `wait_while`: no callbacks, and `key` is the
        // address the sleepers used.
        #[allow(unsafe_code)]
        unsafe {
            parking_lot_core::unpark_all(key, parking_lot_core::DEFAULT_UNPARK_TOKEN);
        }
    }
}

pub(crate) use crate::barrier::{heavy as heavy_fence, init as init_fences, light as light_fence};

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
