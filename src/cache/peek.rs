//! Reads that do not count as an access: [`Cache::get_with_ttl`],
//! [`Cache::ttl`], [`Cache::contains_key`], and the crate's own peeks.

use super::Cache;
use crate::shard::LazyNow;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Runs `f` on the live entry for `key` (its value and remaining time to
    /// live) under the shard's read lock, without counting an access.
    fn peek_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V, Option<Duration>) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_at(key, |value, deadline| {
            f(
                value,
                deadline.map(|(d, now, past)| crate::shard::left_ms(d, now, past)),
            )
        })
    }

    /// Runs `f` on the live entry for `key` and, if it expires, its
    /// deadline as callers see it (without the refresh windows' hidden
    /// grace) with the clock's reading (its millisecond, and whether past
    /// its start), under the shard's read lock, without counting an access.
    pub(super) fn peek_at<Q, R>(
        &self,
        key: &Q,
        f: impl FnOnce(&V, Option<(u64, u64, bool)>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate(key);
        let now = LazyNow::new(|| self.inner.clock.now_past());
        let shard = self.inner.shards[s].read();
        let found = shard.peek(hash, key, &now, self.inner.tti)?;
        let deadline = match self.refresher() {
            Some(r) => match found.deadline.map(|d| r.visible_deadline(d)) {
                Some(d) if d <= now.get() => return None,
                d => d,
            },
            None => found.deadline,
        };
        Some(f(
            found.value,
            deadline.map(|d| (d, now.get(), now.ceil() > now.get())),
        ))
    }

    /// The value and its remaining time to live (`None` inside: no expiry),
    /// without counting an access.
    pub fn get_with_ttl<Q>(&self, key: &Q) -> Option<(V, Option<Duration>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_with(key, |v, ttl| (v.clone(), ttl))
    }

    /// The remaining time to live of a live `key`: `None` if absent or
    /// expired, `Some(None)` if it never expires.
    pub fn ttl<Q>(&self, key: &Q) -> Option<Option<Duration>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_with(key, |_, ttl| ttl)
    }

    /// Whether a live entry for `key` exists. Does not count as an access.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_with(key, |_, _| ()).is_some()
    }

    pub(crate) fn peek_value<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_with(key, |v, _| v.clone())
    }
}
