//! The journal's recovery from a failed log: the rollback of what the log
//! did not keep, and the repair that rewrites the log from the cache.

use super::{Journal, RETAKE, RETRY_EVERY};
use crate::flight_waits::{Named, Waiting};
use crate::persist::{PersistError, RewriteKind, Snapshot};
use crate::sync::Arc;
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl<K: 'static, V: 'static> Journal<K, V> {
    /// Undoes, newest first, every write the log has not made durable.
    ///
    /// One record at a time, taken from the pending list each time: a
    /// writer that applied to a key while the rollback waited for that
    /// key's shard (it was admitted before the failure) pushes its own undo
    /// record, whose value may be one this rollback has still to undo; as
    /// the newest, it is applied before that one, so the key ends as it was
    /// before every refused write.
    ///
    /// Each undo runs the cache's listener on this thread, marked (see
    /// [`undoing_here`](Self::undoing_here)): the calls that would wait
    /// for this rollback to end (`sync`, a rewrite) are refused from there.
    /// None of the listener's writes comes back here: while the log is
    /// failed, each is refused before it is applied, or (a retain's
    /// removal) kept with no undo record.
    ///
    /// # Errors
    ///
    /// [`PersistError::InCallback`] if a rollback runs on another thread
    /// and waiting for it would close a cycle of waits (its listener waits
    /// for a load this thread leads, see `waits.rs`): this thread goes on
    /// instead, and that rollback undoes what is pending once it can.
    /// Likewise if an undo's wait for its key's shard would close a cycle
    /// (the shard is held by code waiting, through others, for this
    /// thread): the rollback stops there, its record and the older ones
    /// left for the next rollback.
    pub(crate) fn roll_back(&self) -> Result<(), PersistError> {
        let mut state = self.state.lock();
        if state.rolling_back {
            let Ok(_waiting) = Waiting::register(&self.rolling_back_by) else {
                return Err(self.cycle_error("sync"));
            };
            while state.rolling_back {
                self.settled.wait(&mut state);
            }
        }
        if state.failed.is_none() {
            return Ok(());
        }
        let durable = self.log.durable_lsn();
        let first = state.pending.partition_point(|(l, _)| *l <= durable);
        state.pending.drain(..first);
        if state.pending.is_empty() {
            return Ok(());
        }
        state.rolling_back = true;
        let named = Named::here(&self.rolling_back_by);
        // The LSNs undone, recorded before each undo is applied, so that a
        // waiter whose fsync ends late learns its write is gone.
        let range = state.undone.len();
        state.undone.push((durable, durable));
        // A listener that panics while an undo notifies it does not stop
        // the rollback (nor leave it marked running): the panic goes on
        // once every record is undone.
        let (mut panicked, mut cycle) = (None, false);
        while let Some((lsn, record)) = state.pending.pop() {
            if lsn != u64::MAX && lsn > state.undone[range].1 {
                state.undone[range].1 = lsn;
            }
            let pushes = state.pushes;
            drop(state);
            let mut applied = Ok(());
            if let Some(hooks) = self.hooks.get() {
                let undo = std::panic::AssertUnwindSafe(|| {
                    let _marked = Undoing::enter(self.id());
                    hooks.undo(&record)
                });
                match std::panic::catch_unwind(undo) {
                    Ok(done) => applied = done,
                    Err(payload) => {
                        panicked.get_or_insert(payload);
                    }
                }
            }
            state = self.state.lock();
            if applied.is_err() {
                // Given back before the records pushed since it was taken
                // (newer writes to its key, undone first next time).
                let newer = usize::try_from(state.pushes.wrapping_sub(pushes)).unwrap_or(0);
                let at = state.pending.len().saturating_sub(newer);
                state.pending.insert(at, (lsn, record));
                cycle = true;
                break;
            }
        }
        state.rolling_back = false;
        drop(named);
        drop(state);
        self.settled.notify_all();
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        if cycle {
            return Err(self.cycle_error("sync"));
        }
        Ok(())
    }

    /// Repairs a failed log now: rewrites it from the cache once the cache
    /// holds nothing the log did not keep (see
    /// [`rewrite_clean`](Self::rewrite_clean)). Writes resume if that
    /// succeeds. One repair runs at a time; one that waited for another
    /// finds the log repaired, or repairs it again.
    ///
    /// # Errors
    ///
    /// As [`rewrite_clean`](Self::rewrite_clean) and
    /// [`resume`](Self::resume); [`PersistError::InCallback`] if waiting
    /// for the repair running on another thread would close a cycle of
    /// waits: the repair running waits, through others, for this thread (a
    /// load it leads, a shard its code holds, a rollback it runs).
    pub(super) fn repair(&self) -> Result<(), PersistError> {
        let _one = self
            .repairing
            .hold()
            .map_err(|_| self.cycle_error("sync"))?;
        if self.state.lock().failed.is_none() {
            return Ok(());
        }
        let hooks = self
            .hooks
            .get()
            .ok_or_else(|| self.refused("no cache".into()))?;
        hooks.rewrite(self, RewriteKind::Repair)?;
        self.resume()
    }

    /// The repair's rewrite: rolls back every write the log did not keep,
    /// then swaps in a snapshot of the cache, only if that snapshot holds
    /// none of them.
    ///
    /// A writer admitted before the failure may apply its write after the
    /// rollback (it waited for its shard, or ran a `compute` closure); the
    /// log refuses it at its append and its undo record is pushed, but until
    /// that record is applied the snapshot can read the refused value. So the
    /// snapshot is kept only if, as it starts, no undo record waits or is
    /// being applied, and no write was refused from then to its end (a
    /// refused write is applied and counted under its shard's lock, so one
    /// the snapshot read was counted before it ended). Otherwise the attempt
    /// is given up before its swap, and the rollback and the snapshot are
    /// taken again. A write refused at its append with no undo record (a
    /// retain's removal, or any write in the buffered modes) stays in
    /// memory, and retakes the snapshot likewise (one that read the key
    /// before it would log the key's old state). Each retry follows a
    /// write refused at its append; while the log is failed only writes
    /// admitted before the failure get there, and retains, which only
    /// remove entries and cannot add any meanwhile, so the retries end.
    ///
    /// # Errors
    ///
    /// The rewrite's; [`PersistError::InCallback`] where the rollback, the
    /// wait for the one-rewrite-at-a-time lock or a read of the snapshot
    /// would close a cycle of waits.
    pub(super) fn rewrite_clean(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError> {
        loop {
            self.roll_back()?;
            let mut retake = false;
            let one = self
                .one_rewrite
                .hold()
                .map_err(|_| self.cycle_error("sync"))?;
            let result = self.log.rewrite(&mut |emit| {
                let seen = {
                    let state = self.state.lock();
                    if !state.pending.is_empty() || state.rolling_back {
                        retake = true;
                        return Err(self.refused(RETAKE.into()));
                    }
                    state.refused
                };
                snapshot(emit)?;
                if self.state.lock().refused != seen {
                    retake = true;
                    return Err(self.refused(RETAKE.into()));
                }
                Ok(())
            });
            drop(one);
            if !retake {
                return result;
            }
        }
    }

    /// Ends the failure once the repaired log holds the cache's state. A
    /// write refused after the repair's snapshot is not in the new log, and
    /// once writes resume nothing would undo it: it is undone first.
    ///
    /// # Errors
    ///
    /// As [`roll_back`](Self::roll_back): the failure stays, for a later
    /// repair to end.
    fn resume(&self) -> Result<(), PersistError> {
        let mut state = self.state.lock();
        while !state.pending.is_empty() || state.rolling_back {
            drop(state);
            self.roll_back()?;
            state = self.state.lock();
        }
        state.failed = None;
        self.failed.store(false, Ordering::Release);
        Ok(())
    }

    /// Why `call` was refused: it would wait, through others, for this
    /// thread.
    pub(crate) fn cycle_error(&self, call: &'static str) -> PersistError {
        PersistError::InCallback {
            path: self.log.describe(),
            call,
            callback: "code that the log's rollback or repair it would wait for waits for, \
                       through a cycle of waits (a load this thread leads, a shard its code \
                       holds, a rollback or repair it runs)",
        }
    }

    /// Starts a repair on a background thread, at most once a second.
    pub(super) fn repair_in_background(self: &Arc<Self>) {
        {
            let mut last = self.last_repair.lock();
            if last.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        self.spawn_rewrite(true);
    }
}

impl<K, V> Journal<K, V> {
    /// This journal's identity in the thread's marks.
    fn id(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Whether this thread is applying one of this journal's undo records
    /// (it runs the cache's listener, which may call back into the cache).
    fn undoing_here(&self) -> bool {
        let id = self.id();
        UNDOING.with(|u| u.borrow().contains(&id))
    }

    /// Refuses `call` from user code that the call could wait for: a
    /// listener an undo of this journal runs (the call would wait for the
    /// rollback running that undo), or code a cache runs under a shard's
    /// lock (a rollback the call waits for may wait for that shard).
    ///
    /// # Errors
    ///
    /// [`PersistError::InCallback`] there.
    pub(super) fn refuse_in_callback(&self, call: &'static str) -> Result<(), PersistError> {
        let callback = if self.undoing_here() {
            "a listener told of a write being undone after the log failed"
        } else if crate::callback::in_locked_callback() {
            "code a cache runs under a shard's lock (a compute closure, a retain predicate, \
             a weigher, an expiry rule)"
        } else {
            return Ok(());
        };
        Err(PersistError::InCallback {
            path: self.log.describe(),
            call,
            callback,
        })
    }
}

thread_local! {
    /// The journals whose undo records this thread is applying, innermost
    /// last (a listener may roll back another cache's log).
    static UNDOING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// This thread's mark while it applies an undo record; dropping it (also
/// when a listener panics) takes the mark off.
struct Undoing;

impl Undoing {
    fn enter(journal: usize) -> Self {
        UNDOING.with(|u| u.borrow_mut().push(journal));
        Self
    }
}

impl Drop for Undoing {
    fn drop(&mut self) {
        UNDOING.with(|u| u.borrow_mut().pop());
    }
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
