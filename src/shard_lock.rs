//! The shard lock: a reader-writer lock whose readers write no shared cache
//! line and make no atomic read-modify-write.
//!
//! A `parking_lot::RwLock` counts its readers in its own lock word, so every
//! read is an atomic read-modify-write on a line all readers share: two
//! threads reading the same hot shard pass that line back and forth, and a
//! hit costs about twice as much on two threads as on one. Here each thread
//! counts its reads in a line of its own instead (a *distributed reader
//! lock*, as in Linux's big-reader locks):
//!
//! - [`ReaderCounts`] holds one counter per (thread slot, shard), laid out
//!   thread-major: the counters of one slot for 16 shards fill the first
//!   line of a 128-byte block (a pair of lines, see [`CacheAligned`]) that
//!   only that slot's thread writes; the second line stays empty (packing
//!   32 counters to a block measured a 10–20 % slower TTL'd hit on two
//!   threads than on one, against 0–7 % with the empty line). One more row is shared by
//!   the threads that have no slot of their own (past the slot count).
//! - A reader with a slot of its own raises its counter with a plain store
//!   (no other thread writes it), then a sequentially consistent fence,
//!   then loads the shard's `closed` flag. If a writer closed the shard, it
//!   lowers its counter again and sleeps until the writer leaves. Leaving, it
//!   lowers the counter with a release store. A reader on the shared row
//!   does the same with an atomic add and subtract.
//! - A writer closes the shard with one compare-and-swap of its `closed`
//!   flag from 0 to 1 (losing it means another writer holds the lock),
//!   then a sequentially consistent fence, then waits until its shard's
//!   counter reads zero in every row; leaving, it stores 0 (release).
//!
//! Reader and writer each store, fence, then load what the other stored
//! (the store-buffering pattern). Of the two fences one comes first in the
//! single total order of sequentially consistent operations: if the
//! reader's, the writer's load sees the raised counter and waits for the
//! release store that lowers it; if the writer's, the reader's load sees
//! `closed` set, or cleared by that writer's release once it is done, which
//! the reader's acquire load then orders before its reads.
//!
//! A thread that finds the shard closed (a reader or a writer) spins and
//! yields for a few rounds, then sleeps on the lock's address in
//! `parking_lot`'s queues after raising the lock's `waiting` count, and a
//! writer that leaves wakes the sleepers if that count is not zero. The leaving writer stores 0 and
//! then loads `waiting`, the sleeper raises `waiting` and then loads
//! `closed`: the store-buffering pattern again, which [`crate::barrier`]
//! makes cheap for the writer (one compiler fence, where a full fence would
//! wait for all of the write's stores to drain) and expensive for the
//! sleeper (a `membarrier` call), on Linux; elsewhere both are fences. So
//! an uncontended write takes the shard with a locked instruction and a
//! fence and leaves it with a plain store; with `parking_lot`'s mutex it
//! also left with a locked instruction, the mutex's release, which waited
//! for every store of the write to drain.
//!
//! On x86 the reader's fence is a locked `or` on the thread's own stack:
//! the reader's one locked instruction touches no line another thread uses,
//! where an atomic add on the counter line and a subtract at the end took
//! two (hits on one thread ran about 1.3 times as many per second without
//! them).
//!
//! A writer leaves its thread's token in the lock while it holds it, so
//! that a thread calling back into a shard it holds (from user code the
//! cache runs under the lock) panics instead of waiting for itself. A
//! thread in such code, or one named the leader of a load, a rollback or a
//! repair, that must wait for another shard registers the wait in
//! [`crate::lock_waits`], on the slow path only, and panics there if it
//! would close a cycle of waits (or, through [`ShardLock::read_or_cycle`]
//! and [`ShardLock::write_or_cycle`], returns an error the caller reports).
//!
//! The write side pays a load per thread slot (twice the CPU count rounded
//! up to a power of two, 4 to 64, plus the shared row). As with
//! `parking_lot`, a thread must not take a read lock on a shard it already
//! holds while a writer may come. A read guard stays on the thread that
//! took it: its release is a plain store to that thread's counter.
//!
//! Checked by a loom model of every interleaving of readers and writers
//! (`tests/loom_shard_lock.rs`, run with `RUSTFLAGS="--cfg loom"`) and by the
//! unit tests below under Miri (`cargo +nightly miri test --lib shard_lock`).

use crate::lock_waits::{waiting_for, Cycle};
use crate::sync::{
    backoff, fence, heavy_fence, light_fence, spin_wait, thread_token, try_thread_slot, AtomicU16,
    AtomicU8, Ordering, Parking,
};
pub(crate) use counts::ReaderCounts;
use counts::{Count, PER_BLOCK};

#[path = "shard_lock_counts.rs"]
mod counts;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// What a thread that calls back into a shard it holds is told.
const REENTRY: &str = "shardcache: a call into the cache from code the cache runs under a \
shard's lock (a `compute` closure, a `retain` predicate, a weigher, an expiry rule) reached \
that same shard; it would wait for itself forever";

/// A reader-writer lock around one shard; its readers count in a
/// [`ReaderCounts`] shared by the cache's shards.
///
/// `repr(C)` keeps the flag, the owner, the index, the sleepers' count and
/// the reader counts' address in the 16 bytes before the data, so the lock's
/// first line, which every read must load, also holds the shard's hot
/// fields: a read touches no other line of the lock.
#[repr(C)]
pub(crate) struct ShardLock<T> {
    /// 1 while a writer holds the lock: it closed the shard to readers and
    /// to other writers.
    closed: AtomicU8,
    /// The writer's thread token (`sync::thread_token`) while it holds the
    /// lock, 0 otherwise: a thread that calls back into a shard it holds
    /// (from a closure the cache runs under the lock) panics instead of
    /// waiting for itself forever.
    owner: AtomicU16,
    /// This shard's column in `counts` (a cache has at most 2^16 shards).
    index: u16,
    /// Threads asleep on this lock, or about to be: the leaving writer
    /// wakes them when it is not zero.
    waiting: AtomicU16,
    /// The readers' counters; every read follows this pointer to its own.
    counts: crate::sync::Arc<ReaderCounts>,
    parking: Parking,
    data: UnsafeCell<T>,
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
            (index as usize) < counts.stride * PER_BLOCK,
            "shard index past the reader counts"
        );
        Self {
            closed: AtomicU8::new(0),
            owner: AtomicU16::new(0),
            index: u16::try_from(index).expect("at most 2^16 shards"),
            waiting: AtomicU16::new(0),
            parking: Parking::new(),
            data: UnsafeCell::new(data),
            counts,
        }
    }

    /// Shared access; waits while a writer holds the lock.
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let count = self.count();
        if !self.try_enter(count) {
            self.read_contended(count);
        }
        self.guard(count)
    }

    /// [`read`](Self::read) once a writer was found in: waits and tries
    /// again until the read gets in. Out of line, so that the read's fast
    /// path stays as short as it is without the waiting.
    #[cold]
    #[inline(never)]
    fn read_contended(&self, count: Count<'_>) {
        loop {
            if let Err(cycle) = self.wait_to_read() {
                cycle.panic();
            }
            if self.try_enter(count) {
                return;
            }
        }
    }

    /// [`read`](Self::read), for a thread that has an error to return:
    /// where `read` would panic because its wait closes a cycle (see
    /// [`crate::lock_waits`]), returns [`Cycle`] instead.
    pub(crate) fn read_or_cycle(&self) -> Result<ReadGuard<'_, T>, Cycle> {
        let count = self.count();
        while !self.try_enter(count) {
            self.wait_to_read()?;
        }
        Ok(self.guard(count))
    }

    /// This thread's reader count for this shard.
    #[inline]
    fn count(&self) -> Count<'_> {
        let counts = &*self.counts;
        let row = counts.row(try_thread_slot());
        Count {
            counter: counts.counter(row, self.index as usize),
            own: row < counts.slots,
        }
    }

    /// One try at a read: raises this thread's count and checks that no
    /// writer is in; if one is, lowers the count again and says so.
    #[inline]
    fn try_enter(&self, count: Count<'_>) -> bool {
        count.raise();
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::Acquire) == 0 {
            return true;
        }
        count.lower();
        false
    }

    /// The guard of a read that got in with `count` raised.
    #[inline]
    fn guard<'a>(&'a self, count: Count<'a>) -> ReadGuard<'a, T> {
        ReadGuard {
            lock: self,
            count,
            _on_this_thread: PhantomData,
        }
    }

    /// Waits, before a read tries again, for the writer in to leave (see
    /// [`wait_open`](Self::wait_open)). From user code under another
    /// shard's lock, or on a thread named the leader of a load, rollback or
    /// repair, the wait is registered in [`crate::lock_waits`] and lasts
    /// until the shard is seen open.
    ///
    /// # Errors
    ///
    /// [`Cycle`] if the wait would close a cycle of waits.
    #[cold]
    #[inline(never)]
    fn wait_to_read(&self) -> Result<(), Cycle> {
        self.refuse_reentry();
        match waiting_for(self.id())? {
            None => self.wait_open(),
            Some(_waiting) => {
                while self.closed.load(Ordering::Relaxed) != 0 {
                    self.wait_open();
                }
            }
        }
        Ok(())
    }

    /// The shard's name in [`crate::lock_waits`]: the data's address, as
    /// user code under the write lock names it (`callback::Held::of`).
    fn id(&self) -> usize {
        self.data.get() as usize
    }

    /// Closes the shard to new readers and to other writers if it is open,
    /// then fences: the loads of the reader counts that follow cannot be
    /// ordered before the close (on x86 the fence right after the locked
    /// compare-and-swap finds the store buffer already drained).
    #[inline]
    fn try_close(&self) -> bool {
        let closed = self
            .closed
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if closed {
            fence(Ordering::SeqCst);
        }
        closed
    }

    /// Reopens the shard, publishing the writer's work to the threads that
    /// enter after it, and wakes the threads asleep on it.
    #[inline]
    fn open(&self) {
        self.closed.store(0, Ordering::Release);
        light_fence();
        if self.waiting.load(Ordering::Relaxed) != 0 {
            self.wake();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self) {
        self.parking.wake_all(self.key());
    }

    /// The address sleepers on this lock wait on.
    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Waits for the writer in to leave: spins while it holds the shard
    /// for a short write, then yields the CPU a few times (the writer may
    /// be waiting for one), and sleeps if it stays ([`spin_wait`]). May
    /// return while the shard is still closed; the caller looks again.
    #[cold]
    #[inline(never)]
    fn wait_open(&self) {
        let mut round = 0;
        while self.closed.load(Ordering::Relaxed) != 0 {
            if !spin_wait(&mut round) {
                self.sleep_while_closed();
                return;
            }
        }
    }

    /// Sleeps until a writer leaves, if one is in: counts itself in
    /// `waiting` first, so that the writer's [`open`](Self::open) sees it.
    /// May return early (a wake-up meant for another sleeper, the nap's
    /// end); the caller looks again.
    fn sleep_while_closed(&self) {
        let counted = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| n.checked_add(1))
            .is_ok();
        if !counted {
            // 65,535 sleepers already: yield instead of sleeping uncounted.
            std::thread::yield_now();
            return;
        }
        heavy_fence();
        self.parking
            .wait_while(self.key(), || self.closed.load(Ordering::SeqCst) != 0);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether no reader is in: every row's count for the shard is zero,
    /// read one stride of blocks at a time (an iterator over the rows cost
    /// about 48 instructions per write for five rows). Every row is read
    /// and the counts are or-ed, with no branch per row: leaving at the
    /// first count not zero cost a test and a branch per row.
    #[inline]
    fn drained(&self) -> bool {
        let counts = &*self.counts;
        let lane = self.index as usize % PER_BLOCK;
        let (blocks, stride) = (&*counts.blocks, counts.stride.max(1));
        let mut i = self.index as usize / PER_BLOCK;
        let mut readers = 0;
        while let Some(b) = blocks.get(i) {
            readers |= b.0[lane].load(Ordering::Acquire);
            i += stride;
        }
        readers == 0
    }

    /// Exclusive access; waits for the current readers to leave, and holds
    /// new ones off meanwhile.
    ///
    /// Inlined, with the waits out of line.
    #[inline]
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        if !self.try_close() {
            if let Err(cycle) = self.close_contended() {
                cycle.panic();
            }
        }
        self.enter()
    }

    /// [`write`](Self::write), for a thread that has an error to return:
    /// where `write` would panic because its wait closes a cycle (see
    /// [`crate::lock_waits`]), returns [`Cycle`] instead.
    pub(crate) fn write_or_cycle(&self) -> Result<WriteGuard<'_, T>, Cycle> {
        if !self.try_close() {
            self.close_contended()?;
        }
        Ok(self.enter())
    }

    /// The write's guard, once this thread closed the shard: waits for the
    /// readers in to leave.
    #[inline]
    fn enter(&self) -> WriteGuard<'_, T> {
        if !self.drained() {
            self.wait_for_readers();
        }
        self.owner.store(thread_token(), Ordering::Relaxed);
        WriteGuard {
            lock: self,
            _on_this_thread: PhantomData,
        }
    }

    /// Closes the shard once the writer in has left (another writer may
    /// close it first: then waits again). From user code under another
    /// shard's lock, or on a thread named the leader of a load, rollback or
    /// repair, the wait is registered in [`crate::lock_waits`] until the
    /// shard is closed.
    ///
    /// # Errors
    ///
    /// [`Cycle`] (the shard not closed) if the wait would close a cycle.
    #[cold]
    #[inline(never)]
    fn close_contended(&self) -> Result<(), Cycle> {
        self.refuse_reentry();
        let _waiting = waiting_for(self.id())?;
        loop {
            self.wait_open();
            if self.try_close() {
                return Ok(());
            }
        }
    }

    /// Panics if this thread holds the write lock: it is about to wait for
    /// the lock's holder, itself. Relaxed suffices: a thread reads its own
    /// token only where it stored it itself (and has not yet cleared it).
    #[cold]
    #[inline(never)]
    fn refuse_reentry(&self) {
        if self.held_here() {
            panic!("{REENTRY}");
        }
    }

    /// Whether this thread holds the write lock.
    pub(crate) fn held_here(&self) -> bool {
        let me = thread_token();
        me != 0 && self.owner.load(Ordering::Relaxed) == me
    }

    /// Waits until every reader that was in when the shard closed has left.
    #[cold]
    #[inline(never)]
    fn wait_for_readers(&self) {
        let mut spins = 0;
        while !self.drained() {
            backoff(&mut spins);
        }
    }

    /// Exclusive access if no writer holds the lock and no reader is in,
    /// without waiting for either.
    pub(crate) fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        if !self.try_close() {
            return None;
        }
        if !self.drained() {
            self.open();
            return None;
        }
        self.owner.store(thread_token(), Ordering::Relaxed);
        Some(WriteGuard {
            lock: self,
            _on_this_thread: PhantomData,
        })
    }

    /// The data's address (for layout checks).
    #[cfg(test)]
    pub(crate) fn data_ptr(&self) -> *mut T {
        self.data.get()
    }
}

/// Shared access to a shard; the read ends when it drops, on the thread
/// that took it (it is neither `Send` nor `Sync`).
pub(crate) struct ReadGuard<'a, T> {
    lock: &'a ShardLock<T>,
    count: Count<'a>,
    /// A plain store to the thread's own counter ends the read: another
    /// thread must not drop the guard.
    _on_this_thread: PhantomData<*const ()>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard's count was raised before a fence and then
        // found the shard open; a writer closes it, fences, then waits for
        // every count to read zero before it touches the data, and this
        // count stays raised until the guard drops.
        #[allow(unsafe_code)]
        unsafe {
            &*self.lock.data.get()
        }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.count.lower();
    }
}

/// Exclusive access to a shard; the write ends when it drops, on the
/// thread that took it (the lock's owner token is that thread's).
pub(crate) struct WriteGuard<'a, T> {
    lock: &'a ShardLock<T>,
    _on_this_thread: PhantomData<*const ()>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the writer mutex, closed the shard and
        // saw every reader count for it at zero: no other reference to the
        // data exists until it drops.
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
        // Before the shard opens: the next writer stores its own.
        self.lock.owner.store(0, Ordering::Relaxed);
        self.lock.open();
    }
}

#[cfg(all(test, not(loom)))]
#[path = "shard_lock_tests.rs"]
mod tests;
