//! The read path with refresh configured: classifies an entry as fresh,
//! due for a reload or stale, starts the reload, and serves stale-if-error.

use super::Cache;
use crate::refresh::{Freshness, RefreshStats, Refresher};
use crate::shard::LazyNow;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Like [`get`](Self::get), also saying whether the value is fresh,
    /// being refreshed, or stale (past its time to live, served from the
    /// [`serve_stale_for`](crate::CacheBuilder::serve_stale_for) window).
    ///
    /// ```
    /// use shardcache::{Cache, Freshness, MockClock};
    /// use std::time::Duration;
    ///
    /// let clock = MockClock::new();
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .clock(clock.clone())
    ///     .time_to_live(Duration::from_secs(10))
    ///     .refresh_after(Duration::from_secs(8))
    ///     .serve_stale_for(Duration::from_secs(5))
    ///     .refresh_loader(|_: &u32| Err::<u32, _>("source down"))
    ///     .build()?;
    /// cache.insert(1, 7);
    /// assert_eq!(cache.get_with_freshness(&1), Some((7, Freshness::Fresh)));
    /// clock.advance(Duration::from_secs(12));
    /// assert_eq!(cache.get_with_freshness(&1), Some((7, Freshness::Stale)));
    /// assert!(!cache.contains_key(&1)); // expired for everything else
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(cache.get_with_freshness(&1), None);
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn get_with_freshness<Q>(&self, key: &Q) -> Option<(V, Freshness)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.refresher() {
            Some(r) => self.read_refreshing(r, key),
            None => self.get(key).map(|v| (v, Freshness::Fresh)),
        }
    }

    /// The read path when refresh is configured (called from `get`).
    pub(crate) fn read_refreshing<Q>(&self, r: &Refresher<K, V>, key: &Q) -> Option<(V, Freshness)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate_key(key);
        let clock_now = self.clock_now();
        let now = LazyNow::new(|| (clock_now, false));
        let found = {
            let shard = self.shard(s).read();
            shard.peek(hash, key, &now, self.tti_ms()).and_then(|f| {
                let freshness = r.freshness(f.deadline, clock_now)?;
                // Counts the access with the policy, as `get` does.
                let _ = shard.get(hash, key, &now, self.tti_ms(), self.hit_count());
                let owned = (freshness != Freshness::Fresh)
                    .then(|| shard.key_of(hash, key).map(|k| r.clone_key(k)))
                    .flatten();
                Some((f.value.clone(), freshness, owned))
            })
        };
        self.count_lookup(found.is_some());
        let (value, freshness, owned) = found?;
        if freshness == Freshness::Stale {
            r.count_stale_served();
        }
        if let Some(k) = owned {
            self.start_refresh(r, k, clock_now);
        }
        Some((value, freshness))
    }

    /// Whether `key`'s entry is (still) due for a reload or stale, read under
    /// its shard's lock.
    pub(super) fn still_due(&self, r: &Refresher<K, V>, key: &K) -> bool {
        let (hash, s) = self.locate_key(key);
        let clock_now = self.clock_now();
        let now = LazyNow::new(|| (clock_now, false));
        let shard = self.shard(s).read();
        let stored = shard
            .peek(hash, key, &now, self.tti_ms())
            .and_then(|f| f.deadline);
        r.is_due(stored, clock_now)
    }

    /// The key a read-through load may fall back on if it fails: `Some`
    /// (a copy) only when refresh, and with it stale-if-error, is configured.
    pub(crate) fn fallback_key(&self, key: &K) -> Option<K>
    where
        K: Clone,
    {
        self.refresher().map(|_| key.clone())
    }

    /// `result` of a read-through load, or, when it failed, the stale value
    /// of `fallback` (see [`fallback_key`](Self::fallback_key)) if the
    /// stale-if-error window still allows one.
    pub(crate) fn or_stale<E>(
        &self,
        result: Result<V, Arc<E>>,
        fallback: Option<K>,
    ) -> Result<V, Arc<E>> {
        match (result, fallback) {
            (Err(e), Some(k)) => self.stale_if_error(&k).ok_or(e),
            (result, _) => result,
        }
    }

    /// An expired value for `key` within the stale-if-error window, for a
    /// read-through load whose loader failed. Counted as stale served.
    pub(crate) fn stale_if_error(&self, key: &K) -> Option<V> {
        let r = self.refresher().filter(|r| r.has_stale_if_error())?;
        let (hash, s) = self.locate_key(key);
        let clock_now = self.clock_now();
        let now = LazyNow::new(|| (clock_now, false));
        let shard = self.shard(s).read();
        let found = shard.peek(hash, key, &now, self.tti_ms())?;
        let within = r.serves_if_error(found.deadline?, clock_now);
        let value = within.then(|| found.value.clone());
        drop(shard);
        if value.is_some() {
            r.count_stale_served();
        }
        value
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Counters of background reloads (all zero without refresh).
    pub fn refresh_stats(&self) -> RefreshStats {
        self.refresher()
            .map_or_else(RefreshStats::default, Refresher::stats)
    }
}
