//! What a reopened store settles in its log, once the replay is done: the
//! sessions the log still holds past their end.
//!
//! * A session whose deadline passed while the process was down is not
//!   loaded, but the log still holds its records, dated by the wall clock.
//!   Were they left there, a wall clock set back before that deadline
//!   would load the session live again at a later open, even after a
//!   `destroy` had found it not live (and logged nothing). So the log is
//!   rewritten without them as the store opens. If that fails, the store
//!   opens all the same, and `destroy` and `destroy_all_for_user` try the
//!   rewrite again and report its failure, so neither returns `Ok` while
//!   such a session could still come back.
//! * A session whose idle deadline the log places past its absolute one
//!   (see [`OVERHANG`]) is ended at its absolute deadline, logged.

use super::{SessionError, SessionStore, OVERHANG};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl<T> SessionStore<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Ends each of `sessions` (id, time left to its absolute deadline) at
    /// its absolute deadline, once the index lock is released (a removal
    /// calls the listener).
    pub(super) fn end_at_absolute(&self, sessions: Vec<(String, Duration)>) {
        for (id, left) in sessions {
            // As in `get`: if the log cannot keep it now, the next open
            // does it again.
            let _ = self.cache.durably(|| {
                if left.is_zero() {
                    self.cache.remove(&id);
                } else {
                    self.cache.set_ttl(&id, Some(left));
                }
            });
        }
        self.settle_gone_or_report();
    }

    /// Rewrites the log without the sessions the replay found ended, if it
    /// may still hold some: the rewrite writes the live sessions only.
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] if the rewrite failed: the log may still
    /// hold them, and the next call tries again.
    pub(super) fn drop_lapsed(&self) -> Result<(), SessionError> {
        if !self.lapsed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.cache.rewrite_log()?;
        self.lapsed.store(false, Ordering::Release);
        Ok(())
    }
}

/// Whether a replayed session's cache TTL `ttl` reaches more than
/// [`OVERHANG`] past its absolute deadline, `left` from now: its idle
/// deadline was logged on a wall clock stepped forward since its absolute
/// deadline was (by a compaction, or a `touch` that logged the idle deadline
/// only), and the counts would go on seeing it after [`SessionStore::get`]
/// stopped.
pub(super) fn overhangs(ttl: Option<Duration>, left: Duration) -> bool {
    ttl.is_none_or(|ttl| ttl > left.saturating_add(OVERHANG))
}
