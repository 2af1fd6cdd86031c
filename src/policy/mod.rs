//! Eviction strategies, chosen by value.
//!
//! [`Policy`] is what users pick: a built-in by name, or their own
//! [`EvictionPolicy`] with [`Policy::custom`]. Inside, a private enum holds
//! each shard's policy state and the shard calls its hooks, one `match` per
//! hook: the built-ins statically, a user's policy through a box. Policies
//! see tokens and hashes, never keys or values, so their code is compiled
//! once whatever the cache's types.
//!
//! The hook contract every strategy keeps is written on [`EvictionPolicy`]
//! (`custom.rs`); `builtin.rs` implements it for the built-ins. Hits never
//! call the policy: readers bump the hit counter in the node's meta word
//! (`node.rs`), and the policy reads and clears it when it next looks.
//!
//! Owns the strategies, their tuning (`climber.rs`), the frequency sketch,
//! and the per-entry node and list links the shard embeds in each entry.
//! Calls only `sync`, `prefetch` and the striped counters' duel roles
//! (`stats`); nothing here names the shard or the cache.

mod builtin;
mod clock;
mod custom;
mod ghost;
pub(crate) mod node;
mod recency;
mod sampled;
mod saved;
pub(crate) mod sketch;
mod tinylfu;

use node::Nodes;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

#[cfg(test)]
pub(crate) use builtin::{built_in_states, built_ins_that_evict_any};
pub use custom::{Entries, EvictionPolicy};
pub(crate) use ghost::CommonShare;
pub use sampled::RedisPolicy;
pub(crate) use saved::Saved;

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

#[derive(Clone, Debug, PartialEq, Eq, Default)]
enum PolicyKind {
    #[default]
    TinyLfu,
    Lru,
    Redis {
        policy: RedisPolicy,
        samples: u8,
    },
    Custom(Custom),
}

/// Builds one shard's state of a user's policy, for a shard of about the
/// given number of entries.
type MakePolicy = dyn Fn(usize) -> Box<dyn EvictionPolicy> + Send + Sync;

/// A user's policy: its name and how to build it per shard.
#[derive(Clone)]
struct Custom {
    name: &'static str,
    make: Arc<MakePolicy>,
}

impl PartialEq for Custom {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.make, &other.make)
    }
}

impl Eq for Custom {}

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custom").field("name", &self.name).finish()
    }
}

impl Policy {
    /// The default: adaptive W-TinyLFU over lazily ordered segments.
    ///
    /// New entries enter a small recency window; when it overflows, its oldest
    /// entry competes for a place in the main area against main's coldest entry,
    /// and wins only if a frequency sketch says it has been asked for more often.
    /// That keeps one-off scans from flushing the cache. The window's size,
    /// from nothing to the whole cache, is tuned on every miss, as ARC
    /// tunes its split: each shard remembers the hashes of keys it
    /// recently evicted and from where; a miss on a key that left the window
    /// grows the window, one that left the main area shrinks it (one share
    /// for the whole cache, steered by every shard's misses). So
    /// recency-heavy workloads get a large window (up to LRU's behaviour) and
    /// frequency-heavy ones a small one. The same memory says whether the keys
    /// main let go come back more often than the candidates it turned away;
    /// while they do, a candidate must lead by two counts, not one, so a loop
    /// longer than the cache keeps the part it holds. Hits only write the
    /// entry's own meta word (a hit count and, in the window, a coarse time
    /// of the hit, which keeps the window in LRU order to within a sixteenth
    /// of its length).
    pub fn tiny_lfu() -> Self {
        Self {
            kind: PolicyKind::TinyLfu,
        }
    }

    /// Least recently used, to within a sixteenth of the cache: a hit writes
    /// a count and a coarse time (a period of 1/16 of the cache's inserts)
    /// into the entry, and eviction puts a hit entry back among the entries
    /// that came in when it was last hit, evicting the first whose last use
    /// is older than every other entry's. Below 32 entries per shard it is
    /// CLOCK (a hit entry goes back to the head once). On the suite's
    /// workloads it is within 0.05 points of an exact LRU list.
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

    /// A policy of your own: `make` builds one [`EvictionPolicy`] per
    /// shard, given the shard's capacity in entries (or weight). `name` is
    /// what [`name`](Self::name) returns.
    ///
    /// ```
    /// use shardcache::{Cache, Entries, EvictionPolicy, Policy};
    /// use std::collections::VecDeque;
    ///
    /// /// First in, first out.
    /// #[derive(Default)]
    /// struct Fifo(VecDeque<u32>);
    ///
    /// impl EvictionPolicy for Fifo {
    ///     fn on_insert(&mut self, _: &mut Entries<'_>, token: u32, _hash: u64) {
    ///         self.0.push_back(token);
    ///     }
    ///     fn on_remove(&mut self, _: &mut Entries<'_>, token: u32) {
    ///         self.0.retain(|&t| t != token); // O(n): fine for a doc example
    ///     }
    ///     fn victim(&mut self, _: &mut Entries<'_>) -> Option<u32> {
    ///         self.0.front().copied()
    ///     }
    ///     fn clear(&mut self) {
    ///         self.0.clear();
    ///     }
    /// }
    ///
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .max_capacity(2)
    ///     .shards(1)
    ///     .policy(Policy::custom("fifo", |_| Fifo::default()))
    ///     .build()?;
    /// cache.insert(1, 1);
    /// cache.insert(2, 2);
    /// cache.insert(3, 3);
    /// assert!(!cache.contains_key(&1));
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn custom<P, F>(name: &'static str, make: F) -> Self
    where
        P: EvictionPolicy,
        F: Fn(usize) -> P + Send + Sync + 'static,
    {
        Self {
            kind: PolicyKind::Custom(Custom {
                name,
                make: Arc::new(move |capacity| Box::new(make(capacity))),
            }),
        }
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
            PolicyKind::Custom(ref c) => c.name,
        }
    }

    /// How many hits between its looks the policy can use (see
    /// [`HitCount`](node::HitCount)).
    pub(crate) fn hit_count(&self) -> node::HitCount {
        match self.kind {
            PolicyKind::TinyLfu => node::HitCount::Sketch,
            PolicyKind::Lru => node::HitCount::One,
            PolicyKind::Redis { .. } | PolicyKind::Custom(_) => node::HitCount::All,
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

    /// One shard's state, for a shard of about `capacity` entries; an
    /// adaptive window steers `common`, the share of all of the cache's
    /// shards.
    pub(crate) fn state(&self, capacity: usize, common: &Arc<CommonShare>) -> PolicyState {
        match self.kind {
            PolicyKind::TinyLfu => PolicyState::TinyLfu(tinylfu::TinyLfu::with_common(
                capacity,
                Some(common.clone()),
            )),
            PolicyKind::Lru => PolicyState::Clock(clock::Clock::new()),
            PolicyKind::Redis { policy, samples } => {
                PolicyState::Sampled(sampled::Sampled::new(policy, usize::from(samples)))
            }
            PolicyKind::Custom(ref c) => PolicyState::Custom((c.make)(capacity)),
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
    /// A user's policy, behind the public trait.
    Custom(Box<dyn EvictionPolicy>),
}

impl fmt::Debug for dyn EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn EvictionPolicy")
    }
}

impl PolicyState {
    /// The recency stamp readers write into a hit entry of list 0, if the
    /// policy keeps one.
    #[inline]
    pub(crate) fn read_tick(&self) -> Option<u8> {
        match self {
            Self::TinyLfu(p) => Some(p.tick()),
            Self::Clock(p) => Some(p.tick()),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn on_insert<N: Nodes>(&mut self, nodes: &mut N, idx: u32, hash: u64) {
        match self {
            Self::TinyLfu(p) => p.on_insert(nodes, idx, hash),
            Self::Clock(p) => p.on_insert(nodes, idx),
            Self::Sampled(p) => p.on_insert(nodes, idx),
            Self::Custom(p) => custom::on_insert(p.as_mut(), nodes, idx, hash),
        }
    }

    /// Ends an insert: counts the new entry's first access if the policy
    /// deferred it (after the insert's evictions, for cache locality).
    #[inline]
    pub(crate) fn count_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N) {
        if let Self::TinyLfu(p) = self {
            p.count_insert(nodes);
        }
    }

    #[inline]
    pub(crate) fn on_remove<N: Nodes>(&mut self, nodes: &mut N, idx: u32) {
        match self {
            Self::TinyLfu(p) => p.on_remove(nodes, idx),
            Self::Clock(p) => p.on_remove(nodes, idx),
            Self::Sampled(p) => p.on_remove(nodes, idx),
            Self::Custom(p) => custom::on_remove(p.as_mut(), nodes, idx),
        }
    }

    /// Work to do after an insert that needed no eviction.
    #[inline]
    pub(crate) fn maintain<N: Nodes>(&mut self, nodes: &mut N) {
        match self {
            Self::TinyLfu(p) => p.maintain(nodes),
            Self::Clock(_) | Self::Sampled(_) => {}
            Self::Custom(p) => custom::maintain(p.as_mut(), nodes),
        }
    }

    /// The next entry to evict, and its key's hash when the policy knows it.
    ///
    /// Always inlined: once [`victim_sparing`](Self::victim_sparing) called
    /// it too, it was no longer inlined into the insert's eviction, and the
    /// call cost about 20 instructions per insert.
    #[inline(always)]
    pub(crate) fn victim<N: Nodes>(&mut self, nodes: &mut N) -> Option<(u32, Option<u64>)> {
        match self {
            Self::TinyLfu(p) => p.victim_hashed(nodes).map(|(v, h)| (v, Some(h))),
            Self::Clock(p) => p.victim(nodes).map(|v| (v, None)),
            Self::Sampled(p) => p.victim(nodes).map(|v| (v, None)),
            // A token that is not live is no victim (see the trait's contract).
            Self::Custom(p) => custom::victim(p.as_mut(), nodes).map(|v| (v, None)),
        }
    }

    /// [`victim`](Self::victim), never naming an entry whose key's hash
    /// `spare` holds (a batch's own keys); `None` if the policy names no
    /// other. The sampling policies pass over spared entries as they
    /// sample. The others are asked again after each spared entry they
    /// name is counted as hit (`counts`, as a write counts one), which
    /// moves it off their eviction end; after `2 * spare.len() + 16`
    /// answers (a custom policy may keep naming the same entry), `None`.
    pub(crate) fn victim_sparing<N: Nodes>(
        &mut self,
        nodes: &mut N,
        spare: &[u64],
        counts: node::HitCount,
    ) -> Option<(u32, Option<u64>)> {
        if let Self::Sampled(p) = self {
            return p.victim_sparing(nodes, spare).map(|v| (v, None));
        }
        for _ in 0..2 * spare.len() + 16 {
            let (v, hash) = self.victim(nodes)?;
            let hash = hash.unwrap_or_else(|| nodes.hash_of(v));
            if spare.binary_search(&hash).is_err() {
                return Some((v, Some(hash)));
            }
            let node = nodes.node(v);
            node.record_hit_at(node.get(), counts, || self.read_tick());
        }
        None
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
    pub(crate) fn prefetch_next<N: Nodes + ?Sized>(&mut self, nodes: &N) -> [Option<u64>; 2] {
        match self {
            Self::TinyLfu(p) => p.prefetch_next(nodes),
            Self::Clock(_) | Self::Sampled(_) | Self::Custom(_) => [None, None],
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Self::TinyLfu(p) => p.clear(),
            Self::Clock(p) => p.clear(),
            Self::Sampled(p) => p.clear(),
            Self::Custom(p) => p.clear(),
        }
    }

    /// The admission sketch's estimate for the key hashed `hash`; `None`
    /// for policies without a sketch.
    pub(crate) fn frequency(&self, hash: u64) -> Option<u64> {
        match self {
            Self::TinyLfu(p) => Some(p.frequency(hash)),
            Self::Clock(_) | Self::Sampled(_) | Self::Custom(_) => None,
        }
    }

    /// The adaptive window's share of the shard; `None` for policies
    /// without one.
    pub(crate) fn window_share(&self) -> Option<f64> {
        match self {
            Self::TinyLfu(p) => Some(p.window_share()),
            Self::Clock(_) | Self::Sampled(_) | Self::Custom(_) => None,
        }
    }

    /// Starts the adaptive window at share `w` (saved before a restart);
    /// other policies ignore it.
    pub(crate) fn set_window_share(&mut self, w: f64) {
        if let Self::TinyLfu(p) = self {
            p.set_window_share(w);
        }
    }

    /// Restores the state a log rewrite saved (see `TinyLfu::restore`);
    /// other policies keep none and ignore it.
    pub(crate) fn restore_saved<N: Nodes + ?Sized>(&mut self, nodes: &mut N, counts: &[(u64, u8)]) {
        if let Self::TinyLfu(p) = self {
            p.restore(nodes, counts);
        }
    }

    /// Checks the policy's lists against the node count (tests only).
    #[cfg(test)]
    pub(crate) fn linked(&self) -> usize {
        match self {
            Self::TinyLfu(p) => p.linked(),
            Self::Clock(p) => p.linked(),
            Self::Sampled(p) => p.linked(),
            Self::Custom(_) => 0,
        }
    }
}
