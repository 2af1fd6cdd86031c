//! Removing an entry and changing its time to live: each logged, and
//! undone if the log does not keep it.

use super::Cache;
use crate::listener::{RemovalCause, Removed};
use crate::persist::journal::Ticket;
use crate::persist::RecordRef;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Removes `key`, returning its value if it was live. A load of `key`
    /// in flight (see [`get_or_insert_with`](Self::get_or_insert_with))
    /// does not store its value, even if `key` was absent.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_as(key, false)
    }

    /// [`remove`](Self::remove); with `kept`, an entry kept past its time
    /// to live for the refresh windows counts as live (replay takes it back
    /// as it was logged).
    pub(super) fn remove_as<Q>(&self, key: &Q, kept: bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate(key);
        let mut env = self.env(s);
        if kept {
            env.grace = 0;
        }
        if let Err(e) = self.admit() {
            self.report(e);
            return None;
        }
        let (taken, ticket) = {
            let mut shard = self.inner.shards[s].write();
            let undo = self.undo_for(&shard, &env, hash, key, None);
            let taken = shard.remove(&env, hash, key);
            let ticket = match &taken {
                Some(((k, _), _)) => match self.encode(|| RecordRef::Remove { key: k }) {
                    Ok(record) => self.append(record, undo),
                    Err(e) => Ticket::Failed(e),
                },
                _ => Ticket::None,
            };
            (taken, ticket)
        };
        let kept = self.settle_or_report(ticket);
        let ((k, v), expired) = taken?;
        if !kept {
            // Undone: the entry is back.
            return None;
        }
        let cause = if expired {
            RemovalCause::Expired
        } else {
            RemovalCause::Removed
        };
        let live = (!expired).then(|| v.clone());
        let mut removed = Removed::new();
        removed.push((k, v, cause));
        self.notify(removed);
        live
    }

    /// Logs a removal of `key` if the cache holds no entry for it, without
    /// waiting for the log: the returned ticket is the caller's to settle
    /// (with [`settle`](Self::settle), with no shard locked), so that many
    /// such removals wait for one fsync. For a key that left memory without
    /// a record of it (evicted, or expired and reclaimed: a removal the
    /// cache makes itself), whose records the log still holds.
    ///
    /// A key held again (written since it left) is left alone: its write
    /// was logged after it left, and a replay ends with it. A refusal (the
    /// log is failed) is reported, as a write's is, and gives
    /// [`Ticket::None`]; so does a cache without a log.
    pub(crate) fn log_gone(&self, key: &K) -> Ticket {
        if self.journal().is_none() {
            return Ticket::None;
        }
        let (hash, s) = self.locate(key);
        let env = self.env(s);
        if let Err(e) = self.admit() {
            self.report(e);
            return Ticket::None;
        }
        let shard = self.inner.shards[s].write();
        if shard.key_of(hash, key).is_some() {
            return Ticket::None;
        }
        // Restores the key's absence if the log fails to keep the record:
        // a failed append is then refused, and reported to the caller.
        let undo = self.undo_for(&shard, &env, hash, key, Some(key));
        match self.encode(|| RecordRef::Remove { key }) {
            Ok(record) => self.append(record, undo),
            Err(e) => Ticket::Failed(e),
        }
    }

    /// Under `CacheBuilder::log_evictions`, appends a removal for each entry
    /// in `removed` that a write evicted, before the write's own record
    /// (call under the write's shard lock, before its append): the write's
    /// ticket, settled after, covers them (a log is durable in order). A
    /// failed append here fails the log, so the write's own append is
    /// refused and the write undone; the evicted entries stay gone, and the
    /// repair rewrites the log from memory.
    pub(crate) fn log_evicted(&self, removed: &Removed<K, V>) {
        if !self.inner.log_evictions {
            return;
        }
        for (key, _, cause) in removed.iter() {
            if *cause == RemovalCause::Evicted {
                match self.encode(|| RecordRef::Remove { key }) {
                    // No undo: an evicted entry stays gone. A failure is
                    // kept for the repair and refuses the write's append.
                    Ok(record) => {
                        let _ = self.append(record, None);
                    }
                    Err(e) => self.report(e),
                }
            }
        }
    }

    /// Sets (`Some`) or clears (`None`) the time to live of a live `key`.
    /// Returns false if there is no live entry.
    pub fn set_ttl<Q>(&self, key: &Q, ttl: Option<Duration>) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.set_deadline_of(key, NewDeadline::Ttl(ttl))
    }

    /// [`set_ttl`](Self::set_ttl), or with [`NewDeadline::Stored`] a
    /// deadline as a log holds it: the refresh windows' grace already
    /// included, and set on an entry kept for those windows too (replay sets
    /// it as it was set).
    pub(super) fn set_deadline_of<Q>(&self, key: &Q, new: NewDeadline) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate(key);
        let mut env = self.env(s);
        let deadline = match new {
            NewDeadline::Ttl(ttl) => self.stored_deadline(ttl.map(|t| env.deadline_after(t))),
            NewDeadline::Stored(deadline) => {
                env.grace = 0;
                deadline
            }
        };
        if let Err(e) = self.admit() {
            self.report(e);
            return false;
        }
        let (applied, ticket) = {
            let mut shard = self.inner.shards[s].write();
            let undo = self.undo_for(&shard, &env, hash, key, None);
            let applied = shard.set_expiry(&env, hash, key, deadline);
            let ticket = match shard.key_of(hash, key) {
                Some(k) if applied && self.journal().is_some() => {
                    let expires_at = deadline.map(|d| self.wall_ms(d));
                    match self.encode(|| RecordRef::Expire { key: k, expires_at }) {
                        Ok(record) => self.append(record, undo),
                        Err(e) => Ticket::Failed(e),
                    }
                }
                _ => Ticket::None,
            };
            (applied, ticket)
        };
        self.settle_or_report(ticket) && applied
    }
}

/// The deadline [`Cache::set_deadline_of`] sets.
pub(super) enum NewDeadline {
    /// A time to live from now (`None`: none), as a caller gives it.
    Ttl(Option<Duration>),
    /// A deadline on the cache's clock (`None`: none), as a log holds it.
    Stored(Option<u64>),
}
