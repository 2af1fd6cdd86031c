//! The shard locks' reader counters: one per (thread slot, shard), in
//! blocks that only their slot's thread writes (see `shard_lock.rs`), and a
//! reader's handle on its own counter.

use crate::sync::{init_fences, AtomicU32, CacheAligned, Ordering};

/// Counters per 128-byte block: one 64-byte line's worth.
pub(super) const PER_BLOCK: usize = 16;
/// The most thread slots with counters of their own; threads past it share
/// one row.
const MAX_SLOTS: usize = 64;

/// One cache's reader counters: a block per (slot, 16 shards), slot-major,
/// and after the slots' rows the shared row.
pub(crate) struct ReaderCounts {
    pub(super) blocks: Box<[CacheAligned<[AtomicU32; PER_BLOCK]>]>,
    /// Blocks per slot: `ceil(shards / 16)`.
    pub(super) stride: usize,
    /// Slots with a row of their own, a power of two; row `slots` is shared.
    pub(super) slots: usize,
}

impl ReaderCounts {
    /// Counters for `shards` shards and rows of their own for up to twice
    /// as many threads as CPUs: a service runs more threads than CPUs (a
    /// runtime's workers, the main thread, a blocking pool), and a thread
    /// on the shared row pays three locked instructions on a contended line
    /// per read. A writer loads every row's count, so rows are not free.
    pub(crate) fn new(shards: usize) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_slots(shards, (2 * cpus).clamp(4, MAX_SLOTS))
    }

    /// Counters for `shards` shards and `slots` thread slots. Settles the
    /// process's fences (see [`crate::barrier`]) before the first lock is
    /// built over them.
    pub(crate) fn with_slots(shards: usize, slots: usize) -> Self {
        init_fences();
        let slots = slots.max(1).next_power_of_two();
        let stride = shards.max(1).div_ceil(PER_BLOCK);
        let blocks = (0..(slots + 1) * stride)
            .map(|_| CacheAligned(std::array::from_fn(|_| AtomicU32::new(0))))
            .collect();
        Self {
            blocks,
            stride,
            slots,
        }
    }

    /// The row a thread counts in: its slot's own below the slot count, the
    /// shared one past it or without a slot (a thread-local destructor after
    /// the slot was given back).
    #[inline]
    pub(super) fn row(&self, slot: Option<usize>) -> usize {
        match slot {
            Some(s) if s < self.slots => s,
            _ => self.slots,
        }
    }

    /// The counter of `row` for `shard`.
    #[inline]
    pub(super) fn counter(&self, row: usize, shard: usize) -> &AtomicU32 {
        &self.blocks[row * self.stride + shard / PER_BLOCK][shard % PER_BLOCK]
    }
}

/// A reader's counter, and whether its thread is the only one that writes
/// it.
#[derive(Clone, Copy)]
pub(super) struct Count<'a> {
    pub(super) counter: &'a AtomicU32,
    pub(super) own: bool,
}

impl Count<'_> {
    #[inline]
    pub(super) fn raise(&self) {
        if self.own {
            let n = self.counter.load(Ordering::Relaxed);
            self.counter.store(n + 1, Ordering::Relaxed);
        } else {
            self.counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Release: the reads made under the count come before a writer that
    /// sees it lowered.
    #[inline]
    pub(super) fn lower(&self) {
        if self.own {
            let n = self.counter.load(Ordering::Relaxed);
            self.counter.store(n - 1, Ordering::Release);
        } else {
            self.counter.fetch_sub(1, Ordering::Release);
        }
    }
}
