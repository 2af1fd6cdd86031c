//! # shardcache
//!
//! An embeddable, in-process cache with Redis's semantics: bounded, with
//! TTLs and eviction policies, at in-process speed.
//!
//! ## A tour
//!
//! ```
//! use shardcache::{Cache, Policy};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! // Built once, validated once: a bad setting is an error here, never a panic later.
//! let cache: Cache<String, Arc<str>> = Cache::builder()
//!     .max_capacity(100_000)                   // entries (or total weight, with .weigher)
//!     .policy(Policy::tiny_lfu())              // the default
//!     .time_to_live(Duration::from_secs(300))  // every entry, unless inserted with its own TTL
//!     .build()?;
//!
//! cache.insert("session:abc".into(), Arc::from("user-1"));
//! assert_eq!(cache.get("session:abc").as_deref(), Some("user-1"));
//!
//! // A miss that many requests hit at once runs one loader.
//! let name = cache.get_or_insert_with("user:7".into(), || Arc::from("Ada"));
//! assert_eq!(&*name, "Ada");
//!
//! // Drop every entry of one user in one call.
//! cache.invalidate_if(|k, _| k.starts_with("session:"));
//! assert!(!cache.contains_key("session:abc"));
//! # Ok::<(), shardcache::BuildError>(())
//! ```
//!
//! ## The eviction policy
//!
//! [`Policy::tiny_lfu`] (the default) is W-TinyLFU as in Caffeine: a small
//! recency window in front of a main area guarded by a frequency sketch, so a
//! scan or a burst of one-off keys cannot flush the entries that are used
//! again and again, and a hill climber that tunes the window on the observed
//! hit ratio. With 16 shards or more the climber lets two groups of shards
//! duel, one with a larger window and one with a smaller, and moves the
//! others' window toward the group that hits more, so a change in the
//! workload cannot pass for the effect of its last step. Unlike Caffeine,
//! its lists are CLOCK-ordered: a hit only bumps a counter in the entry, and
//! the policy reads it when it next looks.
//! [`Policy::lru`] is CLOCK, the classic LRU approximation.
//!
//! ## Concurrency
//!
//! The cache is split into shards (a power of two; by default 32 per CPU,
//! fewer for small caches), each a `parking_lot::RwLock` around a table of
//! `u32` tokens (tagged with hash bits) into a slab of entries. A key is
//! hashed once; the shard comes from the hash's middle bits. A hit takes the
//! shard's read lock, checks the entry's deadline, does at most one
//! compare-and-swap on the entry's own meta word (none once its hit counter has
//! saturated) and clones the value: no allocation, no shared counter (the
//! statistics are striped per thread). Writes take the shard's write lock; the
//! eviction they trigger does bounded work, and evicted values are dropped and
//! handed to the listener after the lock is released.
//!
//! ## Memory
//!
//! Per entry: `size_of::<K>() + size_of::<V>() + 16` bytes in the slab,
//! rounded up to a multiple of 32 (so that an entry of up to 32 bytes sits in
//! one cache line), 4 bytes per slot of the token table (1.14 to 2.3 slots per
//! entry, as the table grows by doubling), and 4 bytes of frequency sketch per
//! entry of capacity, at least 32 KiB per shard. For `u64 → u64` at one
//! million entries that is about 46 bytes per entry; values on the heap
//! (`String`, `Arc<T>`) add their own allocation.
//!
//! ## Expiry
//!
//! Per-cache time-to-live and time-to-idle, per-entry TTL
//! ([`Cache::insert_with_ttl`], [`Cache::set_ttl`]). Deadlines are monotonic
//! milliseconds; an expired entry is a miss at once, and its memory is
//! reclaimed by sampling, Redis-style, as writes come (or by
//! [`Cache::purge_expired`]). Tests drive time with [`MockClock`].
//!
//! ## Beyond the cache
//!
//! * [`kv::KvStore`]: Redis's string commands, TTLs, `KEYS`/`SCAN`,
//!   namespaces, `maxmemory` with Redis's policy names, and `execute(&[..])`
//!   returning RESP-shaped replies with Redis's error texts.
//! * [`persist`]: an append-only log ([`persist::FileLog`]) so a cache
//!   survives restarts, via [`CacheBuilder::build_persistent`].
//! * [`adapters`]: the jobs services bring. [`PermissionCache`] (one load
//!   per cold key, revocation per subject or resource without a scan),
//!   [`SessionStore`] (random ids, absolute and idle timeouts, survives
//!   restarts) and [`RateLimiter`] (token bucket or exact sliding window,
//!   exact under concurrency).
//! * `tier::TieredCache` (feature `redis`): a local tier in front of a
//!   shared Redis, kept coherent by pub/sub, serving locally while Redis is down.
//!
//! ## Features and MSRV
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `redis` | `tier::TieredCache`: shardcache as a near cache in front of Redis, with pub/sub invalidation and a degraded mode (needs Tokio) |
//!
//! The minimum supported Rust version is 1.89 (for `File::try_lock`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod adapters;
mod builder;
mod cache;
mod clock;
mod compute;
mod error;
mod expiry;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
pub mod kv;
mod listener;
mod loader;
pub mod persist;
mod policy;
mod prefetch;
mod shard;
mod slab;
mod stats;
mod sync;
mod table;
#[cfg(feature = "redis")]
pub mod tier;
mod weigher;

pub use adapters::{PermissionCache, PermissionKey, RateLimiter, SessionStore};
pub use builder::{CacheBuilder, MAX_TTL_DAYS};
pub use cache::{Cache, Iter};
pub use clock::{Clock, MockClock, SystemClock};
pub use compute::{Current, Decision, Ttl};
pub use error::{BuildError, CapacityError, Error, Result};
pub use hash::DefaultHashBuilder;
pub use listener::{Listener, RemovalCause};
pub use policy::{Policy, RedisPolicy, UnknownPolicy, DEFAULT_SAMPLES};
pub use stats::CacheStats;
pub use weigher::Weigher;

#[cfg(feature = "redis")]
pub use tier::{Health, TierError, TieredCache};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
