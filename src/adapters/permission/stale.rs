//! Stale-if-error for allows, an explicit opt-in
//! ([`PermissionCacheBuilder::stale_allow_if_error`](super::PermissionCacheBuilder::stale_allow_if_error)):
//! which decisions are kept past their time to live, when a kept one is
//! still fresh, and serving one when the source fails.
//!
//! An allow the caller's predicate picks is cached for its TTL plus the
//! stale window, and remembers when its TTL ends (`fresh_until`). Until
//! then it is a hit; after, every check treats it as absent and loads. Only
//! when that load fails is the kept allow returned, at most `window` past
//! its TTL. An invalidation removes the entry itself, so nothing is left to
//! serve: a revocation that reached this cache is never undone by a stale
//! allow.

use super::{Inner, PermissionKey, Stamped};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `fresh_until` of a decision with no stale window: fresh for as long as
/// the cache keeps it.
pub(super) const ALWAYS_FRESH: u64 = u64::MAX;

impl<D: Clone + Send + Sync + 'static> Inner<D> {
    /// Whether a cached decision may be returned without loading.
    #[inline]
    pub(super) fn is_fresh(&self, s: &Stamped<D>) -> bool {
        s.fresh_until == ALWAYS_FRESH || self.cache.clock_now() < s.fresh_until
    }

    /// How long to cache `decision` for, given its time to live `ttl`, and
    /// its `fresh_until` (see the module docs).
    pub(super) fn retention(&self, decision: &D, ttl: Duration) -> (Duration, u64) {
        match &self.stale_allow {
            Some((window, is_allow)) if is_allow(decision) => {
                let fresh_until = self
                    .cache
                    .clock_now()
                    .saturating_add(crate::shard::expiry::ttl_ms(ttl));
                (ttl.saturating_add(*window), fresh_until)
            }
            _ => (ttl, ALWAYS_FRESH),
        }
    }

    /// A kept allow for `key` past its TTL, within the stale window, for a
    /// check whose load failed. Counted as served stale.
    pub(super) fn stale_allow(&self, key: &PermissionKey) -> Option<D> {
        let (window, _) = self.stale_allow.as_ref()?;
        let kept = self.cache.peek_value(key)?;
        let now = self.cache.clock_now();
        let within = kept.fresh_until != ALWAYS_FRESH
            && now >= kept.fresh_until
            && now
                < kept
                    .fresh_until
                    .saturating_add(crate::shard::expiry::ttl_ms(*window));
        if !within {
            return None;
        }
        self.stale_served.fetch_add(1, Ordering::Relaxed);
        Some(kept.decision)
    }
}
