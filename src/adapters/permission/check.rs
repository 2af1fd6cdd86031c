//! Checks: a hit is one cache read; a miss runs one load per key (single
//! flight) and caches its decision unless an invalidation overtook it.

use super::index::Index;
use super::{Inner, PermissionCache, PermissionKey, Stamped};
use crate::shard::LoadId;
use parking_lot::MutexGuard;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

impl<D: Clone + Send + Sync + 'static> PermissionCache<D> {
    /// The decision for `key`, running `load` on a miss. However many
    /// callers miss the same key at once, one `load` runs and the others
    /// wait for its decision. If `load` panics, the panic reaches this caller
    /// and one of the waiting callers runs its own load instead.
    pub fn check(&self, key: &PermissionKey, load: impl FnOnce() -> D) -> D {
        match self.try_check(key, || Ok::<D, Infallible>(load())) {
            Ok(d) => d,
            Err(never) => match *never {},
        }
    }

    /// Like [`check`](Self::check) with a loader that can fail.
    ///
    /// # Errors
    ///
    /// The loader's error, shared by every caller that waited on that load.
    /// Errors are not cached.
    ///
    /// ```
    /// use shardcache::adapters::{PermissionCache, PermissionKey};
    /// let perms: PermissionCache<bool> = PermissionCache::new();
    /// let key = PermissionKey::new("u1", "doc", "1", "read");
    /// let err = perms.try_check(&key, || Err("db down")).unwrap_err();
    /// assert_eq!(*err, "db down");
    /// assert_eq!(perms.try_check(&key, || Ok::<_, &str>(true)), Ok(true));
    /// ```
    pub fn try_check<E: Send + Sync + 'static>(
        &self,
        key: &PermissionKey,
        load: impl FnOnce() -> Result<D, E>,
    ) -> Result<D, Arc<E>> {
        let inner = &*self.inner;
        if let Some(hit) = inner.hit(key) {
            return Ok(hit);
        }
        // The epoch is read when the load starts (by the leader only).
        let since = AtomicU64::new(0);
        let init = || {
            since.store(inner.epoch.load(Ordering::SeqCst), Ordering::Relaxed);
            inner.timed(Instant::now(), load())
        };
        // Guarded by the invalidation epoch, not by the load's mark.
        let store = |k, v, _: &mut Option<LoadId>| inner.store(k, v, since.load(Ordering::Relaxed));
        let fresh = |v: &Stamped<D>| inner.is_fresh(v);
        match inner.cache.load_with_store(key.clone(), fresh, init, store) {
            Ok(v) => Ok(v.decision),
            Err(e) => inner.stale_allow(key).ok_or(e),
        }
    }

    /// The async form of [`check`](Self::check): waiters await the leader's
    /// decision without blocking a thread.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use shardcache::adapters::{PermissionCache, PermissionKey};
    /// let perms: PermissionCache<bool> = PermissionCache::new();
    /// let key = PermissionKey::new("u1", "doc", "1", "read");
    /// assert!(perms.check_async(&key, async { true }).await);
    /// # });
    /// ```
    pub async fn check_async(&self, key: &PermissionKey, load: impl Future<Output = D>) -> D {
        let load = async { Ok::<D, Infallible>(load.await) };
        match self.try_check_async(key, load).await {
            Ok(d) => d,
            Err(never) => match *never {},
        }
    }

    /// The async form of [`try_check`](Self::try_check).
    ///
    /// # Errors
    ///
    /// The loader's error, shared by every caller that waited on that load.
    pub async fn try_check_async<E: Send + Sync + 'static>(
        &self,
        key: &PermissionKey,
        load: impl Future<Output = Result<D, E>>,
    ) -> Result<D, Arc<E>> {
        let inner = &*self.inner;
        if let Some(hit) = inner.hit(key) {
            return Ok(hit);
        }
        let since = AtomicU64::new(0);
        let init = async {
            since.store(inner.epoch.load(Ordering::SeqCst), Ordering::Relaxed);
            let start = Instant::now();
            inner.timed(start, load.await)
        };
        // Guarded by the invalidation epoch, not by the load's mark.
        let store = |k, v, _: &mut Option<LoadId>| inner.store(k, v, since.load(Ordering::Relaxed));
        let fresh = |v: &Stamped<D>| inner.is_fresh(v);
        let loaded = inner
            .cache
            .load_with_store_async(key.clone(), fresh, init, store)
            .await;
        match loaded {
            Ok(v) => Ok(v.decision),
            Err(e) => inner.stale_allow(key).ok_or(e),
        }
    }

    /// The cached decision for `key`, without loading (counts a hit or
    /// miss). An allow kept past its TTL for stale-if-error is not returned.
    pub fn get(&self, key: &PermissionKey) -> Option<D> {
        self.inner.hit(key)
    }

    /// Stores a decision directly (e.g. right after granting or revoking),
    /// with the same TTL rules as a load. A load of the key already running
    /// (which asked the source before this decision) is not cached over it.
    pub fn insert(&self, key: PermissionKey, decision: D) {
        self.invalidate(&key);
        let since = self.inner.epoch.load(Ordering::SeqCst);
        let value = Stamped {
            decision,
            stamp: 0,
            fresh_until: super::stale::ALWAYS_FRESH,
        };
        drop(self.inner.store(key, value, since));
    }
}

impl<D: Clone + Send + Sync + 'static> Inner<D> {
    /// The fresh cached decision for `key`: a kept allow past its TTL is a
    /// miss (counted as such in the stats).
    #[inline]
    pub(super) fn hit(&self, key: &PermissionKey) -> Option<D> {
        let hit = self.cache.get(key)?;
        if self.is_fresh(&hit) {
            return Some(hit.decision);
        }
        self.stale_misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Counts a finished load and wraps its decision.
    pub(super) fn timed<E>(&self, start: Instant, r: Result<D, E>) -> Result<Stamped<D>, E> {
        let took = crate::adapters::nanos(start.elapsed());
        self.load_nanos.fetch_add(took, Ordering::Relaxed);
        self.loads.fetch_add(1, Ordering::Relaxed);
        if r.is_err() {
            self.load_errors.fetch_add(1, Ordering::Relaxed);
        }
        r.map(|decision| Stamped {
            decision,
            stamp: 0,
            fresh_until: super::stale::ALWAYS_FRESH,
        })
    }

    /// Caches a loaded decision unless an invalidation since epoch `since`
    /// matched its key. Returns the index lock when it was cached: the
    /// loader holds it until the load's waiters have the decision, so no
    /// invalidation can run between caching it and handing it out.
    pub(super) fn store(
        &self,
        key: PermissionKey,
        value: Stamped<D>,
        since: u64,
    ) -> Option<MutexGuard<'_, Index>> {
        // The user's predicate runs before the lock is taken.
        let ttl = match &self.negative {
            Some((ttl, is_negative)) if is_negative(&value.decision) => *ttl,
            _ => self.ttl,
        };
        let (ttl, fresh_until) = self.retention(&value.decision, ttl);
        let mut index = self.index.lock();
        index.drain(&self.graveyard);
        if index.invalidated_since(&key, since, self.epoch.load(Ordering::SeqCst)) {
            // Not cached; an allow kept past its freshness for outages
            // goes too, since the source has answered after it. (A fresh
            // decision stays: it was stored after this load began.)
            let stale = self
                .cache
                .peek_value(&key)
                .is_some_and(|kept| !self.is_fresh(&kept));
            if stale {
                self.cache.remove(&key);
                index.drain(&self.graveyard);
            }
            return None;
        }
        let stamp = self.next_stamp.fetch_add(1, Ordering::Relaxed);
        index.register(&key, stamp);
        self.cache.insert_with_ttl(
            key,
            Stamped {
                decision: value.decision,
                stamp,
                fresh_until,
            },
            ttl,
        );
        // An insert can evict (even the new entry): forget what left.
        index.drain(&self.graveyard);
        Some(index)
    }
}
