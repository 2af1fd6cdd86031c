//! Operations over every shard: clear, retain, purge, iterate, and the
//! statistics summed over them.
//!
//! Each takes one shard's lock at a time (never two) and hands what it
//! removed to the listener after releasing it. Calls the shards only.

use super::Cache;
use crate::listener::Removed;
use crate::persist::journal::Ticket;
use crate::persist::RecordRef;
use crate::shard::LazyNow;
use crate::stats::CacheStats;
use std::fmt;
use std::hash::{BuildHasher, Hash};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Removes every entry. The listener sees each with [`RemovalCause::Removed`](crate::RemovalCause::Removed).
    /// Loads in flight (see [`get_or_insert_with`](Self::get_or_insert_with))
    /// do not store their values.
    pub fn clear(&self) {
        if let Some(journal) = self.journal() {
            if let Err(e) = journal.admit() {
                return self.report(e);
            }
            // Logged as one record, so every shard is cleared under one
            // critical section: no write can land between the record and a
            // shard's clearing. A log that waits for the disk is waited for
            // before clearing (a clear cannot be undone).
            let mut guards: Vec<_> = self.inner.shards.iter().map(|s| s.write()).collect();
            let record = self.encode(|| RecordRef::Clear);
            let ticket = match record {
                Ok(record) => journal.append(record, Some(Vec::new())),
                Err(e) => Ticket::Failed(e),
            };
            let ticket = match (journal.undoable(), ticket) {
                (true, ticket) => journal.wait_only(ticket).map(|()| Ticket::None),
                (false, ticket) => Ok(ticket),
            };
            let mut removed = Removed::new();
            if ticket.is_ok() {
                guards.iter_mut().for_each(|g| g.clear(&mut removed));
            }
            drop(guards);
            match ticket {
                Ok(ticket) => {
                    self.settle_or_report(ticket);
                }
                Err(e) => {
                    // As in `Journal::wait`.
                    let _ = journal.roll_back();
                    self.report(e);
                }
            }
            self.notify(removed);
            return;
        }
        // A listener that panics does not leave the other shards full.
        let mut panicked = None;
        for shard in self.inner.shards.iter() {
            let mut removed = Removed::new();
            shard.write().clear(&mut removed);
            let notify = std::panic::AssertUnwindSafe(|| self.notify(removed));
            if let Err(payload) = std::panic::catch_unwind(notify) {
                panicked.get_or_insert(payload);
            }
        }
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
    }

    /// Keeps only the live entries for which `keep` returns true; expired
    /// entries go too. An entry past its time to live but inside a refresh
    /// stale window ([`serve_stale_for`](crate::CacheBuilder::serve_stale_for),
    /// [`stale_if_error_for`](crate::CacheBuilder::stale_if_error_for)) is
    /// asked about as well: kept, it may still be served stale; refused, it
    /// leaves as expired. Locks one shard at a time.
    ///
    /// # Panics
    ///
    /// If `keep` calls this cache in a way that reaches the shard it runs
    /// under (it holds that shard's write lock, which the call would wait
    /// for: the cache panics rather than hang), or that waits for another
    /// shard in a cycle of such waits with other threads (see
    /// [`compute`](Self::compute)). `sync` and `rewrite_log`
    /// return [`PersistError::InCallback`](crate::persist::PersistError::InCallback)
    /// from it instead.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        for (s, shard) in self.inner.shards.iter().enumerate() {
            let env = self.env(s);
            let mut removed = Removed::new();
            let mut ticket = Ticket::None;
            // A predicate that panics stops the walk; what it had removed
            // by then is still logged and notified before the panic goes on.
            let mut panicked = None;
            {
                let mut guard = shard.write();
                // Each entry `keep` refused is logged (not undone if the log
                // fails: a repair rewrites the log from the cache, removals
                // included); reclaimed expired ones need no record.
                let logged = self.journal().is_some();
                let log = |k: &K| {
                    if logged {
                        match self.encode(|| RecordRef::Remove { key: k }) {
                            Ok(record) => ticket = self.append(record, None),
                            Err(e) => self.report(e),
                        }
                    }
                };
                let held = crate::callback::Held::of(&mut *guard);
                let walk = std::panic::AssertUnwindSafe(|| {
                    let mut keep =
                        |k: &K, v: &V| crate::callback::under_shard_lock(held, || keep(k, v));
                    guard.retain(&env, &mut keep, log, &mut removed);
                });
                if let Err(payload) = std::panic::catch_unwind(walk) {
                    panicked = Some(payload);
                }
            }
            self.settle_or_report(ticket);
            self.notify(removed);
            if let Some(payload) = panicked {
                std::panic::resume_unwind(payload);
            }
        }
    }

    /// Removes every entry for which `predicate` returns true (the inverse of
    /// [`retain`](Self::retain)).
    ///
    /// # Panics
    ///
    /// If `predicate` calls this cache, as [`retain`](Self::retain).
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) {
        self.retain(|k, v| !predicate(k, v));
    }

    /// Removes expired entries now rather than as writes come. Visits only
    /// the entries that can expire.
    pub fn purge_expired(&self) {
        for (s, shard) in self.inner.shards.iter().enumerate() {
            let env = self.env(s);
            let mut removed = Removed::new();
            shard.write().purge_expired(&env, &mut removed);
            self.notify(removed);
        }
    }

    /// A snapshot of the counters. See [`CacheStats`].
    pub fn stats(&self) -> CacheStats {
        self.inner.stats.snapshot()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// The live entries, cloned. Each shard is copied under its read lock, one
    /// shard at a time: the result is consistent within a shard, and a write
    /// racing with the iteration may or may not be seen. Not counted as accesses.
    ///
    /// ```
    /// let cache = shardcache::Cache::<u32, u32>::new(100);
    /// for i in 0..10 { cache.insert(i, i * i); }
    /// let mut all: Vec<_> = cache.iter().collect();
    /// all.sort();
    /// assert_eq!(all[3], (3, 9));
    /// ```
    pub fn iter(&self) -> Iter<K, V>
    where
        K: Clone,
    {
        Iter {
            shards: self.shard_snapshots(),
            current: Vec::new().into_iter(),
        }
    }

    fn shard_snapshots(&self) -> Vec<Vec<(K, V)>>
    where
        K: Clone,
    {
        let now = LazyNow::new(|| self.inner.clock.now_past());
        self.inner
            .shards
            .iter()
            .map(|shard| {
                let mut out = Vec::new();
                shard.read().for_each_live(&now, self.inner.tti, |k, v, d| {
                    if self.visible(d, now.get()) {
                        out.push((k.clone(), v.clone()));
                    }
                });
                out
            })
            .collect()
    }
}

/// The entries of a [`Cache`], from [`Cache::iter`].
pub struct Iter<K, V> {
    shards: Vec<Vec<(K, V)>>,
    current: std::vec::IntoIter<(K, V)>,
}

impl<K, V> Iterator for Iter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            self.current = self.shards.pop()?.into_iter();
        }
    }
}

impl<K, V> fmt::Debug for Iter<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
