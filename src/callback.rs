//! This thread's mark while a cache runs user code under a shard's lock (a
//! `compute` closure, a `retain` predicate, a weigher, an expiry rule), and
//! the shards whose locks that code runs under (an expiry rule names none
//! itself: it runs before its write takes the lock, or inside a `compute`
//! closure, which named the shard).
//!
//! Such code must not call the cache: a call that reaches the shard it runs
//! under panics (see `shard_lock.rs`), and so does one that would close a
//! cycle of such calls waiting for each other's shards (see
//! `lock_waits.rs`, which reads the held shards named here). `sync` and
//! `rewrite_log` reach shards in ways no lock word can check, by waiting
//! for another thread's rollback, which may be waiting for the very shard
//! held here; with the mark they refuse at once instead
//! (`PersistError::InCallback`).

use std::cell::Cell;

/// How many nested pieces of user code name the shard they run under; one
/// nested deeper names none.
const NAMED: usize = 8;

/// The shard whose lock a piece of user code runs under, named by the
/// address of the shard's data (as a wait for that lock names it).
#[derive(Clone, Copy)]
pub(crate) struct Held(usize);

impl Held {
    /// No shard: the tests' checks weigh entries under a read lock, which
    /// no writer can hold meanwhile.
    #[cfg(test)]
    pub(crate) const NONE: Self = Self(0);

    /// The shard `data`: reached through a write guard on its lock (the
    /// only way to a locked shard's `&mut`), or owned outright, so this
    /// thread holds it for as long as the borrow lasts.
    #[inline]
    pub(crate) fn of<T>(data: &mut T) -> Self {
        Self(std::ptr::from_mut(data) as usize)
    }
}

thread_local! {
    /// How many pieces of user code run under a shard's lock on this thread
    /// (one inside another when such code calls another cache).
    static UNDER_LOCK: Cell<u32> = const { Cell::new(0) };
    /// How many of those named the shard they run under.
    static NAMING: Cell<u32> = const { Cell::new(0) };
    /// The shards they named, outermost first; the first `NAMING` (at most
    /// `NAMED`) are current.
    static HELD: [Cell<usize>; NAMED] = const { [const { Cell::new(0) }; NAMED] };
}

/// Runs `f`, user code called under a shard's lock, with this thread
/// marked; the mark comes off when `f` returns or panics.
#[inline]
pub(crate) fn under_lock<R>(f: impl FnOnce() -> R) -> R {
    struct Unmark;
    impl Drop for Unmark {
        #[inline]
        fn drop(&mut self) {
            UNDER_LOCK.with(|n| n.set(n.get().saturating_sub(1)));
        }
    }
    UNDER_LOCK.with(|n| n.set(n.get().saturating_add(1)));
    let _unmark = Unmark;
    f()
}

/// [`under_lock`], with the shard `held` whose lock its caller holds
/// named for as long as `f` runs.
#[inline]
pub(crate) fn under_shard_lock<R>(held: Held, f: impl FnOnce() -> R) -> R {
    struct Unname(u32);
    impl Drop for Unname {
        #[inline]
        fn drop(&mut self) {
            NAMING.with(|n| n.set(self.0));
        }
    }
    let depth = NAMING.with(Cell::get);
    if let Some(slot) = usize::try_from(depth).ok().filter(|&d| d < NAMED) {
        HELD.with(|h| h[slot].set(held.0));
    }
    NAMING.with(|n| n.set(depth.saturating_add(1)));
    let _unname = Unname(depth);
    under_lock(f)
}

/// Whether this thread is running user code under a shard's lock.
pub(crate) fn in_locked_callback() -> bool {
    UNDER_LOCK.with(|n| n.get() > 0)
}

/// The shards this thread's running user code holds, as [`Held`] names
/// them; empty outside such code.
pub(crate) fn held() -> Vec<usize> {
    let depth = NAMING.with(Cell::get);
    let named = usize::try_from(depth).map_or(NAMED, |d| d.min(NAMED));
    HELD.with(|h| {
        h[..named]
            .iter()
            .map(Cell::get)
            .filter(|&shard| shard != 0)
            .collect()
    })
}
