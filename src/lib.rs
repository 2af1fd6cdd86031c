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
//! // Drop every session in one call.
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
//! again and again. The window's size, from nothing to the whole cache, is
//! tuned on every miss as ARC tunes its split: each shard remembers the
//! hashes of keys it recently evicted and from which segment, and a miss on
//! one of them moves the window toward the segment that would have hit
//! (one share for the whole cache, which every shard's misses steer). The
//! same memory judges admission: while the keys main let go come back more
//! often than the ones it turned away, a candidate needs a clearer lead in
//! the sketch, which keeps a loop longer than the cache from swapping out
//! the part it holds; and a key it turned away that is asked for again
//! before a cache's worth of others went by is let in at its next turn, as
//! 2Q lets in a key found in its ghost queue, so a new working set need not
//! wait for its counts to catch up with the old one's. Unlike Caffeine,
//! its lists are ordered lazily: a hit only writes a count (and, in the
//! window, a coarse time) into the entry, and the policy reads them when it
//! next looks.
//! [`Policy::lru`] is LRU to within a sixteenth of the cache; [`Policy::redis`]
//! gives Redis's `maxmemory-policy` strategies by their names.
//!
//! A policy of your own implements [`EvictionPolicy`] (its documentation is
//! the full contract) and is chosen with [`Policy::custom`]; with the
//! `conformance` feature, `shardcache::conformance::check` runs the suite
//! every built-in passes against it. The built-ins are dispatched statically;
//! a custom policy costs one virtual call per hook, on writes only.
//!
//! ## Concurrency
//!
//! The cache is split into shards (a power of two; by default 32 per CPU,
//! fewer for small caches), each behind a reader-writer lock around a table
//! of `u32` tokens (tagged with hash bits) into a slab of entries. A key is
//! hashed once; the shard comes from the hash's middle bits. A hit takes the
//! shard's read lock (a store to a counter on a cache line of the calling
//! thread's own and a fence, so readers of one shard do not contend), checks the
//! entry's deadline, does one relaxed store to
//! the entry's own meta word (none once its hit counter has saturated) and
//! clones the value: no allocation, no shared counter (the
//! statistics are striped per thread). Writes take the shard's write lock; the
//! eviction they trigger does bounded work, and evicted values are dropped and
//! handed to the listener after the lock is released.
//!
//! ## Memory
//!
//! Per entry: `size_of::<K>() + size_of::<V>() + 16` bytes in the slab,
//! rounded up to a multiple of 32 (so that an entry of up to 32 bytes sits in
//! one cache line), 4 bytes per slot of the token table (1.14 to 2.3 slots per
//! entry, as the table grows by doubling), and, under the default policy, 8
//! bytes of frequency sketch per entry of capacity (rounded up to a power of
//! two, at least 16 KiB per shard; it grows to that size as the cache fills)
//! and 2 of ghost table. For `u64 → u64` that
//! is about 51 bytes per entry at one million entries and 57 at 100,000
//! (`cachebench memory`); values on the heap (`String`, `Arc<T>`) add their
//! own allocation.
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
//! * [`adapters`]: the jobs services bring. [`PermissionCache`](adapters::PermissionCache) (one load
//!   per cold key, revocation per subject or resource without a scan),
//!   [`SessionStore`](adapters::SessionStore) (random ids, absolute and idle timeouts, survives
//!   restarts) and [`RateLimiter`](adapters::RateLimiter) (token bucket or exact sliding window,
//!   exact under concurrency).
//! * `tier::TieredCache` (feature `redis`): a local tier in front of a
//!   shared Redis, kept coherent by pub/sub, serving locally while Redis is down.
//!
//! ## Features and MSRV
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `redis` | `tier::TieredCache`: shardcache as a near cache in front of Redis, with pub/sub invalidation and a degraded mode (needs Tokio) |
//! | `conformance` | `conformance`: the suite every eviction policy passes, to run against your own [`EvictionPolicy`] |
//!
//! The minimum supported Rust version is 1.89 (for `File::try_lock`).
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod adapters;
mod barrier;
mod builder;
mod cache;
mod callback;
mod clock;
mod compute;
#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
pub mod entry;
mod error;
mod expire_after;
mod flight;
mod flight_waits;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod journaling;
pub mod kv;
mod listener;
mod lock_waits;
pub mod persist;
mod persistent;
mod policy;
mod prefetch;
mod refresh;
mod shard;
mod shard_lock;
mod stats;
mod sync;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod tier;
mod waits;
mod wallclock;
mod weigher;

pub use builder::{BuildError, CacheBuilder, MAX_TTL_DAYS};
pub use cache::{Cache, Iter};
pub use clock::{Clock, MockClock, SystemClock};
pub use compute::{Current, Decision, Ttl};
pub use error::{CapacityError, Error, Result, WriteError};
pub use hash::DefaultHashBuilder;
pub use listener::{Listener, RemovalCause};
pub use persistent::PersistentCache;
pub use policy::{Entries, EvictionPolicy, Policy, RedisPolicy, UnknownPolicy, DEFAULT_SAMPLES};
pub use refresh::{BoxError, BoxFuture, Freshness, RefreshStats};
pub use stats::CacheStats;

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
