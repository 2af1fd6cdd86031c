//! Redis's `maxmemory-policy` family, by sampling as Redis does: on each
//! eviction, look at `maxmemory-samples` random entries (5 by default) and
//! evict the best candidate among them.
//!
//! * `allkeys-lru` / `volatile-lru`: the entry idle longest;
//! * `allkeys-lfu` / `volatile-lfu`: the lowest Redis LFU counter (8-bit,
//!   logarithmic, starting at 5, with decay);
//! * `volatile-ttl`: the nearest deadline;
//! * `allkeys-random` / `volatile-random`: any;
//! * `noeviction`: nothing (the cache then refuses writes that do not fit).
//!
//! `volatile-*` sample only entries with a deadline.
//!
//! The hit path is unchanged: a hit only bumps the 4-bit hit counter in the
//! node's meta word (one CAS, skipped once saturated). The policy folds those
//! hits in when it samples an entry: for LRU it then stamps the entry with the
//! policy's clock (bits 8..24 of the meta word); for LFU it applies Redis's
//! logarithmic increment once per recorded hit to the counter (bits 8..16)
//! after decaying it by the periods elapsed since its stamp (bits 16..24).
//! So recency is "last seen hit by the policy", an approximation Redis also
//! makes (its LRU clock has a 1 s resolution). The policy's clock counts
//! inserts, not wall time: LRU stamps advance every [`LRU_TICK`] inserts and
//! LFU counters decay by one every [`DECAY_PERIOD`] inserts to the shard.

use crate::policy::node::{meta, Node, Nodes, NIL};
use std::fmt;

/// Inserts per step of the 16-bit LRU stamp.
const LRU_TICK: u64 = 16;
/// Inserts per LFU decay period (Redis: `lfu-decay-time`, 1 minute).
const DECAY_PERIOD: u64 = 1024;
/// Redis's `LFU_INIT_VAL`.
const LFU_INIT: u8 = 5;
/// Redis's `lfu-log-factor` default.
const LFU_LOG_FACTOR: f64 = 10.0;
/// How many random probes per wanted sample before giving up on finding
/// entries with a deadline (`volatile-*`).
const PROBES_PER_SAMPLE: usize = 8;
/// How many entries the fallback walk looks at, at most.
const FALLBACK_WALK: usize = 1024;

/// Redis's eviction policies, by their `maxmemory-policy` names; build one with
/// [`Policy::redis`](super::Policy::redis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedisPolicy {
    /// `allkeys-lru`: evict the least recently used key.
    AllKeysLru,
    /// `volatile-lru`: the least recently used key among those with an expiry.
    VolatileLru,
    /// `allkeys-lfu`: the least frequently used key.
    AllKeysLfu,
    /// `volatile-lfu`: the least frequently used key among those with an expiry.
    VolatileLfu,
    /// `volatile-ttl`: the key with an expiry nearest to expiring.
    VolatileTtl,
    /// `allkeys-random`: a random key.
    AllKeysRandom,
    /// `volatile-random`: a random key among those with an expiry.
    VolatileRandom,
    /// `noeviction`: never evict; writes that do not fit fail.
    NoEviction,
}

impl RedisPolicy {
    /// Every policy, in Redis's documentation order.
    pub const ALL: [Self; 8] = [
        Self::AllKeysLru,
        Self::VolatileLru,
        Self::AllKeysLfu,
        Self::VolatileLfu,
        Self::VolatileTtl,
        Self::AllKeysRandom,
        Self::VolatileRandom,
        Self::NoEviction,
    ];

    /// The `maxmemory-policy` name, e.g. `"allkeys-lru"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AllKeysLru => "allkeys-lru",
            Self::VolatileLru => "volatile-lru",
            Self::AllKeysLfu => "allkeys-lfu",
            Self::VolatileLfu => "volatile-lfu",
            Self::VolatileTtl => "volatile-ttl",
            Self::AllKeysRandom => "allkeys-random",
            Self::VolatileRandom => "volatile-random",
            Self::NoEviction => "noeviction",
        }
    }

    /// The policy with this `maxmemory-policy` name (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    fn volatile(self) -> bool {
        matches!(
            self,
            Self::VolatileLru | Self::VolatileLfu | Self::VolatileTtl | Self::VolatileRandom
        )
    }
}

impl fmt::Display for RedisPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One shard's state for a [`RedisPolicy`].
///
/// The policy keeps its own dense set of member tokens (`members`, with each
/// token's place in `pos`), so it can sample uniformly whatever the shard's
/// token layout.
#[derive(Debug)]
pub(crate) struct Sampled {
    kind: RedisPolicy,
    samples: usize,
    members: Vec<u32>,
    pos: Vec<u32>,
    inserts: u64,
    rng: u64,
    /// The entry inserted last: not a candidate while others are, since Redis
    /// evicts before it writes.
    newest: u32,
}

impl Sampled {
    pub(crate) fn new(kind: RedisPolicy, samples: usize) -> Self {
        Self {
            kind,
            samples: samples.max(1),
            members: Vec::new(),
            pos: Vec::new(),
            inserts: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            newest: NIL,
        }
    }

    fn lru_clock(&self) -> u16 {
        (self.inserts / LRU_TICK) as u16
    }

    fn period(&self) -> u8 {
        (self.inserts / DECAY_PERIOD) as u8
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    pub(crate) fn on_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        self.inserts += 1;
        if self.pos.len() <= idx as usize {
            self.pos.resize(idx as usize + 1, NIL);
        }
        self.pos[idx as usize] = self.members.len() as u32;
        self.members.push(idx);
        self.newest = idx;
        let n = nodes.node(idx);
        let fresh = match self.kind {
            RedisPolicy::AllKeysLfu | RedisPolicy::VolatileLfu => lfu_word(LFU_INIT, self.period()),
            _ => self.lru_clock(),
        };
        n.set(meta::with_lfu(n.get(), fresh));
    }

    pub(crate) fn on_remove<N: Nodes + ?Sized>(&mut self, _nodes: &mut N, idx: u32) {
        let at = std::mem::replace(&mut self.pos[idx as usize], NIL);
        self.members.swap_remove(at as usize);
        if let Some(&moved) = self.members.get(at as usize) {
            self.pos[moved as usize] = at;
        }
        if idx == self.newest {
            self.newest = NIL;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.members.clear();
        self.pos.clear();
        self.newest = NIL;
    }

    #[cfg(test)]
    pub(crate) fn linked(&self) -> usize {
        self.members.len()
    }

    /// The best of up to `samples` random candidates, or `None` for
    /// `noeviction`. When sampling finds none (`volatile-*` with few or no
    /// expiring entries), the fallback names any entry, the newest last, so
    /// the capacity bound holds.
    pub(crate) fn victim<N: Nodes + ?Sized>(&mut self, nodes: &mut N) -> Option<u32> {
        self.victim_sparing(nodes, &[])
    }

    /// [`victim`](Self::victim), never naming an entry whose key's hash
    /// `spare` holds (a batch's own keys): `None` when every entry is
    /// spared.
    #[inline(always)]
    pub(crate) fn victim_sparing<N: Nodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        spare: &[u64],
    ) -> Option<u32> {
        if self.kind == RedisPolicy::NoEviction || self.members.is_empty() {
            return None;
        }
        let mut best: Option<(u64, u32)> = None;
        let mut found = 0;
        for _ in 0..self.samples * PROBES_PER_SAMPLE {
            if found == self.samples {
                break;
            }
            let r = self.random() as usize;
            let idx = self.members[r % self.members.len()];
            let m = nodes.node(idx).get();
            if idx == self.newest
                || (self.kind.volatile() && meta::deadline(m).is_none())
                || spared(nodes, idx, spare)
            {
                continue;
            }
            found += 1;
            let score = self.score(nodes.node(idx));
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, idx));
            }
        }
        best.map(|(_, idx)| idx)
            .or_else(|| self.fallback(nodes, spare))
    }

    /// When sampling found no candidate (few entries have a deadline): the
    /// first expiring entry in a bounded walk from a random start, else the
    /// first entry of that walk (a key picked at random among all, as
    /// `allkeys-random` would), else the newest entry, else (the newest was
    /// removed since it came in) the entry at the walk's start. A victim is
    /// always named while there are entries: a replacement can grow the
    /// weight with no new entry, and the capacity bound needs one. The
    /// newest comes last so that a key just written is not the room for the
    /// next one. Entries `spare` holds are never named: past them, any other
    /// entry is, and `None` when there is none.
    fn fallback<N: Nodes + ?Sized>(&mut self, nodes: &N, spare: &[u64]) -> Option<u32> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.random() as usize % n;
        let walk = || {
            (start..n)
                .chain(0..start)
                .take(FALLBACK_WALK)
                .map(|i| self.members[i])
        };
        let eligible = |i: u32| i != self.newest && !spared(nodes, i, spare);
        let expiring = |i: u32| meta::deadline(nodes.node(i).get()).is_some();
        let found = walk()
            .find(|&i| eligible(i) && (!self.kind.volatile() || expiring(i)))
            .or_else(|| walk().find(|&i| eligible(i)));
        let newest =
            (self.newest != NIL && !spared(nodes, self.newest, spare)).then_some(self.newest);
        match found.or(newest) {
            Some(v) => Some(v),
            None if spare.is_empty() => Some(self.members[start]),
            None => (start..n)
                .chain(0..start)
                .map(|i| self.members[i])
                .find(|&i| !spared(nodes, i, spare)),
        }
    }

    /// How good a victim the entry is (higher: evict first), folding in its
    /// recent hits.
    fn score(&mut self, node: &Node) -> u64 {
        let hits = node.take_hits();
        let m = node.get();
        match self.kind {
            RedisPolicy::AllKeysLru | RedisPolicy::VolatileLru => {
                let now = self.lru_clock();
                if hits > 0 {
                    node.set(meta::with_lfu(m, now));
                    return 0;
                }
                u64::from(now.wrapping_sub(meta::lfu(m)))
            }
            RedisPolicy::AllKeysLfu | RedisPolicy::VolatileLfu => {
                let period = self.period();
                let (counter, stamp) = ((meta::lfu(m) & 0xFF) as u8, (meta::lfu(m) >> 8) as u8);
                let mut counter = counter.saturating_sub(period.wrapping_sub(stamp));
                for _ in 0..hits {
                    counter = self.log_incr(counter);
                }
                node.set(meta::with_lfu(m, lfu_word(counter, period)));
                u64::from(u8::MAX - counter)
            }
            RedisPolicy::VolatileTtl => u64::MAX - meta::deadline(m).unwrap_or(u64::MAX),
            _ => 0,
        }
    }

    /// Redis's `LFULogIncr`: the higher the counter, the less likely a hit raises it.
    fn log_incr(&mut self, counter: u8) -> u8 {
        if counter == u8::MAX {
            return counter;
        }
        let r = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
        let base = f64::from(counter.saturating_sub(LFU_INIT));
        if r < 1.0 / (base * LFU_LOG_FACTOR + 1.0) {
            counter + 1
        } else {
            counter
        }
    }
}

/// Whether the entry at `idx` is one `spare` holds the key hash of.
#[inline(always)]
fn spared<N: Nodes + ?Sized>(nodes: &N, idx: u32, spare: &[u64]) -> bool {
    !spare.is_empty() && spare.binary_search(&nodes.hash_of(idx)).is_ok()
}

/// The 16 LFU bits: counter low, decay period stamp high.
fn lfu_word(counter: u8, period: u8) -> u16 {
    u16::from(counter) | (u16::from(period) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize, deadline_every: usize) -> Vec<Node> {
        (0..n)
            .map(|i| {
                Node::new(meta::with_deadline(
                    0,
                    (deadline_every > 0 && i % deadline_every == 0).then_some(1000 + i as u64),
                ))
            })
            .collect()
    }

    fn filled(kind: RedisPolicy, ns: &mut Vec<Node>) -> Sampled {
        let mut p = Sampled::new(kind, 5);
        for i in 0..ns.len() as u32 {
            p.on_insert(ns, i);
        }
        p
    }

    #[test]
    fn names_round_trip() {
        for p in RedisPolicy::ALL {
            assert_eq!(RedisPolicy::from_name(&p.name().to_uppercase()), Some(p));
        }
        assert_eq!(RedisPolicy::from_name("lru"), None);
    }

    #[test]
    fn volatile_policies_pick_only_expiring_entries() {
        for kind in [
            RedisPolicy::VolatileLru,
            RedisPolicy::VolatileLfu,
            RedisPolicy::VolatileTtl,
            RedisPolicy::VolatileRandom,
        ] {
            let mut ns = nodes(100, 10);
            let mut p = filled(kind, &mut ns);
            for _ in 0..50 {
                let v = p.victim(&mut ns).expect("a victim");
                assert!(meta::deadline(ns[v as usize].get()).is_some(), "{kind}");
            }
        }
    }

    #[test]
    fn volatile_ttl_prefers_near_deadlines() {
        let mut ns = nodes(1000, 1);
        let mut p = filled(RedisPolicy::VolatileTtl, &mut ns);
        let avg: u64 = (0..200)
            .map(|_| u64::from(p.victim(&mut ns).expect("victim")))
            .sum::<u64>()
            / 200;
        assert!(
            avg < 300,
            "average victim {avg} should be among the earliest deadlines"
        );
    }

    #[test]
    fn lru_spares_entries_that_were_hit() {
        let mut ns = nodes(64, 0);
        let mut p = filled(RedisPolicy::AllKeysLru, &mut ns);
        // Age everything, then hit the first half.
        p.inserts += 100 * LRU_TICK;
        for n in &ns[..32] {
            n.record_hit(n.get());
        }
        let mut from_hot = 0;
        for _ in 0..200 {
            if p.victim(&mut ns).expect("victim") < 32 {
                from_hot += 1;
            }
        }
        assert!(
            from_hot < 20,
            "{from_hot} victims among recently hit entries"
        );
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let mut p = Sampled::new(RedisPolicy::AllKeysLfu, 5);
        let mut c = LFU_INIT;
        for _ in 0..100_000 {
            c = p.log_incr(c);
        }
        assert!((120..170).contains(&c), "counter after 100k hits: {c}");
        let n = Node::new(0);
        n.set(meta::with_lfu(0, lfu_word(10, 0)));
        p.inserts = 3 * DECAY_PERIOD;
        assert_eq!(p.score(&n), u64::from(u8::MAX - 7));
    }

    /// Every Redis policy inside a real cache: invariants hold and the
    /// capacity bound is kept (or, for noeviction, writes are refused).
    #[test]
    fn invariants_hold_in_a_cache() {
        use crate::{Cache, MockClock, Policy};
        use std::time::Duration;
        for kind in RedisPolicy::ALL {
            let clock = MockClock::new();
            let cache = Cache::<u32, u32>::builder()
                .max_capacity(64)
                .shards(2)
                .policy(Policy::redis(kind))
                .clock(clock.clone())
                .build()
                .expect("valid");
            let mut x = 0x2545_F491_u32;
            let mut refused = 0;
            for step in 0..5_000u32 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let k = x % 200;
                match x % 7 {
                    0..=2 => refused += u32::from(cache.try_insert(k, step).is_err()),
                    3 => {
                        refused += u32::from(
                            cache
                                .try_insert_with_expiry(
                                    k,
                                    step,
                                    Some(Duration::from_millis(u64::from(x % 500) + 1)),
                                )
                                .is_err(),
                        )
                    }
                    4 | 5 => drop(cache.get(&k)),
                    _ => clock.advance(Duration::from_millis(3)),
                }
                cache.validate();
                assert!(cache.weighted_size() <= 64, "{kind}");
            }
            assert_eq!(
                refused > 0,
                kind == RedisPolicy::NoEviction,
                "{kind}: {refused} refused"
            );
            if kind != RedisPolicy::NoEviction {
                assert!(cache.stats().evictions > 0, "{kind}");
            }
        }
    }

    #[test]
    fn noeviction_never_names_a_victim() {
        let mut ns = nodes(10, 0);
        let mut p = filled(RedisPolicy::NoEviction, &mut ns);
        assert_eq!(p.victim(&mut ns), None);
    }
}
