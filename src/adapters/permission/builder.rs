//! [`PermissionCacheBuilder`]: the settings of a [`PermissionCache`] and
//! the checks that build it.

use super::index::Index;
use super::{Inner, NegativePredicate, PermissionCache, PermissionKey, Stamped};
use super::{DEFAULT_CAPACITY, DEFAULT_TTL};
use crate::adapters::SharedClock;
use crate::builder::BuildError;
use crate::clock::Clock;
use crate::listener::RemovalCause;
use crate::{Cache, Policy};
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Configures a [`PermissionCache`]; from [`PermissionCache::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct PermissionCacheBuilder<D> {
    max_capacity: u64,
    ttl: Duration,
    negative: Option<(Duration, NegativePredicate<D>)>,
    stale_allow: Option<(Duration, NegativePredicate<D>)>,
    clock: SharedClock,
    policy: Policy,
}

impl<D> fmt::Debug for PermissionCacheBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionCacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative.as_ref().map(|n| n.0))
            .field(
                "stale_allow_if_error",
                &self.stale_allow.as_ref().map(|n| n.0),
            )
            .finish_non_exhaustive()
    }
}

impl<D: Clone + Send + Sync + 'static> PermissionCacheBuilder<D> {
    /// The most decisions kept (default 100,000), counted over the whole
    /// cache: none is evicted for capacity while fewer are cached.
    pub fn max_capacity(mut self, max: u64) -> Self {
        self.max_capacity = max;
        self
    }

    /// How long a decision is cached (default 5 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Caches decisions for which `is_negative` holds (typically denials)
    /// for `ttl` instead, usually shorter, so that a grant shows up soon
    /// even without an explicit invalidation.
    ///
    /// ```
    /// use shardcache::{MockClock};
    /// use shardcache::adapters::{PermissionCache, PermissionKey};
    /// use std::time::Duration;
    /// let clock = MockClock::new();
    /// let perms = PermissionCache::<bool>::builder()
    ///     .negative_ttl(Duration::from_secs(10), |allowed| !allowed)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// let key = PermissionKey::new("u1", "doc", "7", "edit");
    /// assert!(!perms.check(&key, || false));
    /// clock.advance(Duration::from_secs(10));
    /// assert!(perms.check(&key, || true)); // the denial has expired
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn negative_ttl(
        mut self,
        ttl: Duration,
        is_negative: impl Fn(&D) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.negative = Some((ttl, Arc::new(is_negative)));
        self
    }

    /// **Opt-in, and unsafe for some services: read this first.** When a
    /// decision for which `is_allow` holds has outlived its TTL and the
    /// load that would replace it fails, [`try_check`](PermissionCache::try_check)
    /// (and its async form) returns that allow instead of the error, up to
    /// `window` past its TTL. Denials, and decisions `is_allow` rejects, are
    /// never served stale: their checks get the load's error (fail closed).
    ///
    /// What stays safe: an [`invalidate`](PermissionCache::invalidate),
    /// [`invalidate_subject`](PermissionCache::invalidate_subject),
    /// [`invalidate_resource`](PermissionCache::invalidate_resource) or
    /// [`invalidate_all`](PermissionCache::invalidate_all) removes the kept
    /// allow itself, so a revocation that reached this cache is never
    /// overridden. While the source answers, a stale allow is never served:
    /// past its TTL every check loads.
    ///
    /// When it is unsafe: a revocation made in the source *without* an
    /// invalidation reaching this cache (another service revokes, no event
    /// is delivered) is honoured at the allow's TTL when the source is up,
    /// but while the source is down the revoked allow is served for up to
    /// `window` more. Enable it only for allows whose late revocation is an
    /// acceptable risk (read access to non-sensitive data, say), with the
    /// shortest window that rides out the outages you expect, and keep
    /// revocations flowing as invalidations. Served stale allows are counted
    /// in [`PermissionStats::stale_allows_served`](super::PermissionStats::stale_allows_served).
    ///
    /// Allows are kept in the cache `window` past their TTL, so they take
    /// capacity (and count in [`len`](PermissionCache::len)) for that long.
    /// `window` must be greater than zero and at most the TTL.
    ///
    /// ```
    /// use shardcache::MockClock;
    /// use shardcache::adapters::{PermissionCache, PermissionKey};
    /// use std::time::Duration;
    /// let clock = MockClock::new();
    /// let perms = PermissionCache::<bool>::builder()
    ///     .ttl(Duration::from_secs(60))
    ///     .stale_allow_if_error(Duration::from_secs(30), |allowed| *allowed)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// let key = PermissionKey::new("u1", "doc", "7", "read");
    /// assert!(perms.check(&key, || true));
    /// clock.advance(Duration::from_secs(70));
    /// // The source is down: the allow is served, 10 s past its TTL.
    /// assert_eq!(perms.try_check(&key, || Err("db down")), Ok(true));
    /// // A revocation is never overridden.
    /// perms.invalidate_subject("u1");
    /// assert!(perms.try_check(&key, || Err("db down")).is_err());
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn stale_allow_if_error(
        mut self,
        window: Duration,
        is_allow: impl Fn(&D) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.stale_allow = Some((window, Arc::new(is_allow)));
        self
    }

    /// The time source (a [`MockClock`](crate::MockClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock(Arc::new(clock));
        self
    }

    /// The eviction policy (default [`Policy::tiny_lfu`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Checks the settings and builds the cache.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero capacity or a zero or overlong TTL
    /// (`"time_to_live"` for the TTL, `"negative_ttl"` for the negative TTL),
    /// or a stale-if-error window that is zero or longer than the TTL of
    /// allows ([`ttl`](Self::ttl)).
    pub fn build(self) -> Result<PermissionCache<D>, BuildError> {
        if let Some((negative, _)) = &self.negative {
            // Validated like a cache TTL, under its own name.
            Cache::<u8, u8>::builder()
                .max_capacity(1)
                .time_to_live(*negative)
                .build()
                .map_err(|e| match e {
                    BuildError::ZeroDuration(_) => BuildError::ZeroDuration("negative_ttl"),
                    BuildError::DurationTooLong(_) => BuildError::DurationTooLong("negative_ttl"),
                    other => other,
                })?;
        }
        if self.max_capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        match &self.stale_allow {
            Some((w, _)) if w.is_zero() => {
                return Err(BuildError::ZeroDuration("stale_allow_if_error"))
            }
            Some((w, _)) if *w > self.ttl => {
                return Err(BuildError::InvalidRefresh(
                    "stale_allow_if_error's window must be at most the TTL",
                ))
            }
            _ => {}
        }
        Cache::<u8, u8>::builder()
            .max_capacity(1)
            .time_to_live(self.ttl)
            .build()?;
        Ok(self.assemble())
    }

    /// Builds from settings already known to be valid.
    pub(super) fn assemble(self) -> PermissionCache<D> {
        let graveyard: Arc<Mutex<Vec<(PermissionKey, u64)>>> = Arc::default();
        let reports = graveyard.clone();
        let mut builder = Cache::builder()
            .max_capacity(self.max_capacity)
            // One budget for all shards: no shard evicts while the cache
            // holds fewer than `max_capacity` decisions.
            .shared_capacity()
            .time_to_live(self.ttl)
            .policy(self.policy)
            .eviction_listener(move |key, value: Stamped<D>, cause| {
                if cause != RemovalCause::Replaced {
                    reports.lock().push((key, value.stamp));
                }
            });
        // The user's clock itself, not a wrapper: one indirection less per hit.
        builder.clock = self.clock.0;
        PermissionCache {
            inner: Arc::new(Inner {
                cache: Cache::from_builder(builder),
                index: Mutex::new(Index::default()),
                graveyard,
                epoch: AtomicU64::new(0),
                next_stamp: AtomicU64::new(1),
                ttl: self.ttl,
                negative: self.negative,
                stale_allow: self.stale_allow,
                stale_misses: AtomicU64::new(0),
                stale_served: AtomicU64::new(0),
                loads: AtomicU64::new(0),
                load_errors: AtomicU64::new(0),
                load_nanos: AtomicU64::new(0),
            }),
        }
    }
}

impl<D: Clone + Send + Sync + 'static> PermissionCache<D> {
    /// A cache with the defaults: 100,000 decisions, each kept
    /// for 5 minutes.
    pub fn new() -> Self {
        // The defaults are valid: no need to check them.
        Self::builder().assemble()
    }

    /// A builder for the capacity, TTLs, policy and clock.
    pub fn builder() -> PermissionCacheBuilder<D> {
        PermissionCacheBuilder {
            max_capacity: DEFAULT_CAPACITY,
            ttl: DEFAULT_TTL,
            negative: None,
            stale_allow: None,
            clock: SharedClock::system(),
            policy: Policy::default(),
        }
    }
}
