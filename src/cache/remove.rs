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
