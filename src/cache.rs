//! [`Cache`]: the handle users hold. Hashes a key once, picks its shard from
//! the hash's middle bits, locks that shard and delegates.

use crate::builder::CacheBuilder;
use crate::clock::Millis;
use crate::error::CapacityError;
use crate::expiry::deadline_after;
use crate::hash::{hash_of, shard_index, DefaultHashBuilder};
use crate::listener::{Listener, RemovalCause, Removed};
use crate::loader::Flights;
use crate::persist::{Journal, PersistError, RecordRef};
use crate::policy::{HillClimber, Share, DUEL_MIN_SHARDS, DUEL_OFFSET};
use crate::shard::{Env, Inserted, LazyNow, Lookup, Shard};
use crate::stats::{CacheStats, Counter, DuelRole, StatsCounters};
use crate::sync::{Arc, AtomicU64, CacheAligned, Mutex, Ordering, RwLock};
use crate::weigher::Weights;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

/// A concurrent, sharded, bounded cache. Cloning it is cheap and gives another
/// handle to the same cache.
///
/// ```
/// use shardcache::Cache;
/// use std::sync::Arc;
///
/// let cache: Cache<String, Arc<str>> = Cache::new(1_000);
/// cache.insert("user:1".to_string(), Arc::from("Ada"));
/// assert_eq!(cache.get("user:1").as_deref(), Some("Ada"));
/// assert!(cache.contains_key("user:1"));
/// assert_eq!(cache.remove("user:1").as_deref(), Some("Ada"));
/// assert!(cache.is_empty());
/// ```
pub struct Cache<K, V, S = DefaultHashBuilder> {
    pub(crate) inner: Arc<Inner<K, V, S>>,
}

/// One shard behind its lock, on cache lines of its own.
type ShardLock<K, V> = CacheAligned<RwLock<Shard<K, V>>>;

pub(crate) struct Inner<K, V, S> {
    /// Each shard's lock word is followed, in the same cache line, by the
    /// shard fields every operation reads; see [`Shard`]. Shards never share
    /// a line.
    shards: Box<[ShardLock<K, V>]>,
    mask: usize,
    hasher: S,
    weights: Weights<K, V>,
    clock: Millis,
    ttl: Option<Duration>,
    tti: Option<u64>,
    listener: Option<Listener<K, V>>,
    stats: StatsCounters,
    climber: Option<Mutex<HillClimber>>,
    /// The window share (`Share` bits) the climber last chose.
    window: AtomicU64,
    /// Whether the climber duels (see `HillClimber::duel`): the leader
    /// shards (see [`DuelRole`]) then run the window `duel_offset` larger or
    /// smaller, and their lookups are counted apart.
    dueling: bool,
    duel_offset: Share,
    max_capacity: u64,
    pub(crate) flights: Flights<K, V>,
    /// The write-ahead log, once attached by `build_persistent`.
    pub(crate) journal: std::sync::OnceLock<Arc<dyn Journal<K, V>>>,
    /// The first log failure since the last `sync`.
    log_error: Mutex<Option<PersistError>>,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.inner.shards.len())
            .field("max_capacity", &self.inner.max_capacity)
            .finish_non_exhaustive()
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `max_capacity` entries with the default settings.
    /// A `max_capacity` of 0 is treated as 1.
    pub fn new(max_capacity: u64) -> Self {
        Self::from_builder(CacheBuilder::new().max_capacity(max_capacity.max(1)))
    }

    /// A builder for every other setting.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }
}

/// How often (in inserts per shard) the hill climber is consulted.
const CLIMB_EVERY: u64 = 128;
/// Slab slots a log rewrite reads per hold of a shard's read lock.
const REWRITE_CHUNK: usize = 1024;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    pub(crate) fn from_builder(b: CacheBuilder<K, V, S>) -> Self {
        let max_capacity = b.max_capacity.unwrap_or(u64::MAX);
        // Never more shards than capacity, so every shard holds at least one.
        let shards = b.shard_count().min(prev_power_of_two(max_capacity));
        let per_shard = max_capacity / shards as u64;
        let remainder = max_capacity % shards as u64;
        let unit = matches!(b.weigher, Weights::Unit);
        // Tables start small and grow with the entries: presized for a large
        // capacity they would be sparse while the cache fills, and a sparse
        // table misses the CPU cache on every lookup (10k keys in a cache
        // built for 1M: GETs 1.7x slower). Growth doubles, so a full shard
        // ends at the same size either way.
        let presize = if unit {
            per_shard.min(1 << 12) as usize
        } else {
            0
        };
        // An unbounded cache never evicts, so it never asks its sketch; a
        // small one keeps it from touching a large zeroed allocation.
        let sketch_entries = if unit && b.max_capacity.is_some() {
            per_shard.min(1 << 24) as usize
        } else {
            1 << 12
        };
        let seed = b.hasher.hash_one(0x5EED_u64);
        let built: Box<[_]> = (0..shards)
            .map(|i| {
                let state = b.policy.state(sketch_entries);
                let capacity = per_shard + u64::from((i as u64) < remainder);
                CacheAligned(RwLock::new(Shard::new(
                    capacity,
                    state,
                    b.policy.can_evict(),
                    presize,
                    seed.wrapping_add(i as u64),
                )))
            })
            .collect();
        let climber = b
            .policy
            .is_adaptive()
            .then(|| Mutex::new(HillClimber::new(max_capacity.min(1 << 40))));
        let dueling = climber.is_some() && shards >= DUEL_MIN_SHARDS;
        Self {
            inner: Arc::new(Inner {
                shards: built,
                mask: shards - 1,
                hasher: b.hasher,
                weights: b.weigher,
                clock: Millis::new(b.clock),
                ttl: b.ttl,
                tti: b.tti.map(crate::expiry::ttl_ms),
                listener: b.listener,
                stats: StatsCounters::new(),
                climber,
                window: AtomicU64::new(Share::from_f64(HillClimber::initial_window()).to_bits()),
                dueling,
                duel_offset: Share::from_f64(DUEL_OFFSET),
                max_capacity,
                flights: Flights::new(shards),
                journal: std::sync::OnceLock::new(),
                log_error: Mutex::new(None),
            }),
        }
    }

    #[inline]
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, usize) {
        let hash = hash_of(&self.inner.hasher, key);
        (hash, shard_index(hash, self.inner.mask))
    }

    pub(crate) fn locate_key<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, usize) {
        self.locate(key)
    }

    pub(crate) fn shard(&self, s: usize) -> &RwLock<Shard<K, V>> {
        &self.inner.shards[s]
    }

    /// What a write to shard `s` needs from the cache.
    pub(crate) fn write_env(&self, s: usize) -> Env<'_, K, V, S> {
        self.env(s)
    }

    /// Bookkeeping after a write: counters, listener, hill climbing.
    pub(crate) fn after_write(
        &self,
        removed: Removed<K, V>,
        inserted: Option<Inserted>,
        rejected: bool,
    ) {
        match inserted {
            Some(Inserted::New) => self.inner.stats.bump(Counter::Insert),
            Some(Inserted::Replaced) => self.inner.stats.bump(Counter::Update),
            None => {}
        }
        if rejected {
            self.inner.stats.bump(Counter::Rejection);
        }
        self.notify(removed);
    }

    fn env(&self, s: usize) -> Env<'_, K, V, S> {
        let mut window = Share::from_bits(self.inner.window.load(Ordering::Relaxed));
        if self.inner.dueling {
            window = match DuelRole::of(s) {
                DuelRole::Follower => window,
                DuelRole::Large => window.shifted(self.inner.duel_offset, true),
                DuelRole::Small => window.shifted(self.inner.duel_offset, false),
            };
        }
        Env {
            hasher: &self.inner.hasher,
            weights: &self.inner.weights,
            clock: &self.inner.clock,
            now_ms: std::cell::Cell::new(None),
            tti: self.inner.tti,
            window,
        }
    }

    /// The value for `key`, if present and not expired. Counts a hit or a miss.
    ///
    /// Takes the shard's read lock, records the access with at most one atomic
    /// compare-and-swap on the entry, and clones the value: use `Arc<T>` for
    /// values that are expensive to clone.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate(key);
        let now = LazyNow::new(|| self.inner.clock.now());
        let found = match self.inner.shards[s]
            .read()
            .get(hash, key, &now, self.inner.tti)
        {
            Lookup::Hit(v) => Some(v.clone()),
            Lookup::Miss | Lookup::Expired => None,
        };
        self.inner.stats.bump_lookup(found.is_some(), s);
        found
    }

    /// Runs `f` on the live entry for `key` (its value and remaining time to
    /// live) under the shard's read lock, without counting an access.
    fn peek_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V, Option<Duration>) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate(key);
        let now = LazyNow::new(|| self.inner.clock.now());
        let shard = self.inner.shards[s].read();
        let found = shard.peek(hash, key, &now, self.inner.tti)?;
        let ttl = found
            .deadline
            .map(|d| Duration::from_millis(d.saturating_sub(now.get())));
        Some(f(found.value, ttl))
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

    /// Inserts or replaces `key` with the cache's default time to live.
    ///
    /// If the cache's policy never evicts and it is full, the entry is
    /// dropped (and counted in `rejections`); use [`try_insert`](Self::try_insert)
    /// to get it back.
    pub fn insert(&self, key: K, value: V) {
        let _ = self.try_insert_inner(key, value, Expire::Default);
    }

    /// Inserts or replaces `key`, expiring `ttl` from now whatever the cache's
    /// default.
    ///
    /// ```
    /// use shardcache::{Cache, MockClock};
    /// use std::time::Duration;
    /// let clock = MockClock::new();
    /// let cache: Cache<&str, &str> = Cache::builder().max_capacity(10).clock(clock.clone()).build()?;
    /// cache.insert_with_ttl("otp", "123456", Duration::from_secs(30));
    /// assert_eq!(cache.ttl("otp"), Some(Some(Duration::from_secs(30))));
    /// clock.advance(Duration::from_secs(30));
    /// assert_eq!(cache.get("otp"), None);
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        let _ = self.try_insert_inner(key, value, Expire::After(ttl));
    }

    /// Inserts or replaces `key`, handing it back when it does not fit.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] (with the key and value) when the cache is full and
    /// its policy never evicts, or when the entry alone weighs more than a
    /// shard's share of the capacity.
    pub fn try_insert(&self, key: K, value: V) -> Result<(), CapacityError<K, V>> {
        self.try_insert_inner(key, value, Expire::Default)
    }

    /// Like [`try_insert`](Self::try_insert) with an explicit expiry: `Some(ttl)`
    /// or `None` for none at all (ignoring the cache's default).
    ///
    /// # Errors
    ///
    /// As [`try_insert`](Self::try_insert).
    pub fn try_insert_with_expiry(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> Result<(), CapacityError<K, V>> {
        self.try_insert_inner(key, value, ttl.map_or(Expire::Never, Expire::After))
    }

    fn try_insert_inner(
        &self,
        key: K,
        value: V,
        expire: Expire,
    ) -> Result<(), CapacityError<K, V>> {
        let (hash, s) = self.locate(&key);
        let env = self.env(s);
        let deadline = match expire {
            Expire::Default => self.inner.ttl.map(|t| deadline_after(env.now(), t)),
            Expire::After(t) => Some(deadline_after(env.now(), t)),
            Expire::Never => None,
        };
        let record = self.encode(|| RecordRef::Insert {
            key: &key,
            value: &value,
            expires_at: deadline.map(|d| self.wall_ms(d, env.now())),
        });
        let mut removed = Removed::new();
        let (result, climb, lsn) = {
            let mut shard = self.inner.shards[s].write();
            let r = shard.insert(&env, hash, key, value, deadline, &mut removed);
            let lsn = if r.is_ok() { self.append(record) } else { None };
            (r, shard.tick(CLIMB_EVERY), lsn)
        };
        self.wait_durable(lsn);
        let result = match result {
            Ok(kind) => {
                self.after_write(removed, Some(kind), false);
                Ok(())
            }
            Err((key, value)) => {
                self.after_write(removed, None, true);
                Err(CapacityError { key, value })
            }
        };
        if climb {
            self.climb();
        }
        result
    }

    /// Encodes a log record, if a log is attached (`None` otherwise or on
    /// failure, which is kept for [`sync`](Self::sync)).
    pub(crate) fn encode<'a>(&self, record: impl FnOnce() -> RecordRef<'a, K, V>) -> Option<Vec<u8>>
    where
        K: 'a,
        V: 'a,
    {
        let journal = self.inner.journal.get()?;
        self.keep_error(journal.encode(record()))
    }

    /// Appends an encoded record (call with the key's shard locked).
    pub(crate) fn append(&self, record: Option<Vec<u8>>) -> Option<u64> {
        let journal = self.inner.journal.get()?;
        self.keep_error(journal.log().append(&record?))
    }

    /// Waits (after the shard is unlocked) until `lsn` is durable per the log's policy.
    pub(crate) fn wait_durable(&self, lsn: Option<u64>) {
        if let (Some(journal), Some(lsn)) = (self.inner.journal.get(), lsn) {
            self.keep_error(journal.log().wait(lsn));
            journal.after_write();
        }
    }

    pub(crate) fn keep_error<T>(&self, r: Result<T, PersistError>) -> Option<T> {
        r.map_err(|e| {
            let mut slot = self.inner.log_error.lock();
            if slot.is_none() {
                *slot = Some(e);
            }
        })
        .ok()
    }

    /// A monotonic deadline as wall-clock Unix milliseconds (what the log stores).
    pub(crate) fn wall_ms(&self, deadline: u64, now: u64) -> u64 {
        self.inner
            .clock
            .wall_now()
            .saturating_add(deadline.saturating_sub(now))
    }

    /// Makes every logged write durable, and reports the first log failure
    /// since the last call (writes are applied in memory even when logging
    /// them fails, so the cache stays usable). Without a log, does nothing.
    ///
    /// # Errors
    ///
    /// The first [`PersistError`] a write or sync met since the last call.
    pub fn sync(&self) -> Result<(), PersistError> {
        if let Some(e) = self.inner.log_error.lock().take() {
            return Err(e);
        }
        match self.inner.journal.get() {
            Some(journal) => journal.log().sync(),
            None => Ok(()),
        }
    }

    /// Rewrites (compacts) the cache's log now, as Redis's `BGREWRITEAOF`:
    /// the log is replaced by one insert per live entry, written from a
    /// snapshot taken one shard at a time while writes go on (writes made
    /// during the rewrite are carried over, none is lost). A log built with
    /// [`FileLog`](crate::persist::FileLog) is also rewritten automatically,
    /// on a background thread, once it has grown enough (see
    /// [`FileLog::rewrite_policy`](crate::persist::FileLog::rewrite_policy)).
    /// Without a log, does nothing.
    ///
    /// # Errors
    ///
    /// The rewrite failed; the old log stays in use, complete.
    pub fn rewrite_log(&self) -> Result<(), PersistError> {
        let Some(journal) = self.inner.journal.get() else {
            return Ok(());
        };
        let inner = &self.inner;
        // One chunk's records, encoded back to back, and where each ends.
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        journal.log().rewrite(&mut |emit| {
            for shard in inner.shards.iter() {
                // A shard is read in chunks of slots, each encoded under the
                // read lock (no clones) and written after it, so writers to
                // the shard wait for one chunk at most, not the whole shard.
                // Entries changed between chunks are in the log's tail, which
                // the rewrite appends after the snapshot.
                let mut next = Some(0);
                while let Some(start) = next {
                    bytes.clear();
                    ends.clear();
                    let (now_ms, wall) = (inner.clock.now(), inner.clock.wall_now());
                    let now = LazyNow::new(|| now_ms);
                    let mut failed = None;
                    next = shard.read().for_each_live_from(
                        start,
                        REWRITE_CHUNK,
                        &now,
                        inner.tti,
                        |key, value, deadline| {
                            let record = RecordRef::Insert {
                                key,
                                value,
                                expires_at: deadline
                                    .map(|d| wall.saturating_add(d.saturating_sub(now_ms))),
                            };
                            match journal.encode_into(record, &mut bytes) {
                                Ok(()) => ends.push(bytes.len()),
                                Err(e) => failed = failed.take().or(Some(e)),
                            }
                        },
                    );
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    let mut from = 0;
                    for &end in &ends {
                        emit(&bytes[from..end])?;
                        from = end;
                    }
                }
            }
            Ok(())
        })
    }

    /// Lets the hill climber retune the window if a sample is complete.
    fn climb(&self) {
        let Some(climber) = &self.inner.climber else {
            return;
        };
        let Some(mut climber) = climber.try_lock() else {
            return;
        };
        let (hits, misses) = (self.inner.stats.hits(), self.inner.stats.misses());
        let window = if self.inner.dueling {
            let leaders = [
                self.inner.stats.role(DuelRole::Large),
                self.inner.stats.role(DuelRole::Small),
            ];
            climber.duel(hits, misses, leaders)
        } else {
            climber.climb(hits, misses)
        };
        if let Some(window) = window {
            self.inner
                .window
                .store(Share::from_f64(window).to_bits(), Ordering::Relaxed);
        }
    }

    /// Counts removals and hands them to the listener, with no lock held.
    fn notify(&self, removed: Removed<K, V>) {
        for (k, v, cause) in removed {
            match cause {
                RemovalCause::Evicted => self.inner.stats.bump(Counter::Eviction),
                RemovalCause::Expired => self.inner.stats.bump(Counter::Expiration),
                RemovalCause::Removed => self.inner.stats.bump(Counter::Removal),
                RemovalCause::Replaced => {}
            }
            if let Some(listener) = &self.inner.listener {
                listener(k, v, cause);
            }
        }
    }

    /// Removes `key`, returning its value if it was live.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate(key);
        let env = self.env(s);
        let (taken, lsn) = {
            let mut shard = self.inner.shards[s].write();
            let taken = shard.remove(&env, hash, key);
            let lsn = match &taken {
                Some(((k, _), _)) => self.append(self.encode(|| RecordRef::Remove { key: k })),
                None => None,
            };
            (taken, lsn)
        };
        self.wait_durable(lsn);
        let ((k, v), expired) = taken?;
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
        let (hash, s) = self.locate(key);
        let env = self.env(s);
        let deadline = ttl.map(|t| deadline_after(env.now(), t));
        let (applied, lsn) = {
            let mut shard = self.inner.shards[s].write();
            let applied = shard.set_expiry(&env, hash, key, deadline);
            let lsn = if applied && self.inner.journal.get().is_some() {
                let expires_at = deadline.map(|d| self.wall_ms(d, env.now()));
                shard.key_of(hash, key).and_then(|k| {
                    self.append(self.encode(|| RecordRef::Expire { key: k, expires_at }))
                })
            } else {
                None
            };
            (applied, lsn)
        };
        self.wait_durable(lsn);
        applied
    }

    /// The number of entries, including expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum of entry weights (the entry count without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.read().weight()).sum()
    }

    /// The configured capacity (`u64::MAX` when unbounded).
    pub fn max_capacity(&self) -> u64 {
        self.inner.max_capacity
    }

    /// Removes every entry. The listener sees each with [`RemovalCause::Removed`].
    pub fn clear(&self) {
        if self.inner.journal.get().is_some() {
            // Logged as one record, so every shard is cleared under one
            // critical section: no write can land between the record and a
            // shard's clearing.
            let mut guards: Vec<_> = self.inner.shards.iter().map(|s| s.write()).collect();
            let lsn = self.append(self.encode(|| RecordRef::Clear));
            let mut removed = Removed::new();
            guards.iter_mut().for_each(|g| g.clear(&mut removed));
            drop(guards);
            self.wait_durable(lsn);
            self.notify(removed);
            return;
        }
        for shard in self.inner.shards.iter() {
            let mut removed = Removed::new();
            shard.write().clear(&mut removed);
            self.notify(removed);
        }
    }

    /// Keeps only the live entries for which `keep` returns true; expired
    /// entries go too. Locks one shard at a time.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        for (s, shard) in self.inner.shards.iter().enumerate() {
            let env = self.env(s);
            let mut removed = Removed::new();
            let mut lsn = None;
            {
                let mut guard = shard.write();
                guard.retain(&env, &mut keep, &mut removed);
                if self.inner.journal.get().is_some() {
                    for (k, _, cause) in removed.iter() {
                        if *cause == RemovalCause::Removed {
                            lsn = self
                                .append(self.encode(|| RecordRef::Remove { key: k }))
                                .or(lsn);
                        }
                    }
                }
            }
            self.wait_durable(lsn);
            self.notify(removed);
        }
    }

    /// Removes every entry for which `predicate` returns true (the inverse of
    /// [`retain`](Self::retain)).
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
        let now = LazyNow::new(|| self.inner.clock.now());
        self.inner
            .shards
            .iter()
            .map(|shard| {
                let mut out = Vec::new();
                shard.read().for_each_live(&now, self.inner.tti, |k, v, _| {
                    out.push((k.clone(), v.clone()))
                });
                out
            })
            .collect()
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Wall-clock Unix milliseconds from the cache's clock (what persistence writes).
    pub fn wall_clock_ms(&self) -> u64 {
        self.inner.clock.wall_now()
    }

    pub(crate) fn peek_value<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_with(key, |v, _| v.clone())
    }

    pub(crate) fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        self.locate(key).1
    }

    #[cfg(test)]
    pub(crate) fn validate(&self) {
        for shard in self.inner.shards.iter() {
            shard
                .read()
                .validate(&self.inner.hasher, &self.inner.weights);
        }
    }
}

/// The largest power of two not above `n` (n ≥ 1), as a shard count.
fn prev_power_of_two(n: u64) -> usize {
    let p = 1u64 << (63 - n.max(1).leading_zeros());
    usize::try_from(p).unwrap_or(1 << 16).min(1 << 16)
}

/// How an insert sets the entry's deadline.
enum Expire {
    Default,
    After(Duration),
    Never,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MockClock, Policy};

    #[test]
    fn lock_word_shares_a_line_with_the_hot_shard_fields() {
        // A layout check, not a behaviour one: if a dependency update moves
        // the lock word away from the data, every operation touches one
        // more cache line. Table (32 bytes) and slab header (24) must follow
        // the word within its 64-byte line.
        assert_eq!(std::mem::size_of::<crate::table::Table>(), 32);
        let cache: Cache<u64, u64> = Cache::new(100_000);
        for shard in cache.inner.shards.iter() {
            let lock = &**shard as *const RwLock<Shard<u64, u64>> as usize;
            let data = shard.data_ptr() as usize;
            assert_eq!(lock % 64, 0, "shard not line-aligned");
            assert!(
                data - lock + 56 <= 64,
                "hot fields at {} past the lock word",
                data - lock
            );
        }
    }

    #[test]
    fn dueling_leaders_run_windows_apart_and_count_apart() {
        let build = |shards, policy| {
            Cache::<u64, u64>::builder()
                .max_capacity(10_000)
                .shards(shards)
                .policy(policy)
                .build()
                .expect("valid")
        };
        let duel = build(DUEL_MIN_SHARDS, Policy::tiny_lfu());
        assert!(duel.inner.dueling);
        let w = Share::from_f64(HillClimber::initial_window());
        let offset = Share::from_f64(DUEL_OFFSET);
        assert_eq!(duel.env(1).window, w.shifted(offset, true));
        assert_eq!(duel.env(3).window, w.shifted(offset, false));
        assert_eq!(duel.env(0).window, w);
        assert_eq!(duel.env(6).window, w);
        for few in [
            build(DUEL_MIN_SHARDS / 2, Policy::tiny_lfu()),
            build(DUEL_MIN_SHARDS, Policy::lru()),
        ] {
            assert!(!few.inner.dueling);
            assert_eq!(few.env(0).window, few.env(1).window);
        }
        // Lookups count in their role's counters, and the stats add them all.
        for k in 0..1_000 {
            duel.insert(k, k);
        }
        for k in 0..2_000 {
            duel.get(&k);
        }
        let s = duel.stats();
        assert_eq!((s.hits, s.misses), (1_000, 1_000));
        for role in [DuelRole::Large, DuelRole::Small] {
            let (h, m) = duel.inner.stats.role(role);
            assert!((100..400).contains(&h), "a quarter of the hits: {h}");
            assert!((100..400).contains(&m), "a quarter of the misses: {m}");
        }
        duel.reset_stats();
        assert_eq!(duel.stats().lookups(), 0);
    }

    /// Random operations on small caches, checking every internal invariant
    /// (table, lists, expiry index, weights) after each step.
    #[test]
    fn invariants_hold_under_random_operations() {
        for (policy, weighted, shards) in [
            (Policy::tiny_lfu(), false, 2),
            (Policy::lru(), false, 2),
            (Policy::tiny_lfu(), true, 2),
            // Dueling leaders, with windows apart.
            (Policy::tiny_lfu(), false, 16),
        ] {
            let clock = MockClock::new();
            let mut b = Cache::<u32, u32>::builder()
                .max_capacity(40)
                .shards(shards)
                .policy(policy)
                .clock(clock.clone());
            if weighted {
                b = b.weigher(|_: &u32, v: &u32| v % 5);
            }
            let cache = b.build().expect("valid");
            let mut x = 0x1234_5678_u32;
            for step in 0..20_000u32 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let k = x % 97;
                match x % 11 {
                    0..=3 => cache.insert(k, step),
                    4 => {
                        cache.insert_with_ttl(k, step, Duration::from_millis(u64::from(x % 50) + 1))
                    }
                    5..=7 => {
                        cache.get(&k);
                    }
                    8 => {
                        cache.remove(&k);
                    }
                    9 => clock.advance(Duration::from_millis(7)),
                    _ if step % 500 == 0 => cache.retain(|k, _| k % 3 != 0),
                    _ => {
                        cache.set_ttl(&k, None);
                    }
                }
                cache.validate();
                assert!(cache.weighted_size() <= 40);
            }
        }
    }
}
