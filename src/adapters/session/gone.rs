//! Sessions that leave memory with no removal logged: evicted at
//! `max_sessions`, or expired and reclaimed. The log still holds their
//! records, and a replay would load them again: an evicted one after any
//! restart, an expired one on a wall clock set back before its deadline,
//! even after a `destroy` that found it not live. So each is logged as
//! removed, as Redis propagates its evictions and expirations to its AOF
//! as `DEL`s. An evicted session's removal is logged by the write that
//! evicted it, just before that write's own record
//! (`CacheBuilder::log_evictions`): a crash between the two leaves the
//! session removed and the write unacknowledged. An expired one is logged
//! from the listener, below. The store's log is replayed folded (see
//! `cache/replay_fold.rs`), so that a session live before a restart is live
//! after it, whatever the order of its records.
//!
//! The cache's eviction listener hands each expired id to [`Gone::left`],
//! which appends the removal without waiting for the log; the store's call
//! that made the cache drop it then waits once for all of them
//! ([`Gone::settle`]): a `count` that reclaims a thousand expired sessions
//! waits for one fsync, not a thousand. A failure goes to that call's
//! error where it returns one (inside its `durably` scope), else to the
//! next [`SessionStore::sync`](super::SessionStore::sync).
//!
//! Locks: the listener runs with no lock of the cache held (the shard's is
//! released before removals are notified) and with no lock held that it
//! takes: it takes the user index's lock (to unindex) and then the shard
//! lock of the id it logs, and no store call holds the index's lock across
//! a cache call (`destroy_all_for_user` holds a user's turn, which the
//! listener never takes). The shard lock is held for the append alone, and
//! a removal of an id with no entry notifies nothing: no cycle of waits,
//! no re-entry. A listener told of an undo (a write the failed log did not
//! keep) appends nothing: the failed log refuses the record, and the
//! repair rewrites the log from memory, which no longer holds the session.
//!
//! Until [`Gone::attach`] (while the log is replayed, before the journal is
//! attached) nothing is logged: a session the replay drops (more sessions
//! held than room, as a log written before evictions were logged may hold)
//! is noted instead, and the store rewrites the log without it at open.

use super::Session;
use crate::cache::Inner;
use crate::hash::DefaultHashBuilder;
use crate::listener::RemovalCause;
use crate::persist::journal::Ticket;
use crate::persist::PersistError;
use crate::Cache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};

/// What a store's eviction listener needs to log the sessions the cache
/// drops itself (shared by the listener and the store).
pub(super) struct Gone<T> {
    /// The store's cache, once its log is replayed. Weak: the cache holds
    /// the listener that holds this.
    cache: OnceLock<Weak<Inner<String, Session<T>, DefaultHashBuilder>>>,
    /// The newest logged removal no call has waited for yet (0: none).
    unsettled: AtomicU64,
    /// Whether a session left before [`attach`](Self::attach).
    dropped_early: AtomicBool,
}

impl<T> Gone<T>
where
    T: Clone + Send + Sync + 'static,
{
    pub(super) fn new() -> Self {
        Self {
            cache: OnceLock::new(),
            unsettled: AtomicU64::new(0),
            dropped_early: AtomicBool::new(false),
        }
    }

    /// From now on, logs the sessions `cache` drops itself.
    pub(super) fn attach(&self, cache: &Cache<String, Session<T>>) {
        let _ = self.cache.set(cache.downgrade());
    }

    /// Whether the cache dropped a session before [`attach`](Self::attach).
    pub(super) fn dropped_early(&self) -> bool {
        self.dropped_early.load(Ordering::Acquire)
    }

    /// The listener's part: session `id` left the cache for `cause`. A
    /// removal or a replacement was logged by the write that made it (or,
    /// as an undo's, restores what the log holds), and so was an eviction,
    /// by the write that made it, once the log is attached; any other cause
    /// (an expiry) is logged here.
    pub(super) fn left(&self, id: &String, cause: RemovalCause) {
        if matches!(cause, RemovalCause::Removed | RemovalCause::Replaced) {
            return;
        }
        let Some(cache) = self.cache.get() else {
            self.dropped_early.store(true, Ordering::Release);
            return;
        };
        // The write that evicted it logged its removal, before its own
        // record (`CacheBuilder::log_evictions`).
        if cause == RemovalCause::Evicted {
            return;
        }
        // Gone only while the last handle is being dropped.
        let Some(cache) = Cache::upgrade(cache) else {
            return;
        };
        match cache.log_gone(id) {
            Ticket::Lsn(lsn) => {
                self.unsettled.fetch_max(lsn, Ordering::AcqRel);
            }
            Ticket::None => {}
            // A failed append: rolled back and reported now.
            failed @ Ticket::Failed(_) => {
                cache.settle_or_report(failed);
            }
        }
    }

    /// Waits until every removal logged so far is as durable as the log
    /// promises (a call that dropped sessions calls this before it returns).
    ///
    /// # Errors
    ///
    /// The log's failure to keep them.
    pub(super) fn settle(&self, cache: &Cache<String, Session<T>>) -> Result<(), PersistError> {
        match self.unsettled.swap(0, Ordering::AcqRel) {
            0 => Ok(()),
            lsn => cache.settle(Ticket::Lsn(lsn)),
        }
    }
}
