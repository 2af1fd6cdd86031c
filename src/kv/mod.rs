//! [`KvStore`]: Redis's string commands over a [`Cache`]`<String, Bytes>`.
//!
//! Every Redis command has a typed method (`get`, `set`, `incr_by`,
//! `expire`, `scan`...) and [`KvStore::execute`] parses Redis-style argument
//! lists into calls to those same methods, answering with a RESP-shaped
//! [`Reply`] whose errors carry Redis's exact wording. A real `redis-server`
//! is the reference: `tests/kv_vs_redis.rs` runs the same commands on both and
//! compares every reply.
//!
//! ```
//! use shardcache::kv::{KvStore, Reply};
//! let store = KvStore::new();
//! assert_eq!(store.execute(&["SET", "hits", "41"]), Reply::ok());
//! assert_eq!(store.execute(&["INCR", "hits"]), Reply::Integer(42));
//! assert_eq!(store.incr_by("hits", 1)?, 43);
//!
//! let perms = store.namespace("perm:");
//! perms.set_ex("user:1", "allow", 300)?;
//! assert_eq!(perms.keys("*"), vec!["user:1".to_string()]);
//! assert_eq!(store.get("perm:user:1").as_deref(), Some(&b"allow"[..]));
//! # Ok::<(), shardcache::kv::KvError>(())
//! ```
//!
//! The commands: `GET` `SET` `SETEX` `PSETEX` `SETNX` `GETSET` `GETDEL`
//! `GETEX` `MGET` `MSET` `MSETNX` `APPEND` `STRLEN` `GETRANGE` `SUBSTR`
//! `SETRANGE` `LCS` `SETBIT` `GETBIT` `BITCOUNT` `BITPOS` `INCR` `DECR`
//! `INCRBY` `DECRBY` `INCRBYFLOAT` `DEL` `UNLINK` `EXISTS` `TOUCH` `TYPE`
//! `EXPIRE` `PEXPIRE` `EXPIREAT` `PEXPIREAT` `TTL` `PTTL` `EXPIRETIME`
//! `PEXPIRETIME` `PERSIST` `RENAME` `RENAMENX` `COPY` `KEYS` `SCAN` `DBSIZE`
//! `FLUSHDB` `RANDOMKEY` `INFO`.
//!
//! ```
//! use shardcache::kv::{KvStore, Reply};
//! let store = KvStore::new();
//! assert_eq!(store.execute(&["SETRANGE", "k", "2", "llo"]), Reply::Integer(5));
//! assert_eq!(store.execute(&["GETRANGE", "k", "-3", "-1"]), Reply::Bulk("llo".into()));
//! assert_eq!(store.execute(&["EXPIRETIME", "k"]), Reply::Integer(-1));
//! ```
//!
//! `MSET`, `MSETNX`, `RENAME`, `RENAMENX`, `COPY` and a multi-key `DEL` are
//! each one atomic step across keys, and `MGET` and `EXISTS` read their keys
//! as one step, as in Redis.
//!
//! Differences from Redis, by design: keys are UTF-8 `String`s; a store has
//! one database (`COPY ... DB n` takes only 0);
//! expiries are kept to the millisecond, and one more than about 34 years
//! ahead ([`MAX_EXPIRE_MS`]) is refused with [`KvError::ExpireTooFar`]; memory
//! is accounted per entry (see [`ENTRY_OVERHEAD`]), and `max_memory` is one
//! budget for the whole store: a write that does not fit after evicting by
//! the policy is refused with Redis's OOM error and the old value is kept.
//! `INCRBYFLOAT` computes in x87 `long double` as Redis does on x86-64, so
//! its replies are the same bytes. `SCAN` cursors are this store's own (a
//! shard and a table position), with Redis's guarantee.

mod append;
mod bits;
mod command;
mod error;
mod expire;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod glob;
mod info;
mod keys;
mod lcs;
mod longdouble;
mod multi;
mod parse;
mod partial;
mod reply;
mod stats;
mod strings;
pub(crate) mod typed;

pub use bits::{BitRange, BitUnit};
pub use error::KvError;
pub use expire::{ExpireOptions, Expiry, MAX_EXPIRE_MS};
pub use glob::glob_match;
pub use keys::ScanOptions;
pub use lcs::{LcsMatch, LcsMatches};
pub use reply::Reply;
pub use stats::KvStats;
pub use strings::{GetExOption, SetCondition, SetOptions, SetOutcome};

use crate::persist::{
    schema_fingerprint, type_path_fingerprint, PersistError, RecoveryReport, WriteAheadLog,
};
use crate::stats::{Counter, StatsCounters};
use crate::{BuildError, Cache, Clock, Policy};
use bytes::Bytes;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes counted per entry on top of its key and value, in `used_memory`
/// and against `max_memory`: the entry's slot in its shard's slab (72:
/// the key's `String` header, the value's `Bytes` header, the policy node)
/// with the slab's growth slack (it doubles, so 1-2x), its table slot (4, at
/// a load of 5/8 to 7/8), its stored weight (4), and the allocator's rounding
/// and headers on the key and value allocations. Measured with a counting
/// allocator (`tests/kv_used_memory.rs`, glibc's malloc chunk sizes):
/// `used_memory` is within 0.82-1.03x of the heap the entries hold for
/// 23-byte entries, and within 1 % for 10 KB and 1 MB values. The spare
/// capacity `APPEND` keeps in a value's buffer is counted beside it. Not
/// counted: fixed per-shard structures (empty tables, policy sketches), the
/// log's buffers, and spare capacity in a `Bytes` the caller hands in.
pub const ENTRY_OVERHEAD: u32 = 164;

/// The longest key or string value a write takes, in bytes: 512 MiB, as
/// Redis's default `proto-max-bulk-len` (and its limit on `APPEND`). Longer
/// ones are refused with [`KvError::StringTooLong`]. It also keeps every
/// entry's accounted size (key, value and [`ENTRY_OVERHEAD`]) within the
/// `u32` the weights are kept in, so `max_memory` counts every byte.
pub const MAX_STRING_LEN: usize = 512 << 20;

// Every write a store takes fits a log record: a key and a value of
// MAX_STRING_LEN each, their encoding, and room for a namespace prefix.
const _: () = assert!(2 * MAX_STRING_LEN + (512 << 10) <= crate::persist::MAX_RECORD_LEN);

/// A Redis-semantics key-value store: `String` keys, [`Bytes`] values. Cheap to
/// clone (a handle); [`namespace`](Self::namespace) views share the same data.
#[derive(Clone)]
pub struct KvStore {
    cache: Cache<String, Bytes>,
    prefix: Arc<str>,
    shared: Arc<Shared>,
}

/// State shared by every namespace view of one store.
#[derive(Debug)]
struct Shared {
    /// keyspace_hits / keyspace_misses, striped so a GET writes no shared line.
    lookups: StatsCounters,
    max_memory: u64,
    /// The eviction policy's name, for `INFO`'s `maxmemory_policy`.
    policy: &'static str,
    /// Wall-clock Unix ms at creation, for `INFO`'s uptime.
    started_ms: u64,
    rng: AtomicU64,
}

impl fmt::Debug for KvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvStore")
            .field("prefix", &self.prefix)
            .field("max_memory", &self.shared.max_memory)
            .finish_non_exhaustive()
    }
}

impl Default for KvStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KvStore {
    /// An unbounded store (no `max_memory`), with the system clock.
    pub fn new() -> Self {
        // Without max_memory or shards the build cannot fail; the fallback is unreachable.
        Self::builder()
            .build()
            .unwrap_or_else(|_| Self::from_cache(Cache::new(u64::MAX), 0, ""))
    }

    /// A builder for `max_memory`, the eviction policy and the clock.
    pub fn builder() -> KvStoreBuilder {
        KvStoreBuilder::default()
    }

    fn from_cache(cache: Cache<String, Bytes>, max_memory: u64, policy: &'static str) -> Self {
        let seed = cache.wall_clock_ms() | 1;
        let shared = Shared {
            lookups: StatsCounters::new(),
            max_memory,
            policy,
            started_ms: cache.wall_clock_ms(),
            rng: AtomicU64::new(seed),
        };
        Self {
            cache,
            prefix: Arc::from(""),
            shared: Arc::new(shared),
        }
    }

    /// A view of this store whose keys are all prefixed with `prefix`
    /// (appended to this view's own prefix). `KEYS`, `SCAN`, `DBSIZE`,
    /// `FLUSHDB` and `RANDOMKEY` on the view see only its own keys, without
    /// the prefix.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// let sessions = store.namespace("sess:");
    /// sessions.set("abc", "data", Default::default())?;
    /// store.set("other", "x", Default::default())?;
    /// assert_eq!(sessions.dbsize(), 1);
    /// sessions.flushdb();
    /// assert_eq!(store.keys("*"), vec!["other".to_string()]);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn namespace(&self, prefix: &str) -> Self {
        let full = format!("{}{prefix}", self.prefix);
        Self {
            cache: self.cache.clone(),
            prefix: Arc::from(full),
            shared: self.shared.clone(),
        }
    }

    /// Refuses a write of `key` with a value of `value_len` bytes if either
    /// is over [`MAX_STRING_LEN`], the key as stored: with this view's
    /// prefix.
    fn check_len(&self, key: &str, value_len: usize) -> Result<(), KvError> {
        if self.prefix.len().saturating_add(key.len()) > MAX_STRING_LEN
            || value_len > MAX_STRING_LEN
        {
            return Err(KvError::StringTooLong);
        }
        Ok(())
    }

    /// This view's key prefix ("" for the root store).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Compacts the append-only log (see
    /// [`Cache::rewrite_log`](crate::Cache::rewrite_log)); the whole store,
    /// whichever namespace view it is called on.
    ///
    /// # Errors
    ///
    /// As [`Cache::rewrite_log`](crate::Cache::rewrite_log).
    pub fn rewrite_log(&self) -> Result<(), PersistError> {
        self.cache.rewrite_log()
    }

    /// Makes every logged write durable and reports the first log failure
    /// since the last call (see [`Cache::sync`](crate::Cache::sync)).
    ///
    /// # Errors
    ///
    /// As [`Cache::sync`](crate::Cache::sync).
    pub fn sync(&self) -> Result<(), PersistError> {
        self.cache.sync()
    }

    /// Runs `writes` (calls of this store's typed methods) and reports the
    /// first of them that the log could not keep; such a write is not
    /// applied, or is undone, except the one a buffering log's failure met
    /// (see [`Cache::durably`](crate::Cache::durably)). Without a log,
    /// always `Ok`.
    ///
    /// # Errors
    ///
    /// As [`Cache::durably`](crate::Cache::durably).
    #[must_use = "an Err means a write was not kept"]
    pub fn durably<R>(&self, writes: impl FnOnce() -> R) -> Result<R, PersistError> {
        self.cache.durably(writes)
    }

    /// The stored key for a key of this view.
    fn full_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    /// The clock: the cache's milliseconds and the store's wall clock in
    /// Unix milliseconds (Redis's `mstime()`) at the same instant.
    fn now(&self) -> crate::wallclock::Now {
        self.cache.clock_reading()
    }

    fn count_lookup(&self, hit: bool) {
        self.shared
            .lookups
            .bump(if hit { Counter::Hit } else { Counter::Miss });
    }

    /// Calls `f` with the stored key for `key`: the key itself in the root
    /// store; in a namespace, the prefixed key built in a per-thread buffer,
    /// so lookups do not allocate.
    fn with_full_key<R>(&self, key: &str, f: impl FnOnce(&str) -> R) -> R {
        if self.prefix.is_empty() {
            return f(key);
        }
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with(|buf| match buf.try_borrow_mut() {
            Ok(mut b) => {
                b.clear();
                b.push_str(&self.prefix);
                b.push_str(key);
                f(&b)
            }
            // Re-entered from inside `f` (not done today): fall back to a fresh String.
            Err(_) => f(&self.full_key(key)),
        })
    }

    /// A pseudo-random number (xorshift), for `RANDOMKEY`.
    fn random(&self) -> u64 {
        let mut x = self.shared.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.shared.rng.store(x, Ordering::Relaxed);
        x
    }
}

/// Configures a [`KvStore`]: memory limit, eviction policy, clock.
///
/// ```
/// use shardcache::{kv::KvStore, Policy};
/// let store = KvStore::builder()
///     .max_memory(64 << 20)
///     .policy("allkeys-lru".parse::<Policy>()?)
///     .build()?;
/// assert_eq!(store.stats().maxmemory, 64 << 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
#[derive(Default)]
pub struct KvStoreBuilder {
    max_memory: Option<u64>,
    policy: Option<Policy>,
    clock: Option<Arc<dyn Clock>>,
    shards: Option<usize>,
}

impl fmt::Debug for KvStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvStoreBuilder")
            .field("max_memory", &self.max_memory)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A clock shared with the caller, usable where a `Clock` is taken by value.
struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    fn monotonic(&self) -> Duration {
        self.0.monotonic()
    }
    fn wall(&self) -> Duration {
        self.0.wall()
    }
}

impl KvStoreBuilder {
    /// Redis's `maxmemory`: the most bytes the entries may use, counted as key
    /// length + value length + [`ENTRY_OVERHEAD`] per entry, plus the spare
    /// capacity of values grown by [`append`](KvStore::append). Unset:
    /// unbounded.
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Redis's `maxmemory-policy`, e.g. `Policy::redis(RedisPolicy::AllKeysLru)`
    /// or `"volatile-ttl".parse()?`. Defaults to the cache's default policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The time source (a [`MockClock`](crate::MockClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The number of shards (a power of two); see [`CacheBuilder::shards`](crate::CacheBuilder::shards).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// [`BuildError`] for a zero `max_memory` or a bad shard count.
    pub fn build(self) -> Result<KvStore, BuildError> {
        let max_memory = self.max_memory.unwrap_or(0);
        let policy = self.policy_name();
        Ok(KvStore::from_cache(
            self.cache_builder().build()?,
            max_memory,
            policy,
        ))
    }

    /// Builds the store on an append-only log, like Redis with
    /// `appendonly yes`: the log is replayed first (keys whose expiry passed
    /// while the process was down are not loaded), then every write is
    /// logged. See [`persist`](crate::persist) for what is logged and how
    /// the log is compacted. `APPEND`, `SETRANGE` and `SETBIT` log the bytes
    /// they write, not the whole value, so a long value written a little at
    /// a time grows the log by what is written, as Redis's AOF does;
    /// [`RecoveryReport::orphan_splices`] counts keys whose partial writes
    /// found no value to apply to (see `docs/persistence.md`).
    ///
    /// ```
    /// use shardcache::kv::KvStore;
    /// use shardcache::persist::{FileLog, Fsync};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("kv.aof");
    /// {
    ///     let (store, _) = KvStore::builder().build_persistent(FileLog::open(&path, Fsync::Always)?)?;
    ///     store.execute(&["SET", "session:42", "ada", "EX", "3600"]);
    /// }
    /// let (store, report) = KvStore::builder().build_persistent(FileLog::open(&path, Fsync::Always)?)?;
    /// assert_eq!(store.get("session:42").as_deref(), Some(&b"ada"[..]));
    /// assert!(store.ttl("session:42") > 3590);
    /// assert_eq!(report.records, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), or a log that cannot be loaded (see
    /// [`CacheBuilder::build_persistent`](crate::CacheBuilder::build_persistent)).
    pub fn build_persistent<L: WriteAheadLog>(
        self,
        log: L,
    ) -> Result<(KvStore, RecoveryReport), PersistError> {
        let max_memory = self.max_memory.unwrap_or(0);
        let policy = self.policy_name();
        let (cache, report) = self.cache_builder().build_persistent(log)?;
        Ok((KvStore::from_cache(cache, max_memory, policy), report))
    }

    fn policy_name(&self) -> &'static str {
        self.policy
            .as_ref()
            .map_or(Policy::default().name(), Policy::name)
    }

    fn cache_builder(self) -> crate::CacheBuilder<String, Bytes> {
        // Logs written before the store declared its schema carry the
        // type-path fingerprint, as release 0.1 printed the types.
        let before = type_path_fingerprint("alloc::string::String", "bytes::bytes::Bytes");
        let v1 = schema_fingerprint(LOG_SCHEMA_V1);
        let mut b = Cache::<String, Bytes>::builder()
            .log_schema_from(LOG_SCHEMA.to_owned(), vec![before, v1])
            .weigher(|k: &String, v: &Bytes| weigh(k.len(), v.len()))
            .policy(self.policy.unwrap_or_default());
        b = b.splicer(crate::sync::Arc::new(append::BytesSplicer {
            max_memory: self.max_memory.unwrap_or(0),
        }));
        if let Some(max) = self.max_memory {
            b = b.max_capacity(max).shared_capacity();
        }
        if let Some(clock) = self.clock {
            b = b.clock(SharedClock(clock));
        }
        if let Some(n) = self.shards {
            b = b.shards(n);
        }
        b
    }
}

/// The schema a store's log declares (see
/// [`CacheBuilder::log_schema`](crate::CacheBuilder::log_schema)): its
/// records are string keys and byte values, so it does not depend on how
/// Rust names their types.
///
/// `v2` logs may hold partial writes (splice records, see
/// [`append::BytesSplicer`]) that a build knowing only `v1` cannot replay: a
/// `v1` log (or one of release 0.1, named by its types) opens and is
/// given the `v2` header, and an older build refuses a `v2` log as
/// another schema's rather than misreading it.
pub(crate) const LOG_SCHEMA: &str = "shardcache/kv/v2";

/// The schema of the logs of the builds before partial writes were logged.
const LOG_SCHEMA_V1: &str = "shardcache/kv/v1";

/// An entry's accounted size: key + value + [`ENTRY_OVERHEAD`], saturating.
fn weigh(key: usize, value: usize) -> u32 {
    u32::try_from(key.saturating_add(value))
        .unwrap_or(u32::MAX)
        .saturating_add(ENTRY_OVERHEAD)
}
