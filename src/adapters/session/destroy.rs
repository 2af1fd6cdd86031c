//! Ending sessions on request: [`SessionStore::destroy`] and
//! [`SessionStore::destroy_all_for_user`]. Each returns `Ok` only once no
//! later open can bring back what it ended: the removals it made are
//! logged, a session id that is not live is logged as removed all the same
//! (it may have been evicted, or expired, with its records still in the
//! log), and the log holds no session the open found ended (`reopen.rs`).

use super::id::SessionId;
use super::{SessionError, SessionStore};
use serde::de::DeserializeOwned;
use serde::Serialize;

impl<T> SessionStore<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Ends session `id`. Returns whether it was live. Whether or not it
    /// was, no later open brings it back, even on a wall clock set back
    /// before its deadline: a session that ended while the process was down
    /// is rewritten out of the log by the open that found it ended; one
    /// that was evicted, or expired and was reclaimed, was logged as
    /// removed when it left memory (see
    /// [`SessionStore`](SessionStore#evictions-and-expiries-are-logged)),
    /// and `destroy` logs its removal again (`false`). An `id` that no
    /// [`SessionId`] could be (not 22 characters of URL-safe base64, as
    /// ids are made) logs nothing: requests with made-up ids do not grow
    /// the log. A well-formed id that is not live adds one record each
    /// time.
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] if the log could not keep the removal.
    /// Under [`Fsync::Always`](crate::persist::Fsync::Always) (the
    /// default) the session is then still live, and still valid after a
    /// restart. Under a buffering log the removal the failure met stays in
    /// memory (the session is gone) but is not yet logged: until
    /// [`sync`](Self::sync) repairs the log, a restart can bring the session
    /// back. Call `sync`, then `destroy` again. Also when `id` is not live
    /// and the log could not yet be rewritten without the sessions that
    /// ended while the process was down (the open tried, and this call
    /// tried again): on a wall clock set back, a later open could load
    /// such a session again. Call `destroy` again.
    pub fn destroy(&self, id: &str) -> Result<bool, SessionError> {
        let live = self.cache.durably(|| self.cache.remove(id))?.is_some();
        self.settle_gone()?;
        if !live {
            self.drop_lapsed()?;
            // Logged after the rewrite (into the log it leaves). An id no
            // session could have is not logged.
            if SessionId::is_well_formed(id) {
                let id = id.to_string();
                self.cache.durably(|| {
                    let logged = self.cache.log_gone(&id);
                    self.cache.settle_or_report(logged);
                })?;
            }
        }
        Ok(live)
    }

    /// Ends every session of `user` (e.g. on a password change); returns how
    /// many were live. Visits only that user's sessions.
    ///
    /// When it returns `Ok`, no session of `user` created before the call
    /// began is live, even while other calls for `user` run at the same
    /// time: calls for one user take turns (the one that found a session
    /// counts it, the others do not). Nor does any come back at a later
    /// open: those evicted or expired before the call (no longer in the
    /// user's index) were logged as removed when they left memory.
    ///
    /// # Errors
    ///
    /// [`SessionError::Persist`] if the log could not keep a removal: the
    /// sessions it could not remove are still live (under a buffering log,
    /// the one whose removal met the failure is gone from memory but not
    /// yet logged, as in [`destroy`](Self::destroy)); call
    /// [`sync`](Self::sync), then again. Also if the log could not yet be
    /// rewritten without the sessions that ended while the process was
    /// down, as in [`destroy`](Self::destroy), or is failed and not yet
    /// repaired (a removal of a session the store dropped may not be
    /// logged: the repair logs it): call again.
    pub fn destroy_all_for_user(&self, user: &str) -> Result<usize, SessionError> {
        // Held until every removal is settled: a concurrent call for `user`
        // finds the index empty once this one has taken the ids out, and
        // must not return before they are removed (or back in the index,
        // for it to remove).
        let turn = self.user_locks.lock(user);
        let ids = self.users.lock().remove(user).unwrap_or_default();
        let mut destroyed = 0;
        let mut failure = None;
        for id in ids {
            match self.cache.durably(|| self.cache.remove(&id)) {
                Ok(removed) => destroyed += usize::from(removed.is_some()),
                Err(e) => {
                    // Still live: back in the index, so a retry finds it. A
                    // buffering log keeps in memory the removal the failure
                    // met; that id stays out.
                    if self.cache.contains_key(&id) {
                        self.users
                            .lock()
                            .entry(user.to_string())
                            .or_default()
                            .insert(id);
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        drop(turn);
        if let Some(e) = failure {
            return Err(e.into());
        }
        self.settle_gone()?;
        // A removal of one of the user's sessions that the store dropped
        // (no longer indexed) that the log failed to keep: refused until
        // the repair, which rewrites the log without it.
        self.cache.admit()?;
        self.drop_lapsed()?;
        Ok(destroyed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SessionConfig, SessionStore};
    use crate::persist::{FileLog, Fsync, MemStorage};

    /// A log failure on the removal `destroy` logs for an id that is not
    /// live is its error, under both kinds of log; once the log is
    /// repaired the same call succeeds.
    #[test]
    fn destroy_of_an_id_not_live_reports_the_log_failure() {
        for fsync in [Fsync::Always, Fsync::EverySecond] {
            let storage = MemStorage::new();
            let log = FileLog::with_storage(storage.clone(), fsync)
                .write_delay(std::time::Duration::ZERO);
            let store: SessionStore<u32> =
                SessionStore::with_log(log, SessionConfig::default()).expect("open");
            let id = super::SessionId::random().expect("random");
            storage.fail_after(0);
            assert!(store.destroy(id.as_str()).is_err(), "{fsync:?}");
            storage.heal();
            assert!((0..10).any(|_| store.sync().is_ok()), "{fsync:?}: repaired");
            assert!(!store.destroy(id.as_str()).expect("healthy"), "{fsync:?}");
        }
    }
}
