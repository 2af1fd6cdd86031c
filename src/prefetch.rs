//! Software prefetch (a leaf, like `sync.rs`: both the shard's table and the
//! policy's sketch use it, and it calls nothing): asks the CPU to start loading a cache line that the
//! code will read soon, so that the miss overlaps other work instead of
//! stalling it.
//!
//! A cache write is a chain of dependent misses (the evicted entry, its
//! sketch block, the next list tails), and most of their addresses are known
//! well before they are read. A plain load would not do: an unused load still
//! holds up retirement until its data arrives, and the lock release after it
//! waits for it, while a prefetch retires at once.

/// Starts loading the cache line at `p` into every cache level.
///
/// `p` need not be valid, aligned or even mapped: a prefetch never faults
/// and never reads anything the program can observe. Compiles to nothing on
/// targets without a prefetch instruction here.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint. It has no architectural effect: it does
    // not fault on any address, does not write memory or registers, and
    // does not dereference `p` in the Rust sense. The intrinsic is `unsafe`
    // only because it is gated on the `sse` target feature, which every
    // x86_64 CPU has (it is part of the x86_64 baseline that rustc assumes).
    #[allow(unsafe_code)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
