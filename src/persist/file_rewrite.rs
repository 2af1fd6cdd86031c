//! [`FileLog`](super::FileLog)'s rewrite: a snapshot and the records
//! appended meanwhile, written to a replacement that is swapped in.

use super::{LogInner, Storage};
use crate::persist::frame;
use crate::persist::storage::RewriteTarget;
use crate::persist::{PersistError, RewriteKind, Snapshot};
use crate::sync::Ordering;
use std::io;

impl<S: Storage> LogInner<S> {
    /// Runs one rewrite at a time.
    pub(super) fn rewrite_one(
        &self,
        snapshot: &mut Snapshot<'_>,
        kind: RewriteKind,
    ) -> Result<(), PersistError> {
        let _one_rewrite = self.rewrite_lock.lock();
        let result = self.rewrite(snapshot, kind);
        if result.is_err() {
            // Try again only after the log has grown as much once more.
            self.base
                .store(self.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        result
    }

    /// Writes the snapshot, then the records appended meanwhile, to a
    /// replacement and swaps it in (with appends paused only for the swap).
    ///
    /// Only a repair ends a failure of the log. A compaction checks that the
    /// log has not failed under the `appended` lock, in the step that starts
    /// its carry-over, and [`fail`](LogInner::fail) drops the carry-over
    /// under that lock; rewrites run one at a time, so nothing clears a
    /// failure between that step and the swap. A compaction that swaps has
    /// therefore met no failure from the start of its carry-over to its
    /// swap, nor an unrepaired one before: it never clears a failure, and
    /// never replaces the log with a snapshot that may still hold writes the
    /// failure cost (their rollback comes after the failure).
    pub(super) fn rewrite(
        &self,
        snapshot: &mut Snapshot<'_>,
        kind: RewriteKind,
    ) -> Result<(), PersistError> {
        let mut next = self
            .storage
            .begin_rewrite()
            .map_err(|e| self.io("starting a rewrite of", e))?;
        let fingerprint = self.fingerprint.load(Ordering::Relaxed);
        next.append(&frame::header(fingerprint))
            .map_err(|e| self.io("rewriting", e))?;
        // From here every append is also kept for the replacement, so a
        // write the snapshot misses is carried over.
        {
            let mut appended = self.appended.lock();
            if let (RewriteKind::Compaction, Some(cause)) = (kind, &appended.failed) {
                return Err(self.stopped_error(cause));
            }
            appended.tail = Some(Vec::new());
        }
        let written = self.write_snapshot(&mut next, snapshot);
        let mut writer = self.writer.lock();
        let mut appended = self.appended.lock();
        // No carry-over: the log stopped meanwhile, and what it dropped may
        // be records refused to their writers.
        let tail = appended.tail.take();
        written?;
        let tail = tail.ok_or_else(|| {
            self.io(
                "rewriting",
                io::Error::other("the log failed during the rewrite"),
            )
        })?;
        next.append(&tail).map_err(|e| self.io("rewriting", e))?;
        let size = next.len();
        self.storage
            .commit_rewrite(next)
            .map_err(|e| self.io("replacing", e))?;
        // The replacement holds every record appended so far: the buffer's
        // records included (they are in the tail or the snapshot).
        super::buffer::empty(&mut appended.buf);
        appended.failed = None;
        self.stopped.store(false, Ordering::Release);
        self.starts_at(&mut writer, size);
        let lsn = appended.lsn;
        drop(appended);
        // Its bytes were synced before the swap, but the swap itself may
        // not be durable (the storage retries a failed directory sync at
        // its next sync): only a good sync makes the records durable. On a
        // failure a crash may bring back the old bytes or keep the new
        // ones, so nothing is cut, and the log stops until the next
        // rewrite: the writes not yet synced are refused.
        if let Err(e) = self.storage.sync() {
            return Err(self.fail(
                "syncing the replacement of",
                e,
                "the log was replaced but the replacement could not be made durable: \
                 whether the records since the last good sync are on disk is unknown",
            ));
        }
        drop(writer);
        self.synced.fetch_max(lsn, Ordering::AcqRel);
        Ok(())
    }

    fn write_snapshot(
        &self,
        next: &mut S::Rewrite,
        snapshot: &mut Snapshot<'_>,
    ) -> Result<(), PersistError> {
        let mut framed = Vec::new();
        snapshot(&mut |payload| {
            framed.clear();
            frame::encode(payload, &mut framed);
            next.append(&framed).map_err(|e| self.io("rewriting", e))
        })
    }
}
