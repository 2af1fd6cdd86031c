//! [`PermissionCache`]: authorization decisions, loaded once per key and
//! revocable per subject or per resource.
//!
//! ## How revocation stays exact
//!
//! Beside the cache sits a secondary index (subject → keys, resource → keys),
//! guarded by one mutex. Every insert and every invalidation takes that mutex,
//! so an invalidation sees every entry inserted before it and removes them
//! all. A load that was already running when an invalidation matched its key
//! may have read the revoked state: each invalidation bumps an epoch and is
//! remembered in a bounded ring, and a load whose key was invalidated since
//! its epoch is returned to its caller but not cached (its waiters load
//! again). If the ring has overflowed since the load began, the load is not
//! cached either: losing history only costs a cache miss. The mutex is held
//! from caching a load until its waiters have been handed the decision, so a
//! check that begins after an invalidation has returned never receives a
//! decision loaded before it, from the cache or from a load in flight.
//!
//! The index stays bounded by the cache: entries that leave by eviction,
//! expiry or removal are reported by the cache's eviction listener into a
//! small queue that the next locked operation drains. Each cached value
//! carries a stamp, so a late report about an older incarnation of a key
//! never unindexes a newer one.
//!
//! Hits take no index lock: a hit is one `Cache::get`.
//!
//! ## Refresh-ahead and stale values
//!
//! A `PermissionCache` does not refresh in the background, and by default
//! never serves a decision past its time to live. Serving a stale *allow*
//! after its source failed (stale-if-error) is unsafe whenever a
//! revocation can happen in the source without an
//! [`invalidate_subject`](PermissionCache::invalidate_subject) or
//! [`invalidate_resource`](PermissionCache::invalidate_resource) call
//! reaching this cache: the stale allow outlives the revocation for as long
//! as the stale window. It is therefore an explicit opt-in, for the allows
//! a predicate picks and for a bounded window:
//! [`stale_allow_if_error`](PermissionCacheBuilder::stale_allow_if_error).
//! Denials are never served stale, and an invalidation removes the kept
//! allow, so a revocation that reached the cache is never overridden.
//!
//! The parts: `key` is the [`PermissionKey`]; `builder` the settings and
//! their checks; `check` the read-through checks and stores; `stale` the
//! stale-if-error opt-in for allows; `invalidate` revocation; `index` the
//! secondary index revocation walks; `stats` the counters and the index's
//! self-check.

mod builder;
mod check;
mod index;
mod invalidate;
mod key;
mod stale;
mod stats;

pub use builder::PermissionCacheBuilder;
pub use key::PermissionKey;
pub use stats::PermissionStats;

use crate::Cache;
use index::Index;
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// The default time a decision is cached: 5 minutes.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The default capacity: 100 000 decisions.
pub(crate) const DEFAULT_CAPACITY: u64 = 100_000;

/// Invalidations remembered for loads in flight (see the module docs).
const RECENT_INVALIDATIONS: usize = 1024;

/// A cached decision, the stamp of the insert that stored it, and until
/// when (clock ms) it is fresh (see `stale`).
#[derive(Clone)]
struct Stamped<D> {
    decision: D,
    stamp: u64,
    fresh_until: u64,
}

type NegativePredicate<D> = Arc<dyn Fn(&D) -> bool + Send + Sync>;

/// A cache of authorization decisions `D` (a `bool`, an allow/deny enum, a
/// role set...). Cheap to clone: clones share the cache.
///
/// ```
/// use shardcache::adapters::{PermissionCache, PermissionKey};
///
/// let perms: PermissionCache<bool> = PermissionCache::new();
/// let key = PermissionKey::new("user123", "boxer", "boxer456", "read");
///
/// // A miss runs the loader (your database query) once; the next check is a hit.
/// assert!(perms.check(&key, || true));
/// assert!(perms.check(&key, || unreachable!("cached")));
///
/// // Revoking everything user123 had drops it in one call.
/// assert_eq!(perms.invalidate_subject("user123"), 1);
/// assert!(!perms.check(&key, || false));
///
/// let stats = perms.stats();
/// assert_eq!((stats.hits, stats.loads), (1, 2));
/// ```
pub struct PermissionCache<D> {
    inner: Arc<Inner<D>>,
}

struct Inner<D> {
    cache: Cache<PermissionKey, Stamped<D>>,
    index: Mutex<Index>,
    /// (key, stamp) of entries the cache removed, reported by its listener.
    graveyard: Arc<Mutex<Vec<(PermissionKey, u64)>>>,
    /// Bumped (under `index`) by every invalidation.
    epoch: AtomicU64,
    next_stamp: AtomicU64,
    ttl: Duration,
    negative: Option<(Duration, NegativePredicate<D>)>,
    /// The stale-if-error window for the allows the predicate picks.
    stale_allow: Option<(Duration, NegativePredicate<D>)>,
    /// Kept allows past their TTL that made a check load (not hits).
    stale_misses: AtomicU64,
    /// Kept allows returned because a load failed.
    stale_served: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    load_nanos: AtomicU64,
}

impl<D> Clone for PermissionCache<D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<D> fmt::Debug for PermissionCache<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionCache")
            .field("ttl", &self.inner.ttl)
            .field("negative_ttl", &self.inner.negative.as_ref().map(|n| n.0))
            .finish_non_exhaustive()
    }
}

impl<D: Clone + Send + Sync + 'static> Default for PermissionCache<D> {
    fn default() -> Self {
        Self::new()
    }
}
