//! [`PermissionStats`], and the self-check of the index against the cache.

use super::PermissionCache;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl<D: Clone + Send + Sync + 'static> PermissionCache<D> {
    /// The number of cached decisions (including expired ones not yet
    /// reclaimed, and allows kept past their TTL for stale-if-error).
    pub fn len(&self) -> usize {
        self.inner.cache.len()
    }

    /// Whether no decision is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hits, misses, loads and load times since the cache was built.
    pub fn stats(&self) -> PermissionStats {
        let c = self.inner.cache.stats();
        let index = self.inner.index.lock();
        // A kept allow past its TTL is found by the cache but is a miss here.
        let stale_misses = self.inner.stale_misses.load(Ordering::Relaxed);
        PermissionStats {
            hits: c.hits.saturating_sub(stale_misses),
            misses: c.misses + stale_misses,
            stale_allows_served: self.inner.stale_served.load(Ordering::Relaxed),
            loads: self.inner.loads.load(Ordering::Relaxed),
            load_errors: self.inner.load_errors.load(Ordering::Relaxed),
            total_load_time: Duration::from_nanos(self.inner.load_nanos.load(Ordering::Relaxed)),
            indexed_subjects: index.by_subject.len(),
            indexed_resources: index.by_resource.values().map(HashMap::len).sum(),
        }
    }

    /// Checks that the secondary index matches the cache (for tests).
    #[doc(hidden)]
    pub fn validate_index(&self) -> Result<(), String> {
        let mut index = self.inner.index.lock();
        index.drain(&self.inner.graveyard);
        for (key, value) in self.inner.cache.iter() {
            match index.stamps.get(&key) {
                Some(s) if *s == value.stamp => {}
                other => {
                    return Err(format!(
                        "{key:?}: cached stamp {} indexed {other:?}",
                        value.stamp
                    ))
                }
            }
            let by_subject = index
                .by_subject
                .get(key.subject())
                .is_some_and(|s| s.contains(&key));
            let by_resource = index
                .by_resource
                .get(key.resource().0)
                .and_then(|m| m.get(key.resource().1))
                .is_some_and(|s| s.contains(&key));
            if !by_subject || !by_resource {
                return Err(format!(
                    "{key:?} missing from the subject or resource index"
                ));
            }
        }
        let live = index.stamps.len();
        if live > self.inner.cache.len() {
            return Err(format!(
                "index holds {live} keys, cache {}",
                self.inner.cache.len()
            ));
        }
        Ok(())
    }
}

/// Counters of a [`PermissionCache`], from [`PermissionCache::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermissionStats {
    /// Checks answered from the cache.
    pub hits: u64,
    /// Checks that found no live decision (each joins or runs a load).
    pub misses: u64,
    /// Allows returned past their TTL because their load failed (see
    /// [`PermissionCacheBuilder::stale_allow_if_error`](super::PermissionCacheBuilder::stale_allow_if_error)).
    pub stale_allows_served: u64,
    /// Loaders run (successful or not).
    pub loads: u64,
    /// Loaders that returned an error.
    pub load_errors: u64,
    /// Time spent in loaders, summed.
    pub total_load_time: Duration,
    /// Subjects with at least one indexed decision.
    pub indexed_subjects: usize,
    /// Resources with at least one indexed decision.
    pub indexed_resources: usize,
}

impl PermissionStats {
    /// `hits / (hits + misses)`, or 0 before any check.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }

    /// The mean time a loader took, or zero before any load.
    pub fn mean_load_time(&self) -> Duration {
        match u32::try_from(self.loads) {
            Ok(0) => Duration::ZERO,
            Ok(n) => self.total_load_time / n,
            Err(_) => Duration::from_nanos(
                u64::try_from(self.total_load_time.as_nanos() / u128::from(self.loads))
                    .unwrap_or(u64::MAX),
            ),
        }
    }
}
