//! [`CacheBuilder`]: every knob of a [`Cache`](crate::Cache), validated once.

mod error;
mod refresh;

pub use error::{BuildError, MAX_TTL_DAYS};

use crate::clock::{Clock, SystemClock};
use crate::compute::Splicer;
use crate::expire_after::ExpireAfter;
use crate::hash::DefaultHashBuilder;
use crate::listener::{Listener, RemovalCause};
use crate::persist::LogSchema;
use crate::policy::Policy;
use crate::refresh::{RefreshConfig, Refresher};
use crate::sync::Arc;
use crate::weigher::Weights;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// Entries per shard below which the default configuration adds no more shards.
const MIN_ENTRIES_PER_SHARD: u64 = 2048;

/// Configures and builds a [`Cache`](crate::Cache). Setters consume the builder; nothing is
/// checked until [`build`](Self::build), which never panics.
///
/// ```
/// use shardcache::{Cache, Policy};
/// use std::time::Duration;
///
/// let cache: Cache<String, u64> = Cache::builder()
///     .max_capacity(10_000)
///     .policy(Policy::tiny_lfu())
///     .time_to_live(Duration::from_secs(300))
///     .time_to_idle(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(cache.max_capacity(), 10_000);
/// # Ok::<(), shardcache::BuildError>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct CacheBuilder<K, V, S = DefaultHashBuilder> {
    pub(crate) max_capacity: Option<u64>,
    pub(crate) weigher: Weights<K, V>,
    pub(crate) shards: Option<usize>,
    pub(crate) policy: Policy,
    pub(crate) ttl: Option<Duration>,
    pub(crate) expire_after: Option<Arc<dyn ExpireAfter<K, V>>>,
    pub(crate) tti: Option<Duration>,
    pub(crate) listener: Option<Listener<K, V>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hasher: S,
    /// One capacity for all shards together (see `shard/budget.rs`), not a share each.
    pub(crate) shared_capacity: bool,
    pub(crate) expired_first: bool,
    pub(crate) refresh: RefreshConfig<K, V>,
    /// The declared name of the data a persistent cache's log holds.
    pub(crate) log_schema: Option<LogSchema>,
    /// How recovery applies the log's partial writes (only a cache whose
    /// values are byte strings makes them; see `compute::Splicer`).
    pub(crate) splicer: Option<Arc<dyn Splicer<K, V>>>,
    /// Whether a persistent cache's log is replayed folded (see
    /// [`replay_folded`](Self::replay_folded)).
    pub(crate) replay_folded: bool,
    /// Whether a persistent cache logs the entries its writes evict (see
    /// [`log_evictions`](Self::log_evictions)).
    pub(crate) log_evictions: bool,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        Self {
            max_capacity: None,
            weigher: Weights::Unit,
            shards: None,
            policy: Policy::default(),
            ttl: None,
            expire_after: None,
            tti: None,
            listener: None,
            clock: Arc::new(SystemClock::new()),
            hasher: DefaultHashBuilder::default(),
            shared_capacity: false,
            expired_first: false,
            refresh: Default::default(),
            log_schema: None,
            splicer: None,
            replay_folded: false,
            log_evictions: false,
            _types: PhantomData,
        }
    }
}

impl<K, V, S> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("weighted", &matches!(self.weigher, Weights::Custom(_)))
            .field("shards", &self.shards)
            .field("policy", &self.policy)
            .field("time_to_live", &self.ttl)
            .field("time_to_idle", &self.tti)
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V> {
    /// A builder with the defaults: unbounded, [`Policy::tiny_lfu`], no expiry,
    /// the system clock and [`DefaultHashBuilder`].
    pub fn new() -> Self {
        Self::default()
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// The most entries the cache holds, or with a [`weigher`](Self::weigher)
    /// the most total weight. Unset means unbounded.
    ///
    /// Each shard holds an equal share of it and evicts when its share is
    /// full, so eviction can start a little before the whole cache holds
    /// `max` (keys spread over the shards by hash; see
    /// [`shards`](Self::shards)); the cache never holds more.
    pub fn max_capacity(mut self, max: u64) -> Self {
        self.max_capacity = Some(max);
        self
    }

    /// Weighs entries, making `max_capacity` a bound on total weight rather
    /// than a number of entries.
    ///
    /// An entry's weight is taken when it is written and kept until it
    /// leaves: a weigher whose answer changes later (a value with interior
    /// mutability) does not change what the entry counts for. The weigher
    /// is called under the shard's lock, so it must not call the cache (a
    /// call that reaches that shard panics rather than wait for the lock
    /// its own thread holds; one that reaches another shard, or waits for
    /// a load, panics if its wait would close a cycle of waits with other
    /// threads (see [`Cache::compute`](crate::Cache::compute)), rather
    /// than deadlock; `sync` and `rewrite_log` return
    /// `PersistError::InCallback`); one that panics fails that write and
    /// leaves the cache as it was. A
    /// weight of 0 is allowed; such entries are only evicted when the
    /// policy reaches them, and they do not count toward the capacity, so
    /// a weigher that answers 0 for many entries leaves their number (and
    /// memory) unbounded.
    ///
    /// ```
    /// use shardcache::Cache;
    /// let cache = Cache::<String, String>::builder()
    ///     .max_capacity(1024) // bytes
    ///     .weigher(|k, v| (k.len() + v.len()) as u32)
    ///     .build()?;
    /// cache.insert("k".into(), "v".repeat(100));
    /// assert_eq!(cache.weighted_size(), 101);
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Weights::Custom(Arc::new(weigher));
        self
    }

    /// The number of shards: a power of two. By default, 32 per CPU (at most
    /// 1024), fewer when the capacity is small (each shard keeps at least
    /// ~2048 entries so that per-shard eviction stays close to global
    /// eviction). Many small shards keep two threads off each other's lock
    /// words: on the Zipf benchmark, 2 threads ran 1.8x one thread with 64
    /// shards and no faster than one with 8.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The eviction policy; see [`Policy`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Every entry expires this long after it was written (unless inserted
    /// with its own TTL).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Chooses each written entry's time to live from its key and value:
    /// `Some(ttl)`, or `None` for the cache's [`time_to_live`](Self::time_to_live)
    /// (or no expiry). It applies to every write that does not name its own
    /// TTL (`insert`, loaders, new entries of the entry API); `insert_with_ttl`
    /// and `set_ttl` still set theirs. Reads never change a deadline (see
    /// [`time_to_idle`](Self::time_to_idle)). The rule may run under the
    /// shard's lock (for a new entry of the entry API), so it must not call
    /// the cache: there, a call that reaches that shard panics rather than
    /// wait for the lock its own thread holds, and one whose wait for
    /// another shard or a load would close a cycle of waits with other
    /// threads panics rather than deadlock (`sync` and `rewrite_log`,
    /// called from the rule wherever it runs, return
    /// `PersistError::InCallback`).
    ///
    /// ```
    /// use shardcache::{Cache, MockClock};
    /// use std::time::Duration;
    /// let clock = MockClock::new();
    /// let cache = Cache::<String, String>::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(300))
    ///     .expire_after(|key, _value| key.starts_with("otp:").then(|| Duration::from_secs(30)))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// cache.insert("otp:42".into(), "123456".into());
    /// cache.insert("user:42".into(), "Ada".into());
    /// assert_eq!(cache.ttl("otp:42"), Some(Some(Duration::from_secs(30))));
    /// assert_eq!(cache.ttl("user:42"), Some(Some(Duration::from_secs(300))));
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn expire_after(
        mut self,
        ttl_of: impl Fn(&K, &V) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        self.expire_after = Some(Arc::new(ttl_of));
        self
    }

    /// Every entry expires after going this long without being read or written.
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Called with each removed entry and why it left, outside the shard's
    /// lock. See [`RemovalCause`].
    ///
    /// The listener runs on the thread whose call removed the entry, with
    /// no lock of the cache held, and may call any method of the same
    /// cache: reads, writes, loads, `compute`, `clear`, `retain`,
    /// iteration, statistics, and on a persistent cache `durably`, `sync`
    /// and `rewrite_log`. A write it makes may notify it again, on the same
    /// thread; bounding that is the listener's part.
    ///
    /// One case refuses some calls. Under `Fsync::Always`, a write whose
    /// log record could not be made durable is undone, and the undo
    /// notifies the listener (the refused value leaves, as
    /// [`RemovalCause::Replaced`] or [`RemovalCause::Removed`], and the
    /// restored one may evict others). The log is failed meanwhile: the
    /// listener's writes are refused as every write is
    /// ([`PersistError::Refused`](crate::persist::PersistError::Refused),
    /// reported through `durably` or `sync`), and `sync` and `rewrite_log`,
    /// which would wait for the undo that is running the listener, return
    /// [`PersistError::InCallback`](crate::persist::PersistError::InCallback)
    /// at once. A wait of the listener's (for a load, a shard, another
    /// log's repair) that would close a cycle of waits with other threads
    /// is refused as from a loader (see
    /// [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with)).
    ///
    /// ```
    /// use shardcache::{Cache, RemovalCause};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .max_capacity(10)
    ///     .eviction_listener(move |k, _v, cause| log.lock().unwrap().push((k, cause)))
    ///     .build()?;
    /// cache.insert(1, 1);
    /// cache.remove(&1);
    /// assert_eq!(*seen.lock().unwrap(), vec![(1, RemovalCause::Removed)]);
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The time source; use a [`MockClock`](crate::MockClock) in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The hasher for keys.
    pub fn hasher<S2>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            weigher: self.weigher,
            shards: self.shards,
            policy: self.policy,
            ttl: self.ttl,
            expire_after: self.expire_after,
            tti: self.tti,
            listener: self.listener,
            clock: self.clock,
            hasher,
            shared_capacity: self.shared_capacity,
            expired_first: self.expired_first,
            refresh: self.refresh,
            log_schema: self.log_schema,
            splicer: self.splicer,
            replay_folded: self.replay_folded,
            log_evictions: self.log_evictions,
            _types: PhantomData,
        }
    }

    /// Names the data a persistent cache's log holds (`"sessions/v1"`), so
    /// the log is identified by that name and not by the key and value
    /// types' names. A log's header carries a fingerprint of what it holds,
    /// and a log whose fingerprint is not the cache's is refused
    /// ([`PersistError::Fingerprint`](crate::persist::PersistError::Fingerprint)).
    /// Without a schema, that fingerprint comes from
    /// [`std::any::type_name`] of the key and value types: renaming or
    /// moving a type, or a compiler that prints type names differently,
    /// makes the log refuse to open. With one, it comes from `name` alone:
    /// the types may be renamed or moved freely. Change the name when the
    /// data's encoding changes (a field added, a type replaced), so that an
    /// old log is refused rather than misread.
    ///
    /// A log written before the schema was declared (its header carries the
    /// fingerprint of these same types) opens too, and its header is
    /// replaced by the schema's as it opens
    /// ([`RecoveryReport::migrated_from`](crate::persist::RecoveryReport::migrated_from)):
    /// the records are copied behind the new header into a new file, which
    /// is renamed over the log, so a crash leaves the old file or the new
    /// one, and loses no record. Declare the schema before renaming the
    /// types, not in the same release. Logs other than
    /// [`FileLog`](crate::persist::FileLog) must implement
    /// [`WriteAheadLog::replay_migrating`](crate::persist::WriteAheadLog::replay_migrating)
    /// for that migration; by default they refuse such a log.
    ///
    /// `build` fails on an empty name; caches without a log ignore it.
    ///
    /// ```
    /// use shardcache::persist::{FileLog, Fsync};
    /// use shardcache::Cache;
    ///
    /// mod v1 {
    ///     #[derive(Clone, serde::Serialize, serde::Deserialize)]
    ///     pub struct Profile { pub name: String }
    /// }
    /// mod v2 {
    ///     // The same data, renamed and moved.
    ///     #[derive(Clone, serde::Serialize, serde::Deserialize)]
    ///     pub struct Account { pub name: String }
    /// }
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("profiles.log");
    /// {
    ///     let (cache, _) = Cache::<u64, v1::Profile>::builder()
    ///         .log_schema("profiles/v1")
    ///         .build_persistent(FileLog::open(&path, Fsync::Always)?)?;
    ///     cache.insert(7, v1::Profile { name: "Ada".into() });
    /// }
    /// let (cache, _) = Cache::<u64, v2::Account>::builder()
    ///     .log_schema("profiles/v1")
    ///     .build_persistent(FileLog::open(&path, Fsync::Always)?)?;
    /// assert_eq!(cache.get(&7).map(|a| a.name), Some("Ada".to_string()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_schema(self, name: impl Into<String>) -> Self {
        self.log_schema_from(name.into(), Vec::new())
    }

    /// [`log_schema`](Self::log_schema), also opening (and migrating) logs
    /// whose header carries one of `previous` (the fingerprints type names
    /// printed by an earlier release gave).
    pub(crate) fn log_schema_from(mut self, name: String, previous: Vec<u64>) -> Self {
        self.log_schema = Some(LogSchema { name, previous });
        self
    }

    /// Lets the cache log partial writes of its values (see
    /// `compute::Splicer`): `splicer` applies them when the log is replayed.
    pub(crate) fn splicer(mut self, splicer: Arc<dyn Splicer<K, V>>) -> Self {
        self.splicer = Some(splicer);
        self
    }

    /// Makes `max_capacity` one budget for all shards together: a write
    /// that does not fit evicts from any shard, and an entry up to the whole
    /// capacity fits. Used by `KvStore` for Redis's `maxmemory`.
    pub(crate) fn shared_capacity(mut self) -> Self {
        self.shared_capacity = true;
        self
    }

    /// With [`shared_capacity`](Self::shared_capacity): no live entry is
    /// evicted for room while an entry past its deadline is held in any
    /// shard (one held by another writer at that moment aside), at the
    /// price of keeping every shard's deadlines in order (about 40 bytes
    /// and a tree update per entry with a deadline). Entries past an idle
    /// limit are still found by sampling. Used by the session store and the
    /// rate limiter, whose capacity counts only live sessions and keys.
    pub(crate) fn expired_first(mut self) -> Self {
        self.expired_first = true;
        self
    }

    /// Replays a persistent cache's log folded (see `cache/replay_fold.rs`):
    /// each key's records settle its final state before any key is loaded,
    /// and the keys still held at the log's end are then loaded in the
    /// order of their last write, so the replay evicts nothing in an order
    /// of its own while the log holds more entries than the capacity for a
    /// moment. For a cache whose log records every entry that leaves it
    /// (the session store logs the evictions and expiries the cache makes,
    /// each after the write that made it) and whose values take no partial
    /// writes. Used by the session store.
    pub(crate) fn replay_folded(mut self) -> Self {
        self.replay_folded = true;
        self
    }

    /// A persistent cache logs a removal for each entry a write evicts,
    /// before the write's own record: a crash between them leaves the
    /// evicted entries removed and the write not acknowledged, never the
    /// write durable with its victims still in the log. Used by the session
    /// store, whose log records every session that leaves.
    pub(crate) fn log_evictions(mut self) -> Self {
        self.log_evictions = true;
        self
    }

    /// Checks every setting; on success hands back the builder without its
    /// refresh settings, and the refresher they build (`None` without
    /// refresh). [`build`](Self::build) calls this.
    pub(crate) fn checked(mut self) -> Result<(Self, Option<Refresher<K, V>>), BuildError> {
        if self.max_capacity == Some(0) {
            return Err(BuildError::ZeroCapacity);
        }
        if let Some(n) = self.shards {
            if !n.is_power_of_two() || n > 1 << 16 {
                return Err(BuildError::InvalidShards(n));
            }
        }
        if self.log_schema.as_ref().is_some_and(|s| s.name.is_empty()) {
            return Err(BuildError::EmptyLogSchema);
        }
        check_duration("time_to_live", self.ttl)?;
        check_duration("time_to_idle", self.tti)?;
        let refresher = std::mem::take(&mut self.refresh)
            .build(self.ttl)
            .map_err(BuildError::InvalidRefresh)?;
        Ok((self, refresher))
    }

    /// The shard count to use: the user's, or the default rule.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(4, usize::from);
            let by_cpu = (cpus * 32).next_power_of_two().min(1024);
            let by_capacity = match self.max_capacity {
                Some(c) => (c / MIN_ENTRIES_PER_SHARD).max(1).next_power_of_two() as usize,
                None => by_cpu,
            };
            by_cpu.min(by_capacity).max(1)
        })
    }
}

fn check_duration(name: &'static str, d: Option<Duration>) -> Result<(), BuildError> {
    match d {
        Some(d) if d.is_zero() => Err(BuildError::ZeroDuration(name)),
        Some(d) if d > Duration::from_secs(MAX_TTL_DAYS * 86_400) => {
            Err(BuildError::DurationTooLong(name))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_fail_build() {
        let b = || CacheBuilder::<u32, u32>::new().max_capacity(10);
        assert_eq!(
            b().max_capacity(0).build().err(),
            Some(BuildError::ZeroCapacity)
        );
        assert_eq!(
            b().shards(3).build().err(),
            Some(BuildError::InvalidShards(3))
        );
        assert_eq!(
            b().shards(0).build().err(),
            Some(BuildError::InvalidShards(0))
        );
        assert_eq!(
            b().time_to_live(Duration::ZERO).build().err(),
            Some(BuildError::ZeroDuration("time_to_live"))
        );
        assert_eq!(
            b().time_to_idle(Duration::from_secs(u64::MAX))
                .build()
                .err(),
            Some(BuildError::DurationTooLong("time_to_idle"))
        );
        assert_eq!(
            b().log_schema("").build().err(),
            Some(BuildError::EmptyLogSchema)
        );
        assert!(b().shards(4).log_schema("a").build().is_ok());
    }

    #[test]
    fn default_shards_follow_capacity() {
        assert_eq!(
            CacheBuilder::<u32, u32>::new()
                .max_capacity(250)
                .shard_count(),
            1
        );
        assert!(
            CacheBuilder::<u32, u32>::new()
                .max_capacity(1 << 20)
                .shard_count()
                >= 4
        );
    }
}
