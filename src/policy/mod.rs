//! Eviction strategies, chosen by value.
//!
//! [`Policy`] is what users pick; inside, a private enum holds each strategy's
//! state and the shard calls its hooks, one `match` per hook. Policies see
//! tokens and hashes, never keys or values, so their code is compiled once
//! whatever the cache's types.
//!
//! The hook contract, which every strategy keeps:
//!
//! * `on_insert` links a new token; `on_remove` unlinks one that is leaving.
//! * `victim` names the next entry to evict (still linked; the shard removes it
//!   through `on_remove`) or `None` when nothing may be evicted.
//! * Hits never call the policy: readers bump the hit counter in the node's
//!   meta word, and the policy reads and clears it when it next looks.

mod clock;
mod sampled;
pub(crate) mod sketch;
mod tinylfu;

use crate::slab::Nodes;
use std::fmt;
use std::str::FromStr;

pub use sampled::RedisPolicy;
pub(crate) use tinylfu::{HillClimber, Share, DUEL_MIN_SHARDS, DUEL_OFFSET};

/// Redis's default `maxmemory-samples`.
pub const DEFAULT_SAMPLES: u8 = 5;

/// An eviction strategy for a [`Cache`](crate::Cache).
///
/// ```
/// use shardcache::{Cache, Policy};
/// let cache: Cache<u64, u64> = Cache::builder()
///     .max_capacity(1_000)
///     .policy(Policy::lru())
///     .build()?;
/// # Ok::<(), shardcache::BuildError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Policy {
    kind: PolicyKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum PolicyKind {
    #[default]
    TinyLfu,
    Lru,
    Redis {
        policy: RedisPolicy,
        samples: u8,
    },
}

impl Policy {
    /// The default: adaptive W-TinyLFU over CLOCK-ordered segments.
    ///
    /// New entries enter a small recency window; when it overflows, its oldest
    /// entry competes for a place in the main area against main's coldest entry,
    /// and wins only if a frequency sketch says it has been asked for more often.
    /// That keeps one-off scans from flushing the cache. The window's size is
    /// tuned by hill climbing on the observed hit ratio, as Caffeine does, so
    /// recency-heavy workloads get a large window and frequency-heavy ones a
    /// small one. With 16 shards or more, a quarter of them run a slightly
    /// larger window and a quarter a smaller one, and the others' window
    /// moves toward the group that hits more. Hits only bump an atomic
    /// counter in the entry.
    pub fn tiny_lfu() -> Self {
        Self {
            kind: PolicyKind::TinyLfu,
        }
    }

    /// Least recently used, approximated by CLOCK (second chance): a hit sets a
    /// reference count, and eviction passes over referenced entries once,
    /// clearing them, before evicting an unreferenced one.
    pub fn lru() -> Self {
        Self {
            kind: PolicyKind::Lru,
        }
    }

    /// One of Redis's `maxmemory-policy` strategies, by sampling
    /// [`DEFAULT_SAMPLES`] entries per eviction as Redis does.
    ///
    /// ```
    /// use shardcache::{Cache, Policy, RedisPolicy};
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .max_capacity(100)
    ///     .policy(Policy::redis(RedisPolicy::AllKeysLfu))
    ///     .build()?;
    /// assert_eq!(Policy::redis(RedisPolicy::VolatileTtl).name(), "volatile-ttl");
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn redis(policy: RedisPolicy) -> Self {
        Self {
            kind: PolicyKind::Redis {
                policy,
                samples: DEFAULT_SAMPLES,
            },
        }
    }

    /// `allkeys-lru`; see [`Policy::redis`].
    pub fn redis_allkeys_lru() -> Self {
        Self::redis(RedisPolicy::AllKeysLru)
    }

    /// `noeviction`: writes that do not fit fail; see [`Policy::redis`].
    pub fn redis_noeviction() -> Self {
        Self::redis(RedisPolicy::NoEviction)
    }

    /// Redis's `maxmemory-samples` (at least 1): how many entries a sampled
    /// policy looks at per eviction. No effect on other policies.
    pub fn samples(self, samples: u8) -> Self {
        match self.kind {
            PolicyKind::Redis { policy, .. } => Self {
                kind: PolicyKind::Redis {
                    policy,
                    samples: samples.max(1),
                },
            },
            _ => self,
        }
    }

    /// The policy's name, as [`FromStr`] accepts it.
    pub fn name(&self) -> &'static str {
        match self.kind {
            PolicyKind::TinyLfu => "tinylfu",
            PolicyKind::Lru => "lru",
            PolicyKind::Redis { policy, .. } => policy.name(),
        }
    }

    /// Whether the policy may evict (false only for `noeviction`).
    pub(crate) fn can_evict(&self) -> bool {
        !matches!(
            self.kind,
            PolicyKind::Redis {
                policy: RedisPolicy::NoEviction,
                ..
            }
        )
    }

    /// Whether the cache's window should be tuned by the hill climber.
    pub(crate) fn is_adaptive(&self) -> bool {
        self.kind == PolicyKind::TinyLfu
    }

    pub(crate) fn state(&self, capacity: usize) -> PolicyState {
        match self.kind {
            PolicyKind::TinyLfu => PolicyState::TinyLfu(tinylfu::TinyLfu::new(capacity)),
            PolicyKind::Lru => PolicyState::Clock(clock::Clock::new()),
            PolicyKind::Redis { policy, samples } => {
                PolicyState::Sampled(sampled::Sampled::new(policy, usize::from(samples)))
            }
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name [`Policy::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown eviction policy {0:?} (expected one of: tinylfu, lru, allkeys-lru, volatile-lru, allkeys-lfu, \
     volatile-lfu, volatile-ttl, allkeys-random, volatile-random, noeviction)"
)]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;

    /// Parses a policy name, case-insensitively.
    ///
    /// ```
    /// use shardcache::Policy;
    /// assert_eq!("LRU".parse::<Policy>(), Ok(Policy::lru()));
    /// assert_eq!("allkeys-lru".parse::<Policy>(), Ok(Policy::redis_allkeys_lru()));
    /// assert!("mru".parse::<Policy>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tinylfu" | "w-tinylfu" | "default" => Ok(Self::tiny_lfu()),
            "lru" => Ok(Self::lru()),
            name => RedisPolicy::from_name(name)
                .map(Self::redis)
                .ok_or_else(|| UnknownPolicy(s.to_owned())),
        }
    }
}

/// A strategy's state inside one shard.
///
/// Held inline, not boxed: a cache has one policy, so the size of the
/// largest variant costs nothing, and every write reads the policy's lists,
/// which would otherwise sit behind one more pointer and cache line.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum PolicyState {
    TinyLfu(tinylfu::TinyLfu),
    Clock(clock::Clock),
    Sampled(sampled::Sampled),
}

impl PolicyState {
    pub(crate) fn on_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32, hash: u64) {
        match self {
            Self::TinyLfu(p) => p.on_insert(nodes, idx, hash),
            Self::Clock(p) => p.on_insert(nodes, idx),
            Self::Sampled(p) => p.on_insert(nodes, idx),
        }
    }

    /// Ends an insert: counts the new entry's first access if the policy
    /// deferred it (after the insert's evictions, for cache locality).
    pub(crate) fn count_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N) {
        if let Self::TinyLfu(p) = self {
            p.count_insert(nodes);
        }
    }

    pub(crate) fn on_remove<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        match self {
            Self::TinyLfu(p) => p.on_remove(nodes, idx),
            Self::Clock(p) => p.on_remove(nodes, idx),
            Self::Sampled(p) => p.on_remove(nodes, idx),
        }
    }

    /// Work to do after an insert that needed no eviction.
    pub(crate) fn maintain<N: Nodes + ?Sized>(&mut self, nodes: &mut N, window: Share) {
        match self {
            Self::TinyLfu(p) => p.maintain(nodes, window),
            Self::Clock(_) | Self::Sampled(_) => {}
        }
    }

    pub(crate) fn victim<N: Nodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        window: Share,
    ) -> Option<u32> {
        match self {
            Self::TinyLfu(p) => p.victim(nodes, window),
            Self::Clock(p) => p.victim(nodes),
            Self::Sampled(p) => p.victim(nodes),
        }
    }

    /// Starts loading what an insert of the key hashed `hash` will read.
    #[inline]
    pub(crate) fn prefetch_key(&self, hash: u64) {
        if let Self::TinyLfu(p) = self {
            p.prefetch_key(hash);
        }
    }

    /// Starts loading what the next eviction will look at first; returns
    /// the hashes of the entries it will likely remove, if the policy knows.
    #[inline]
    pub(crate) fn prefetch_next<N: Nodes + ?Sized>(&self, nodes: &N) -> [Option<u64>; 2] {
        match self {
            Self::TinyLfu(p) => p.prefetch_next(nodes),
            Self::Clock(_) | Self::Sampled(_) => [None, None],
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Self::TinyLfu(p) => p.clear(),
            Self::Clock(p) => p.clear(),
            Self::Sampled(p) => p.clear(),
        }
    }

    /// Checks the policy's lists against the node count (tests only).
    #[cfg(test)]
    pub(crate) fn linked(&self) -> usize {
        match self {
            Self::TinyLfu(p) => p.linked(),
            Self::Clock(p) => p.linked(),
            Self::Sampled(p) => p.linked(),
        }
    }
}
