//! The shard lock: a reader-writer lock whose readers write no shared cache
//! line.
//!
//! A `parking_lot::RwLock` counts its readers in its own lock word, so every
//! read is an atomic read-modify-write on a line all readers share: two
//! threads reading the same hot shard pass that line back and forth, and a
//! hit costs about twice as much on two threads as on one. Here each thread
//! counts its reads in a line of its own instead (a *distributed reader
//! lock*, as in Linux's big-reader locks):
//!
//! - [`ReaderCounts`] holds one counter per (thread slot, shard), laid out
//!   thread-major: the counters of one slot for 16 shards fill one 64-byte
//!   line that only that slot's thread writes.
//! - A reader adds one to its counter; if the counter's writer bit was set,
//!   it takes the one back and waits on the writer mutex.
//! - A writer takes the writer mutex, sets the writer bit in every slot's
//!   counter for its shard, then waits until each holds the bit alone (no
//!   reader in); leaving, it clears the bits.
//!
//! Reader and writer meet on the same atomic word, ordered by its
//! modification order: either the reader's add comes first (the writer sees
//! it and waits for the release that takes it back) or the writer's bit does
//! (the reader sees it and backs off). A reader that enters read-acquires a
//! value at or after the last writer's release of the bit, so it sees all
//! that writer did.
//!
//! The price is on the write side: a writer makes two atomic updates per
//! thread slot (slots are the CPU count rounded up to a power of two, 2 to
//! 64). Threads beyond the slot count share slots: still correct, only their
//! reads contend as on an ordinary reader-writer lock. As with `parking_lot`,
//! a thread must not take a read lock on a shard it already holds while a
//! writer may come.
//!
//! Checked by a loom model of every interleaving of readers and writers
//! (`tests/loom_shard_lock.rs`, run with `RUSTFLAGS="--cfg loom"`) and by the
//! unit tests below under Miri (`cargo +nightly miri test --lib shard_lock`).

use crate::sync::{backoff, thread_slot, AtomicU32, CacheAligned, Mutex, MutexGuard, Ordering};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

/// Counters per 64-byte line.
const PER_LINE: usize = 16;
/// The most thread slots; threads past it share.
const MAX_SLOTS: usize = 64;
/// The bit a writer sets in every slot's counter of its shard.
const WRITER: u32 = 1 << 31;

/// One cache's reader counters: a line per (slot, 16 shards), slot-major.
pub(crate) struct ReaderCounts {
    lines: Box<[CacheAligned<[AtomicU32; PER_LINE]>]>,
    /// Lines per slot: `ceil(shards / 16)`.
    stride: usize,
    /// Slot count, a power of two.
    slots: usize,
}

impl ReaderCounts {
    /// Counters for `shards` shards and a slot per thread up to the CPU
    /// count (a writer touches every slot: more would tax the writes).
    pub(crate) fn new(shards: usize) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_slots(shards, cpus.clamp(2, MAX_SLOTS))
    }

    /// Counters for `shards` shards and `slots` thread slots.
    pub(crate) fn with_slots(shards: usize, slots: usize) -> Self {
        let slots = slots.max(1).next_power_of_two();
        let stride = shards.max(1).div_ceil(PER_LINE);
        let lines = (0..slots * stride)
            .map(|_| CacheAligned(std::array::from_fn(|_| AtomicU32::new(0))))
            .collect();
        Self {
            lines,
            stride,
            slots,
        }
    }

    /// The counter of `slot` for `shard`.
    #[inline]
    fn counter(&self, slot: usize, shard: usize) -> &AtomicU32 {
        let slot = slot & (self.slots - 1);
        &self.lines[slot * self.stride + shard / PER_LINE][shard % PER_LINE]
    }
}

/// A reader-writer lock around one shard; its readers count in a
/// [`ReaderCounts`] shared by the cache's shards.
///
/// `repr(C)` keeps the mutex and the index in the 8 bytes before the data,
/// so the lock's first line also holds the shard's hot fields.
#[repr(C)]
pub(crate) struct ShardLock<T> {
    /// Serialises writers; readers that meet a writer wait on it.
    writer: Mutex<()>,
    /// This shard's column in `counts`.
    index: u32,
    data: UnsafeCell<T>,
    counts: crate::sync::Arc<ReaderCounts>,
}

#[allow(unsafe_code)]
// SAFETY: the lock hands out `&T` to many threads at once (needs `T: Sync`)
// and `&mut T` to one thread at a time, possibly not the one that created it
// (needs `T: Send`): the bounds of `std::sync::RwLock`.
unsafe impl<T: Send + Sync> Sync for ShardLock<T> {}
#[allow(unsafe_code)]
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for ShardLock<T> {}

impl<T> ShardLock<T> {
    /// Wraps shard `index`'s data; `counts` must have a column for `index`.
    pub(crate) fn new(data: T, index: u32, counts: crate::sync::Arc<ReaderCounts>) -> Self {
        assert!(
            (index as usize) < counts.stride * PER_LINE,
            "shard index past the reader counts"
        );
        Self {
            writer: Mutex::new(()),
            index,
            data: UnsafeCell::new(data),
            counts,
        }
    }

    #[inline]
    fn counter(&self, slot: usize) -> &AtomicU32 {
        self.counts.counter(slot, self.index as usize)
    }

    /// Shared access; waits while a writer holds the lock.
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let counter = self.counter(thread_slot());
        loop {
            if counter.fetch_add(1, Ordering::Acquire) & WRITER == 0 {
                return ReadGuard {
                    lock: self,
                    counter,
                };
            }
            counter.fetch_sub(1, Ordering::Release);
            // The writer holds the mutex until it has cleared its bit:
            // taking it parks this thread until then.
            drop(self.writer.lock());
        }
    }

    /// This shard's counter in every slot: the counts' fields are read once,
    /// not again after each atomic update, and need no bounds check each.
    #[inline]
    fn counters(&self) -> impl Iterator<Item = &AtomicU32> {
        let counts = &*self.counts;
        let (line, lane) = (
            self.index as usize / PER_LINE,
            self.index as usize % PER_LINE,
        );
        counts.lines[line..]
            .iter()
            .step_by(counts.stride)
            .map(move |l| &l.0[lane])
    }

    /// Sets the writer bit in every slot (from here on no reader enters);
    /// returns whether some reader was in.
    ///
    /// Only the holder of the writer mutex sets the bit, and it clears it
    /// before it lets go, so the bit is clear here and adding it sets it: an
    /// add is one locked instruction where an `or` that returns the old
    /// value is a compare-and-swap loop.
    fn close(&self) -> bool {
        let mut busy = false;
        for c in self.counters() {
            busy |= c.fetch_add(WRITER, Ordering::Acquire) != 0;
        }
        busy
    }

    /// Clears the writer bit in every slot, publishing the writer's work to
    /// the readers that enter after it.
    fn open(&self) {
        for c in self.counters() {
            c.fetch_sub(WRITER, Ordering::Release);
        }
    }

    /// Whether no reader is in (each count is the writer bit alone). Reads
    /// with a read-modify-write, which sees the newest count.
    fn drained(&self) -> bool {
        self.counters()
            .all(|c| c.fetch_add(0, Ordering::Acquire) == WRITER)
    }

    /// Exclusive access; waits for the current readers to leave, and holds
    /// new ones off meanwhile.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        let writer = self.writer.lock();
        if self.close() {
            let mut spins = 0;
            while !self.drained() {
                backoff(&mut spins);
            }
        }
        WriteGuard {
            lock: self,
            _writer: writer,
        }
    }

    /// Exclusive access if no writer holds the lock and no reader is in,
    /// without waiting for either.
    pub(crate) fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        let writer = self.writer.try_lock()?;
        if self.close() {
            self.open();
            return None;
        }
        Some(WriteGuard {
            lock: self,
            _writer: writer,
        })
    }

    /// The data's address (for layout checks).
    #[cfg(test)]
    pub(crate) fn data_ptr(&self) -> *mut T {
        self.data.get()
    }
}

/// Shared access to a shard; the read ends when it drops.
pub(crate) struct ReadGuard<'a, T> {
    lock: &'a ShardLock<T>,
    counter: &'a AtomicU32,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard's increment is counted and found no writer bit;
        // a writer sets its bit, then waits for every count to drop to zero
        // before it touches the data, and this count stays above zero until
        // the guard drops.
        #[allow(unsafe_code)]
        unsafe {
            &*self.lock.data.get()
        }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Release);
    }
}

/// Exclusive access to a shard; the write ends when it drops.
pub(crate) struct WriteGuard<'a, T> {
    lock: &'a ShardLock<T>,
    _writer: MutexGuard<'a, ()>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the writer mutex and saw every reader
        // count for the shard at zero with its bit set: no other reference
        // to the data exists until it drops.
        #[allow(unsafe_code)]
        unsafe {
            &*self.lock.data.get()
        }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference derived from the guard.
        #[allow(unsafe_code)]
        unsafe {
            &mut *self.lock.data.get()
        }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Before the mutex is released (the field drops after this body).
        self.lock.open();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::Arc;

    fn lock(v: u64) -> Arc<ShardLock<u64>> {
        Arc::new(ShardLock::new(
            v,
            3,
            Arc::new(ReaderCounts::with_slots(20, 4)),
        ))
    }

    #[test]
    fn counters_of_one_slot_share_lines_and_slots_do_not() {
        let c = ReaderCounts::with_slots(20, 3);
        assert_eq!((c.slots, c.stride), (4, 2));
        let line = |s, i| (c.counter(s, i) as *const AtomicU32 as usize) / 64;
        assert_eq!(line(0, 0), line(0, 15));
        assert_ne!(line(0, 15), line(0, 16));
        for s in 1..4 {
            assert_ne!(line(0, 0), line(s, 0));
        }
        // Slots past the count wrap around.
        assert_eq!(line(5, 2), line(1, 2));
    }

    #[test]
    fn a_writer_visits_its_shard_in_every_slot_once() {
        let counts = Arc::new(ReaderCounts::with_slots(40, 4));
        for index in [0, 15, 16, 39] {
            let l = ShardLock::new(0u8, index, counts.clone());
            let got: Vec<*const AtomicU32> = l.counters().map(|c| c as *const _).collect();
            let want: Vec<*const AtomicU32> = (0..4).map(|s| l.counter(s) as *const _).collect();
            assert_eq!(got, want, "shard {index}");
            // A write leaves every count as it found it.
            let r = l.read();
            drop(r);
            *l.write() += 1;
            assert!(l.counters().all(|c| c.load(Ordering::Relaxed) == 0));
        }
    }

    #[test]
    fn readers_share_and_writers_exclude() {
        let l = lock(1);
        let a = l.read();
        let b = l.read();
        assert_eq!(*a + *b, 2);
        drop((a, b));
        *l.write() += 1;
        assert_eq!(*l.read(), 2);
    }

    #[test]
    fn a_writer_waits_for_readers_and_readers_for_the_writer() {
        let l = lock(0);
        let r = l.read();
        let w = {
            let l = l.clone();
            std::thread::spawn(move || {
                *l.write() = 7;
            })
        };
        // The writer cannot finish while the read is held.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(*r, 0);
        drop(r);
        w.join().expect("writer");
        assert_eq!(*l.read(), 7);
    }

    #[test]
    fn racing_readers_and_writers_see_whole_writes() {
        // The writer keeps both halves equal; a reader that saw a torn pair
        // would have read during a write.
        let l = Arc::new(ShardLock::new(
            (0u64, 0u64),
            0,
            Arc::new(ReaderCounts::with_slots(1, 2)),
        ));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    // Fewer rounds under Miri, which runs each access checked.
                    let rounds: u64 = if cfg!(miri) { 200 } else { 20_000 };
                    for i in 0..rounds {
                        if t == 0 && i % 4 == 0 {
                            let mut g = l.write();
                            g.0 += 1;
                            std::hint::spin_loop();
                            g.1 += 1;
                        } else {
                            let g = l.read();
                            assert_eq!(g.0, g.1, "a read overlapped a write");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no torn read");
        }
        let writes = if cfg!(miri) { 50 } else { 5_000 };
        assert_eq!(*l.read(), (writes, writes));
    }
}
