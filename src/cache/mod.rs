//! [`Cache`]: the handle users hold. Hashes a key once, picks its shard from
//! the hash's middle bits, locks that shard and delegates.
//!
//! Owns the shards' locks, the shared capacity budget, the journal handle
//! and the statistics. Calls down only: a shard (under its lock), the
//! journal (encoding before the lock, waiting after it), the single-flight
//! table, the refresher, the listener (after the lock).
//!
//! The handle's methods, one job a file:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | reads, writes, statistics |
//! | `peek.rs` | reads that do not count as an access (`ttl`, `contains_key`, ...) |
//! | `remove.rs` | `remove` and `set_ttl` |
//! | `build.rs` | construction from a [`CacheBuilder`](crate::CacheBuilder) |
//! | `compute.rs` | [`Cache::compute`], the atomic read-modify-write |
//! | `deadline.rs` | deadlines on the cache's clock, for a caller with its own wall clock (`KvStore`) |
//! | `load.rs` | single-flight read-through loads (`get_or_insert_with` and kin) |
//! | `load_spawned.rs` | loads handed to the caller's spawner |
//! | `freshness.rs` | the read path with refresh-ahead and stale windows |
//! | `reload.rs` | starting and landing background reloads |
//! | `bulk.rs` | iteration, `retain`, `clear` |
//! | `scan.rs` | cursor iteration |
//! | `room.rs` | making room across shards for a shared budget |
//! | `batch.rs` | writes of several keys as one step, across shards |
//! | `read_batch.rs` | reads of several keys as one step, across shards |
//! | `locked.rs` | the shards of several keys, locked at once in ascending index |
//! | `replay.rs`, `warm.rs` | filling a cache from its log and its saved admission summary |

mod batch;
mod batch_locked;
mod batch_plan;
pub(crate) use batch::{BatchFull, BatchWrite};
mod build;
mod bulk;
mod compute;
mod deadline;
mod freshness;
mod load;
mod load_spawned;
mod locked;
mod notify;
pub(crate) use notify::deliver;
mod peek;
mod read_batch;
pub(crate) use read_batch::ReadAs;
mod reload;
mod remove;
mod replay;
mod replay_fold;
mod room;
mod scan;
mod warm;

pub use bulk::Iter;

use crate::clock::Millis;
use crate::error::CapacityError;
use crate::expire_after::WriteTtl;
use crate::flight::Flights;
use crate::hash::{hash_of, shard_index, DefaultHashBuilder};
use crate::listener::{Listener, Removed};
use crate::persist::journal::{Journal, Ticket};
use crate::persist::RecordRef;
use crate::policy::node::HitCount;
use crate::refresh::Refresher;
use crate::shard::{Env, Inserted, LazyNow, LoadId, Lookup, Shard};
use crate::shard_lock::ShardLock as Lock;
use crate::stats::StatsCounters;
use crate::sync::{Arc, CacheAligned};
use crate::weigher::{Weight, Weights};
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
pub(crate) type ShardLock<K, V> = CacheAligned<Lock<Shard<K, V>>>;

pub(crate) struct Inner<K, V, S> {
    /// Each shard's lock words (its flags and the reader counts' address)
    /// are followed, in the same cache line, by the shard fields every
    /// operation reads; see [`Shard`]. Shards never share
    /// a line. Shared with the log's rewrites (see `journaling.rs`), which
    /// must not hold the cache itself.
    shards: Arc<[ShardLock<K, V>]>,
    mask: usize,
    hasher: S,
    weights: Weights<K, V>,
    clock: Millis,
    ttl: WriteTtl<K, V>,
    tti: Option<u64>,
    /// How many hits a reader stores in an entry (the policy's rule).
    hits: HitCount,
    listener: Option<Listener<K, V>>,
    stats: StatsCounters,
    max_capacity: u64,
    /// The capacity all shards share, when built with one (see `shard/budget.rs`).
    budget: Option<Arc<crate::shard::Budget>>,
    /// Each shard's earliest deadline (`u64::MAX`: none), when the shards
    /// keep their deadlines in order (see `CacheBuilder::expired_first`);
    /// empty otherwise.
    fronts: Box<[Arc<std::sync::atomic::AtomicU64>]>,
    /// Whether writes log the entries they evict (see
    /// `CacheBuilder::log_evictions`).
    log_evictions: bool,
    pub(crate) flights: Flights<K, V>,
    /// The write-ahead log, once attached by `build_persistent`.
    pub(crate) journal: std::sync::OnceLock<Arc<Journal<K, V>>>,
    /// Refresh-ahead and the stale window, when configured (see `refresh`).
    refresh: Option<Box<Refresher<K, V>>>,
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

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    #[inline]
    pub(super) fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, usize) {
        let hash = hash_of(&self.inner.hasher, key);
        (hash, shard_index(hash, self.inner.mask))
    }

    pub(crate) fn locate_key<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, usize) {
        self.locate(key)
    }

    /// What a read-only walk of the shards needs: the hasher, the
    /// time-to-idle in ms, and the monotonic clock.
    pub(crate) fn read_env(&self) -> (&S, Option<u64>, &Millis) {
        (&self.inner.hasher, self.inner.tti, &self.inner.clock)
    }

    /// The capacity all shards share, if any.
    pub(crate) fn budget(&self) -> Option<&crate::shard::Budget> {
        self.inner.budget.as_deref()
    }

    /// Each shard's earliest deadline, when the shards keep their deadlines
    /// in order; empty otherwise.
    pub(crate) fn fronts(&self) -> &[Arc<std::sync::atomic::AtomicU64>] {
        &self.inner.fronts
    }

    pub(crate) fn shard(&self, s: usize) -> &Lock<Shard<K, V>> {
        &self.inner.shards[s]
    }

    /// What a write to shard `s` needs from the cache.
    pub(crate) fn write_env(&self, s: usize) -> Env<'_, K, V, S> {
        self.env(s)
    }

    pub(super) fn env(&self, _shard: usize) -> Env<'_, K, V, S> {
        Env {
            hasher: &self.inner.hasher,
            weights: &self.inner.weights,
            clock: &self.inner.clock,
            now_ms: std::cell::Cell::new(None),
            now_frac: std::cell::Cell::new(Duration::ZERO),
            tti: self.inner.tti,
            grace: self.refresher().map_or(0, Refresher::kept_past_ttl_ms),
            hits: self.inner.hits,
        }
    }

    /// The value for `key`, if present and not expired. Counts a hit or a miss.
    ///
    /// Takes the shard's read lock, records the access with one relaxed store
    /// to the entry's own meta word (none once its hit counter has
    /// saturated), and clones the value: use `Arc<T>` for values that are
    /// expensive to clone.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(r) = self.refresher() {
            return self.read_refreshing(r, key).map(|(v, _)| v);
        }
        let (hash, s) = self.locate(key);
        let now = LazyNow::new(|| self.inner.clock.now_past());
        let found = {
            let shard = self.inner.shards[s].read();
            match shard.get(hash, key, &now, self.inner.tti, self.inner.hits) {
                Lookup::Hit(v) => Some(v.clone()),
                Lookup::Miss | Lookup::Expired => None,
            }
        };
        self.inner.stats.bump_lookup(found.is_some());
        found
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
    /// default. Deadlines are whole milliseconds, rounded up, and end at
    /// about 34 years (2^40 ms) after the cache was built, whatever the
    /// clock's origin: a longer `ttl`, such as `Duration::MAX`, keeps the
    /// entry until then.
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
        let expire = ttl.map_or(Expire::Never, Expire::After);
        self.try_insert_inner(key, value, expire)
    }

    fn try_insert_inner(
        &self,
        key: K,
        value: V,
        expire: Expire,
    ) -> Result<(), CapacityError<K, V>> {
        self.insert_for(key, value, expire, None, None).map(drop)
    }

    /// Inserts or replaces `key`. With `load`, the value is that read-through
    /// load's, whose mark this ends: stored only if no write to `key`
    /// overtook the load (`Ok(false)` when one did, and nothing changed).
    /// With `later`, the write's removals are counted and left there for the
    /// listener instead of handed to it.
    ///
    /// Always inlined, so that in a plain insert (no load) the check folds
    /// away: shared with the loads' stores as a call, it cost about 6
    /// instructions per insert.
    #[inline(always)]
    fn insert_for(
        &self,
        key: K,
        value: V,
        expire: Expire,
        load: Option<LoadId>,
        later: Option<&mut Removed<K, V>>,
    ) -> Result<bool, CapacityError<K, V>> {
        let (hash, s) = self.locate(&key);
        let env = self.env(s);
        let deadline = match expire {
            Expire::Default => self.stored_deadline(
                self.inner
                    .ttl
                    .of(&key, &value)
                    .map(|t| env.deadline_after(t)),
            ),
            Expire::After(t) => self.stored_deadline(Some(env.deadline_after(t))),
            Expire::Never => None,
            Expire::StoredAt(d) => Some(d),
        };
        if self.journal().is_none() {
            // No log: nothing to encode, undo or wait for.
            let mut removed = Removed::new();
            let result = {
                let mut shard = self.inner.shards[s].write();
                if !may_store(&mut shard, load) {
                    return Ok(false);
                }
                self.insert_with_room(
                    s,
                    &mut shard,
                    &env,
                    hash,
                    key,
                    value,
                    Weight::Hidden(0),
                    deadline,
                    &mut removed,
                )
            };
            return self.inserted(result, removed, true, later);
        }
        let record = self.admit().and_then(|()| {
            self.encode(|| RecordRef::Insert {
                key: &key,
                value: &value,
                expires_at: deadline.map(|d| self.wall_ms(d)),
            })
        });
        let record = match record {
            Ok(record) => record,
            // Refused: the log could not reproduce it.
            Err(e) => {
                self.report(e);
                // Not stored either way; an overtaken load still says so,
                // so that its waiters look again rather than take its value.
                let overtaken = load.is_some_and(|id| !self.inner.shards[s].write().end_load(id));
                return Ok(!overtaken);
            }
        };
        let mut removed = Removed::new();
        let (result, ticket) = {
            let mut shard = self.inner.shards[s].write();
            if !may_store(&mut shard, load) {
                return Ok(false);
            }
            let undo = self.undo_for(&shard, &env, hash, &key, Some(&key));
            let r = self.insert_with_room(
                s,
                &mut shard,
                &env,
                hash,
                key,
                value,
                Weight::Hidden(0),
                deadline,
                &mut removed,
            );
            let ticket = match r {
                Ok(_) => {
                    self.log_evicted(&removed);
                    self.append(record, undo)
                }
                Err(_) => Ticket::None,
            };
            (r, ticket)
        };
        let stands = self.settle_write(ticket, &mut removed);
        self.inserted(result, removed, stands, later)
    }

    /// Counts an insert's outcome and hands its removals to the listener,
    /// or leaves them in `later`.
    ///
    /// Always inlined: as a call (a plain `#[inline]` was not taken), it
    /// copied the removals out and cost about 20 instructions per insert.
    #[inline(always)]
    fn inserted(
        &self,
        result: Result<Inserted, (K, V)>,
        removed: Removed<K, V>,
        stands: bool,
        later: Option<&mut Removed<K, V>>,
    ) -> Result<bool, CapacityError<K, V>> {
        match result {
            Ok(kind) => {
                self.after_write_or_later(removed, stands.then_some(kind), false, later);
                Ok(true)
            }
            Err((key, value)) => {
                self.after_write_or_later(removed, None, true, later);
                Err(CapacityError { key, value })
            }
        }
    }

    /// [`after_write`](Self::after_write), or with `later` only the
    /// counting, the removals left there.
    #[inline(always)]
    fn after_write_or_later(
        &self,
        removed: Removed<K, V>,
        inserted: Option<Inserted>,
        rejected: bool,
        later: Option<&mut Removed<K, V>>,
    ) {
        match later {
            None => self.after_write(removed, inserted, rejected),
            Some(later) => {
                self.count_write(&removed, inserted, rejected);
                later.extend(removed);
            }
        }
    }

    /// A monotonic deadline as wall-clock Unix milliseconds (what the log
    /// stores), through the cache's wall-clock origin: the same deadline
    /// always gives the same time.
    pub(crate) fn wall_ms(&self, deadline: u64) -> u64 {
        self.inner.clock.reading().wall_ms_of(deadline)
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

    /// The time to live of `key` = `value` written without one of its own.
    pub(crate) fn write_ttl(&self, key: &K, value: &V) -> Option<Duration> {
        self.inner.ttl.of(key, value)
    }

    /// The configured capacity (`u64::MAX` when unbounded).
    pub fn max_capacity(&self) -> u64 {
        self.inner.max_capacity
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The time-to-idle (ms), for records.
    pub(crate) fn tti(&self) -> Option<u64> {
        self.inner.tti
    }

    /// Wall-clock Unix milliseconds from the cache's clock: its monotonic
    /// milliseconds plus an origin, the Unix time of its first millisecond,
    /// that follows the clock's wall time once the two part by more than
    /// 10 ms (a step of the system clock). The log's deadlines convert
    /// through the same origin, so a deadline written and read back lands
    /// on the same millisecond.
    pub fn wall_clock_ms(&self) -> u64 {
        self.inner.clock.wall_now()
    }

    /// What a rewrite of the log reads, apart from the cache itself.
    pub(crate) fn log_source(&self) -> crate::journaling::LogSource<K, V, S> {
        crate::journaling::LogSource {
            shards: self.inner.shards.clone(),
            hasher: self.inner.hasher.clone(),
            tti: self.inner.tti,
            clock: self.inner.clock.clone(),
        }
    }

    /// Starts every shard's adaptive window at share `w` (saved before a
    /// restart); ignored unless `w` is a share (0 to 1).
    pub(crate) fn restore_window_share(&self, w: f64) {
        if !(0.0..=1.0).contains(&w) {
            return;
        }
        for s in 0..self.inner.shards.len() {
            self.shard(s).write().set_window_share(w);
        }
    }

    /// The refresh machinery, if configured.
    #[inline]
    pub(crate) fn refresher(&self) -> Option<&Refresher<K, V>> {
        self.inner.refresh.as_deref()
    }

    /// The deadline to store for an entry due to expire at `deadline`.
    pub(crate) fn stored_deadline(&self, deadline: Option<u64>) -> Option<u64> {
        match self.refresher() {
            Some(r) => r.stored_deadline(deadline),
            None => deadline,
        }
    }

    /// Whether an entry with stored deadline `d` is live to readers at `now`
    /// (it may be kept past its time to live for the refresh windows).
    fn visible(&self, d: Option<u64>, now: u64) -> bool {
        match (self.refresher(), d) {
            (Some(r), Some(d)) => r.visible_deadline(d) > now,
            _ => true,
        }
    }

    pub(crate) fn clock_now(&self) -> u64 {
        self.inner.clock.now()
    }

    pub(crate) fn tti_ms(&self) -> Option<u64> {
        self.inner.tti
    }

    /// How many hits a reader stores in an entry.
    pub(crate) fn hit_count(&self) -> HitCount {
        self.inner.hits
    }

    pub(crate) fn count_lookup(&self, hit: bool) {
        self.inner.stats.bump_lookup(hit);
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner<K, V, S>> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner<K, V, S>>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
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

/// Ends the read-through load `load` names, if any, in its (locked) shard:
/// whether its value may be stored.
#[inline(always)]
fn may_store<K: Hash + Eq, V>(shard: &mut Shard<K, V>, load: Option<LoadId>) -> bool {
    match load {
        Some(id) => shard.end_load(id),
        None => true,
    }
}

/// How an insert sets the entry's deadline.
#[derive(Clone, Copy)]
enum Expire {
    Default,
    After(Duration),
    Never,
    /// This deadline on the cache's clock, as a log holds it: the refresh
    /// windows' grace (see [`stored_deadline`](Cache::stored_deadline))
    /// already included.
    StoredAt(u64),
}

#[cfg(test)]
mod tests;
