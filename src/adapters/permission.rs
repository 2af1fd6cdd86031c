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

use super::SharedClock;
use crate::clock::Clock;
use crate::error::BuildError;
use crate::listener::RemovalCause;
use crate::{Cache, Policy};
use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The default time a decision is cached: 5 minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The default capacity: 100 000 decisions.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// Invalidations remembered for loads in flight (see the module docs).
const RECENT_INVALIDATIONS: usize = 1024;

/// What a decision is about: `subject` may do `action` on the resource
/// (`resource_kind`, `resource_id`). Cloning is cheap (one `Arc<str>`).
///
/// ```
/// use shardcache::PermissionKey;
/// let key = PermissionKey::new("user123", "boxer", "boxer456", "read");
/// assert_eq!(key.subject(), "user123");
/// assert_eq!(key.resource(), ("boxer", "boxer456"));
/// assert_eq!(key.action(), "read");
/// ```
///
/// Building a key makes one allocation (the four parts side by side) and
/// computes its hash once, with a per-process random seed so that crafted
/// ids cannot force collisions: a check then hashes one `u64` and compares
/// one string, not four.
#[derive(Clone)]
pub struct PermissionKey {
    hash: u64,
    /// Where the subject, resource kind and resource id end in `text`.
    ends: [usize; 3],
    text: Arc<str>,
}

impl PermissionKey {
    /// A key for `subject` doing `action` on `resource_kind`/`resource_id`.
    pub fn new(
        subject: impl AsRef<str>,
        resource_kind: impl AsRef<str>,
        resource_id: impl AsRef<str>,
        action: impl AsRef<str>,
    ) -> Self {
        static SEED: OnceLock<ahash::RandomState> = OnceLock::new();
        let parts = [
            subject.as_ref(),
            resource_kind.as_ref(),
            resource_id.as_ref(),
            action.as_ref(),
        ];
        let hash = SEED.get_or_init(ahash::RandomState::new).hash_one(parts);
        let mut ends = [0; 3];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                *end = text.len();
            }
        }
        Self {
            hash,
            ends,
            text: Arc::from(text),
        }
    }

    fn part(&self, from: usize, to: usize) -> &str {
        self.text.get(from..to).unwrap_or_default()
    }

    /// Who asks (a user, a service account...).
    pub fn subject(&self) -> &str {
        self.part(0, self.ends[0])
    }

    /// The resource, as (kind, id).
    pub fn resource(&self) -> (&str, &str) {
        (
            self.part(self.ends[0], self.ends[1]),
            self.part(self.ends[1], self.ends[2]),
        )
    }

    /// What they want to do.
    pub fn action(&self) -> &str {
        self.part(self.ends[2], self.text.len())
    }
}

impl PartialEq for PermissionKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.ends == other.ends
            && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for PermissionKey {}

impl Hash for PermissionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Debug for PermissionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, id) = self.resource();
        write!(f, "perm:{kind}:{id}:{}:{}", self.subject(), self.action())
    }
}

/// A cached decision and the stamp of the insert that stored it.
#[derive(Clone)]
struct Stamped<D> {
    decision: D,
    stamp: u64,
}

type NegativePredicate<D> = Arc<dyn Fn(&D) -> bool + Send + Sync>;

/// Configures a [`PermissionCache`]; from [`PermissionCache::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct PermissionCacheBuilder<D> {
    max_capacity: u64,
    ttl: Duration,
    negative: Option<(Duration, NegativePredicate<D>)>,
    clock: SharedClock,
    policy: Policy,
}

impl<D> fmt::Debug for PermissionCacheBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionCacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative.as_ref().map(|n| n.0))
            .finish_non_exhaustive()
    }
}

impl<D: Clone + Send + Sync + 'static> PermissionCacheBuilder<D> {
    /// The most decisions kept (default [`DEFAULT_CAPACITY`]).
    pub fn max_capacity(mut self, max: u64) -> Self {
        self.max_capacity = max;
        self
    }

    /// How long a decision is cached (default [`DEFAULT_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Caches decisions for which `is_negative` holds (typically denials)
    /// for `ttl` instead, usually shorter, so that a grant shows up soon
    /// even without an explicit invalidation.
    ///
    /// ```
    /// use shardcache::{MockClock, PermissionCache, PermissionKey};
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
    /// (`"time_to_live"` for the TTL, `"negative_ttl"` for the negative TTL).
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
        Cache::<u8, u8>::builder()
            .max_capacity(1)
            .time_to_live(self.ttl)
            .build()?;
        Ok(self.assemble())
    }

    /// Builds from settings already known to be valid.
    fn assemble(self) -> PermissionCache<D> {
        let graveyard: Arc<Mutex<Vec<(PermissionKey, u64)>>> = Arc::default();
        let reports = graveyard.clone();
        let mut builder = Cache::builder()
            .max_capacity(self.max_capacity)
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
                loads: AtomicU64::new(0),
                load_errors: AtomicU64::new(0),
                load_nanos: AtomicU64::new(0),
            }),
        }
    }
}

/// A cache of authorization decisions `D` (a `bool`, an allow/deny enum, a
/// role set...). Cheap to clone: clones share the cache.
///
/// ```
/// use shardcache::{PermissionCache, PermissionKey};
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

impl<D: Clone + Send + Sync + 'static> PermissionCache<D> {
    /// A cache with the defaults: [`DEFAULT_CAPACITY`] decisions, each kept
    /// for [`DEFAULT_TTL`].
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
            clock: SharedClock::system(),
            policy: Policy::default(),
        }
    }

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
    /// use shardcache::{PermissionCache, PermissionKey};
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
        if let Some(hit) = inner.cache.get(key) {
            return Ok(hit.decision);
        }
        // The epoch is read when the load starts (by the leader only).
        let since = AtomicU64::new(0);
        let init = || {
            since.store(inner.epoch.load(Ordering::SeqCst), Ordering::Relaxed);
            inner.timed(Instant::now(), load())
        };
        let store = |k, v| inner.store(k, v, since.load(Ordering::Relaxed));
        inner
            .cache
            .load_with_store(key.clone(), init, store)
            .map(|v| v.decision)
    }

    /// The async form of [`check`](Self::check): waiters await the leader's
    /// decision without blocking a thread.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use shardcache::{PermissionCache, PermissionKey};
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
        if let Some(hit) = inner.cache.get(key) {
            return Ok(hit.decision);
        }
        let since = AtomicU64::new(0);
        let init = async {
            since.store(inner.epoch.load(Ordering::SeqCst), Ordering::Relaxed);
            let start = Instant::now();
            inner.timed(start, load.await)
        };
        let store = |k, v| inner.store(k, v, since.load(Ordering::Relaxed));
        inner
            .cache
            .load_with_store_async(key.clone(), init, store)
            .await
            .map(|v| v.decision)
    }

    /// The cached decision for `key`, without loading (counts a hit or miss).
    pub fn get(&self, key: &PermissionKey) -> Option<D> {
        self.inner.cache.get(key).map(|v| v.decision)
    }

    /// Stores a decision directly (e.g. right after granting), with the same
    /// TTL rules as a load.
    pub fn insert(&self, key: PermissionKey, decision: D) {
        let since = self.inner.epoch.load(Ordering::SeqCst);
        drop(self.inner.store(key, Stamped { decision, stamp: 0 }, since));
    }

    /// Drops the decision for one key. Returns whether one was cached.
    pub fn invalidate(&self, key: &PermissionKey) -> bool {
        let target = Target::Key(key.clone());
        self.inner.invalidate(target, |index| index.take_key(key)) > 0
    }

    /// Drops every cached decision about `subject`, in one call, visiting only
    /// that subject's entries. A load for one of them that was running during
    /// the call is not cached. Returns the number of entries dropped.
    pub fn invalidate_subject(&self, subject: &str) -> usize {
        let target = Target::Subject(Arc::from(subject));
        self.inner
            .invalidate(target, |index| index.take_subject(subject))
    }

    /// Drops every cached decision about the resource `kind`/`id` (any
    /// subject, any action), in one call; see
    /// [`invalidate_subject`](Self::invalidate_subject).
    ///
    /// ```
    /// use shardcache::{PermissionCache, PermissionKey};
    /// let perms: PermissionCache<bool> = PermissionCache::new();
    /// for user in ["ann", "bob"] {
    ///     perms.check(&PermissionKey::new(user, "doc", "7", "read"), || true);
    /// }
    /// perms.check(&PermissionKey::new("ann", "doc", "8", "read"), || true);
    /// assert_eq!(perms.invalidate_resource("doc", "7"), 2);
    /// assert_eq!(perms.len(), 1);
    /// ```
    pub fn invalidate_resource(&self, kind: &str, id: &str) -> usize {
        let target = Target::Resource(Arc::from(kind), Arc::from(id));
        self.inner
            .invalidate(target, |index| index.take_resource(kind, id))
    }

    /// Drops every cached decision.
    pub fn invalidate_all(&self) {
        self.inner.invalidate(Target::All, |index| {
            let n = index.stamps.len();
            *index = Index {
                recent: std::mem::take(&mut index.recent),
                ..Index::default()
            };
            (Vec::new(), n)
        });
        self.inner.cache.clear();
        self.inner.index.lock().drain(&self.inner.graveyard);
    }

    /// The number of cached decisions (including expired ones not yet reclaimed).
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
        PermissionStats {
            hits: c.hits,
            misses: c.misses,
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

impl<D: Clone + Send + Sync + 'static> Inner<D> {
    /// Counts a finished load and wraps its decision.
    fn timed<E>(&self, start: Instant, r: Result<D, E>) -> Result<Stamped<D>, E> {
        let took = super::nanos(start.elapsed());
        self.load_nanos.fetch_add(took, Ordering::Relaxed);
        self.loads.fetch_add(1, Ordering::Relaxed);
        if r.is_err() {
            self.load_errors.fetch_add(1, Ordering::Relaxed);
        }
        r.map(|decision| Stamped { decision, stamp: 0 })
    }

    /// Caches a loaded decision unless an invalidation since epoch `since`
    /// matched its key. Returns the index lock when it was cached: the
    /// loader holds it until the load's waiters have the decision, so no
    /// invalidation can run between caching it and handing it out.
    fn store(
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
        let mut index = self.index.lock();
        index.drain(&self.graveyard);
        if index.invalidated_since(&key, since, self.epoch.load(Ordering::SeqCst)) {
            return None;
        }
        let stamp = self.next_stamp.fetch_add(1, Ordering::Relaxed);
        index.register(&key, stamp);
        self.cache.insert_with_ttl(
            key,
            Stamped {
                decision: value.decision,
                stamp,
            },
            ttl,
        );
        // An insert can evict (even the new entry): forget what left.
        index.drain(&self.graveyard);
        Some(index)
    }

    /// Records an invalidation, takes the matching keys out of the index and
    /// removes them from the cache, all under the index lock.
    fn invalidate(
        &self,
        target: Target,
        take: impl FnOnce(&mut Index) -> (Vec<PermissionKey>, usize),
    ) -> usize {
        let mut index = self.index.lock();
        index.drain(&self.graveyard);
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        index.recent.push_back((epoch, target));
        if index.recent.len() > RECENT_INVALIDATIONS {
            index.recent.pop_front();
        }
        let (keys, n) = take(&mut index);
        for key in &keys {
            self.cache.remove(key);
        }
        index.drain(&self.graveyard);
        n
    }
}

/// What an invalidation covered.
enum Target {
    Key(PermissionKey),
    Subject(Arc<str>),
    Resource(Arc<str>, Arc<str>),
    All,
}

impl Target {
    fn matches(&self, key: &PermissionKey) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Subject(s) => **s == *key.subject(),
            Self::Resource(kind, id) => (&**kind, &**id) == key.resource(),
            Self::All => true,
        }
    }
}

type KeySet = HashSet<PermissionKey>;

/// The secondary index; every field is guarded by `Inner::index`.
#[derive(Default)]
struct Index {
    /// The stamp of each indexed key's current incarnation.
    stamps: HashMap<PermissionKey, u64>,
    by_subject: HashMap<Arc<str>, KeySet>,
    by_resource: HashMap<Arc<str>, HashMap<Arc<str>, KeySet>>,
    /// The latest invalidations, by epoch.
    recent: VecDeque<(u64, Target)>,
}

impl Index {
    fn register(&mut self, key: &PermissionKey, stamp: u64) {
        if self.stamps.insert(key.clone(), stamp).is_some() {
            return;
        }
        let subject = key.subject();
        match self.by_subject.get_mut(subject) {
            Some(set) => set.insert(key.clone()),
            None => self
                .by_subject
                .entry(Arc::from(subject))
                .or_default()
                .insert(key.clone()),
        };
        let (kind, id) = key.resource();
        let ids = match self.by_resource.get_mut(kind) {
            Some(ids) => ids,
            None => self.by_resource.entry(Arc::from(kind)).or_default(),
        };
        match ids.get_mut(id) {
            Some(set) => set.insert(key.clone()),
            None => ids.entry(Arc::from(id)).or_default().insert(key.clone()),
        };
    }

    /// Unindexes `key` if its indexed incarnation is `stamp`.
    fn forget(&mut self, key: &PermissionKey, stamp: u64) {
        if self.stamps.get(key) == Some(&stamp) {
            self.unindex(key);
        }
    }

    fn unindex(&mut self, key: &PermissionKey) -> bool {
        if self.stamps.remove(key).is_none() {
            return false;
        }
        let subject = key.subject();
        if let Some(set) = self.by_subject.get_mut(subject) {
            set.remove(key);
            if set.is_empty() {
                self.by_subject.remove(subject);
            }
        }
        let (kind, id) = key.resource();
        if let Some(ids) = self.by_resource.get_mut(kind) {
            if let Some(set) = ids.get_mut(id) {
                set.remove(key);
                if set.is_empty() {
                    ids.remove(id);
                }
            }
            if ids.is_empty() {
                self.by_resource.remove(kind);
            }
        }
        true
    }

    fn drain(&mut self, graveyard: &Mutex<Vec<(PermissionKey, u64)>>) {
        let gone = std::mem::take(&mut *graveyard.lock());
        for (key, stamp) in &gone {
            self.forget(key, *stamp);
        }
    }

    fn take_key(&mut self, key: &PermissionKey) -> (Vec<PermissionKey>, usize) {
        let n = usize::from(self.unindex(key));
        (vec![key.clone()], n)
    }

    /// Unindexes every one of `keys` (all indexed), for `take_subject` and
    /// `take_resource`.
    fn unindex_all(&mut self, keys: Vec<PermissionKey>) -> (Vec<PermissionKey>, usize) {
        keys.iter().for_each(|k| {
            self.unindex(k);
        });
        let n = keys.len();
        (keys, n)
    }

    fn take_subject(&mut self, subject: &str) -> (Vec<PermissionKey>, usize) {
        let keys: Vec<_> = self
            .by_subject
            .get(subject)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        self.unindex_all(keys)
    }

    fn take_resource(&mut self, kind: &str, id: &str) -> (Vec<PermissionKey>, usize) {
        let keys: Vec<_> = self
            .by_resource
            .get(kind)
            .and_then(|ids| ids.get(id))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        self.unindex_all(keys)
    }

    /// Whether an invalidation after epoch `since` (up to `now`) covers `key`,
    /// or may have: when the ring no longer reaches back to `since`.
    fn invalidated_since(&self, key: &PermissionKey, since: u64, now: u64) -> bool {
        if now == since {
            return false;
        }
        match self.recent.front() {
            Some((oldest, _)) if *oldest <= since + 1 => self
                .recent
                .iter()
                .filter(|(epoch, _)| *epoch > since)
                .any(|(_, target)| target.matches(key)),
            _ => true,
        }
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
