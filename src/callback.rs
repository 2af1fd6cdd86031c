//! This thread's mark while a cache runs user code under a shard's lock (a
//! `compute` closure, a `retain` predicate, a weigher, an expiry rule).
//!
//! Such code must not call the cache: a call that reaches the shard it runs
//! under panics (see `shard_lock.rs`). `sync` and `rewrite_log` reach
//! shards in ways no lock word can check, by waiting for another thread's
//! rollback, which may be waiting for the very shard held here; with the
//! mark they refuse at once instead (`PersistError::InCallback`).

use std::cell::Cell;

thread_local! {
    /// How many pieces of user code run under a shard's lock on this thread
    /// (one inside another when such code calls another cache).
    static UNDER_LOCK: Cell<u32> = const { Cell::new(0) };
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

/// Whether this thread is running user code under a shard's lock.
pub(crate) fn in_locked_callback() -> bool {
    UNDER_LOCK.with(|n| n.get() > 0)
}
