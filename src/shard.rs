//! One shard: a hash table of tokens, the entries, the policy's state and the
//! expiry index. Single-threaded: it knows nothing about locks; [`Cache`]
//! wraps each shard in one.
//!
//! Entries are stored densely (`nodes[i]` and `slots[i]` describe token `i`);
//! removing an entry moves the last one into its place, so there are no holes
//! and no free list, and the table, the policy lists and the expiry index are
//! told of the move.
//!
//! [`Cache`]: crate::Cache

use crate::expiry::{is_expired, ExpiryIndex};
use crate::listener::{RemovalCause, Removed};
use crate::policy::PolicyState;
use crate::slab::{meta, Node};
use crate::sync::{AtomicU64, Ordering};
use crate::weigher::Weights;
use hashbrown::HashTable;
use std::borrow::Borrow;
use std::cell::Cell;
use std::hash::{BuildHasher, Hash};

/// What a write needs from the cache around the shard.
pub(crate) struct Env<'a, K, V, S> {
    pub(crate) hasher: &'a S,
    pub(crate) weights: &'a Weights<K, V>,
    /// Monotonic milliseconds now.
    pub(crate) now: u64,
    /// Time-to-idle in ms, if configured.
    pub(crate) tti: Option<u64>,
    /// The window share the hill climber chose.
    pub(crate) window: f64,
}

/// The clock, read at most once per lookup and only if an entry needs it.
pub(crate) struct LazyNow<F: Fn() -> u64> {
    read: F,
    value: Cell<Option<u64>>,
}

impl<F: Fn() -> u64> LazyNow<F> {
    pub(crate) fn new(read: F) -> Self {
        Self { read, value: Cell::new(None) }
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        if let Some(v) = self.value.get() {
            return v;
        }
        let v = (self.read)();
        self.value.set(Some(v));
        v
    }
}

/// The result of a lookup.
pub(crate) enum Lookup<T> {
    Hit(T),
    Miss,
    /// Present but past its deadline (a miss to the caller).
    Expired,
}

/// A live entry's view for read-modify-write operations.
pub(crate) struct Found<'a, V> {
    pub(crate) value: &'a V,
    pub(crate) deadline: Option<u64>,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    New,
    Replaced,
}

pub(crate) struct Shard<K, V> {
    table: HashTable<u32>,
    nodes: Vec<Node>,
    slots: Vec<(K, V)>,
    /// Last access (monotonic ms) per token; only under time-to-idle.
    idle: Vec<AtomicU64>,
    expiring: ExpiryIndex,
    policy: PolicyState,
    weight: u64,
    capacity: u64,
    can_evict: bool,
    rng: u64,
    writes: u64,
}

impl<K, V> Shard<K, V>
where
    K: Hash + Eq,
{
    pub(crate) fn new(capacity: u64, policy: PolicyState, can_evict: bool, presize: usize, seed: u64) -> Self {
        Self {
            table: HashTable::with_capacity(presize),
            nodes: Vec::with_capacity(presize),
            slots: Vec::with_capacity(presize),
            idle: Vec::new(),
            expiring: ExpiryIndex::default(),
            policy,
            weight: 0,
            capacity,
            can_evict,
            rng: seed | 1,
            writes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Counts a write; true once every `every` writes (for periodic work
    /// that the cache does outside the lock).
    pub(crate) fn tick(&mut self, every: u64) -> bool {
        self.writes += 1;
        self.writes.is_multiple_of(every)
    }

    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.find(hash, |&i| self.slots[i as usize].0.borrow() == key).copied()
    }

    /// Whether token `idx` is past its deadline or idle limit.
    #[inline]
    fn expired_at<F: Fn() -> u64>(&self, idx: u32, m: u64, now: &LazyNow<F>, tti: Option<u64>) -> bool {
        if let Some(d) = meta::deadline(m) {
            if is_expired(d, now.get()) {
                return true;
            }
        }
        if let Some(tti) = tti {
            let last = self.idle[idx as usize].load(Ordering::Relaxed);
            if is_expired(last.saturating_add(tti), now.get()) {
                return true;
            }
        }
        false
    }

    /// The read path: a shared borrow, one CAS at most on the entry's own
    /// meta word (skipped once its hit counter saturates), no allocation.
    #[inline]
    pub(crate) fn get<Q, F>(&self, hash: u64, key: &Q, now: &LazyNow<F>, tti: Option<u64>) -> Lookup<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        F: Fn() -> u64,
    {
        let Some(idx) = self.find(hash, key) else {
            return Lookup::Miss;
        };
        let node = &self.nodes[idx as usize];
        let m = node.meta.load(Ordering::Relaxed);
        if self.expired_at(idx, m, now, tti) {
            return Lookup::Expired;
        }
        if tti.is_some() {
            let cell = &self.idle[idx as usize];
            let t = now.get();
            if cell.load(Ordering::Relaxed) < t {
                cell.store(t, Ordering::Relaxed);
            }
        }
        node.record_hit(m);
        Lookup::Hit(&self.slots[idx as usize].1)
    }

    /// A live entry's value and deadline, without counting an access.
    pub(crate) fn peek<Q, F>(&self, hash: u64, key: &Q, now: &LazyNow<F>, tti: Option<u64>) -> Option<Found<'_, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        F: Fn() -> u64,
    {
        let idx = self.find(hash, key)?;
        let m = self.nodes[idx as usize].get();
        if self.expired_at(idx, m, now, tti) {
            return None;
        }
        Some(Found { value: &self.slots[idx as usize].1, deadline: meta::deadline(m) })
    }
}

impl<K, V> Shard<K, V>
where
    K: Hash + Eq + 'static,
    V: 'static,
{
    fn hash_at<S: BuildHasher>(&self, hasher: &S, idx: u32) -> u64 {
        hasher.hash_one(&self.slots[idx as usize].0)
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Inserts or replaces `key`. `deadline: None` keeps no deadline; replaced
    /// and evicted entries go to `removed`.
    pub(crate) fn insert<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: K,
        value: V,
        deadline: Option<u64>,
        removed: &mut Removed<K, V>,
    ) -> Result<Inserted, (K, V)> {
        let weight = env.weights.weigh(&key, &value);
        if let Some(idx) = self.find(hash, &key) {
            let old_weight = env.weights.weigh(&self.slots[idx as usize].0, &self.slots[idx as usize].1);
            let grows = weight.saturating_sub(old_weight);
            if grows > 0 && !self.can_evict && self.weight + grows > self.capacity {
                return Err((key, value));
            }
            let old = std::mem::replace(&mut self.slots[idx as usize].1, value);
            self.weight = self.weight - old_weight + weight;
            self.set_deadline(idx, deadline);
            self.touch(idx, env);
            removed.push((key, old, RemovalCause::Replaced));
            self.evict_to_capacity(env, removed);
            return Ok(Inserted::Replaced);
        }
        if weight > self.capacity || (!self.can_evict && self.weight + weight > self.capacity) {
            self.expire_some(env, removed);
            if weight > self.capacity || self.weight + weight > self.capacity {
                return Err((key, value));
            }
        }
        let idx = self.nodes.len() as u32;
        self.nodes.push(Node::new(meta::with_deadline(0, deadline)));
        self.slots.push((key, value));
        self.expiring.on_push();
        self.expiring.set(idx, deadline.is_some(), self.nodes.len());
        if env.tti.is_some() {
            self.idle.push(AtomicU64::new(env.now));
        }
        let slots = &self.slots;
        self.table.insert_unique(hash, idx, |&i| env.hasher.hash_one(&slots[i as usize].0));
        self.weight += weight;
        self.policy.on_insert(&mut self.nodes, idx, hash);
        self.expire_some(env, removed);
        if self.weight > self.capacity {
            self.evict_to_capacity(env, removed);
        } else {
            let (slots, hasher) = (&self.slots, env.hasher);
            self.policy.maintain(&mut self.nodes, &|i| hasher.hash_one(&slots[i as usize].0), env.window);
        }
        Ok(Inserted::New)
    }

    /// Counts a write to an existing entry as an access.
    fn touch<S>(&mut self, idx: u32, env: &Env<'_, K, V, S>) {
        let node = &self.nodes[idx as usize];
        let m = node.get();
        node.set(meta::with_hits(m, meta::hits(m) + 1));
        if env.tti.is_some() {
            self.idle[idx as usize].store(env.now, Ordering::Relaxed);
        }
    }

    fn set_deadline(&mut self, idx: u32, deadline: Option<u64>) {
        let node = &self.nodes[idx as usize];
        node.set(meta::with_deadline(node.get(), deadline));
        self.expiring.set(idx, deadline.is_some(), self.nodes.len());
    }

    fn evict_to_capacity<S: BuildHasher>(&mut self, env: &Env<'_, K, V, S>, removed: &mut Removed<K, V>) {
        while self.weight > self.capacity {
            let victim = {
                let (slots, hasher) = (&self.slots, env.hasher);
                self.policy.victim(&mut self.nodes, &|i| hasher.hash_one(&slots[i as usize].0), env.window)
            };
            let Some(v) = victim else { break };
            let (k, val) = self.remove_at(env, v);
            removed.push((k, val, RemovalCause::Evicted));
        }
    }

    /// Removes token `idx`, moving the last entry into its place.
    fn remove_at<S: BuildHasher>(&mut self, env: &Env<'_, K, V, S>, idx: u32) -> (K, V) {
        let hash = self.hash_at(env.hasher, idx);
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.policy.on_remove(&mut self.nodes, idx);
        self.expiring.set(idx, false, self.nodes.len());
        {
            let (k, v) = &self.slots[idx as usize];
            self.weight -= env.weights.weigh(k, v);
        }
        let last = self.nodes.len() as u32 - 1;
        if idx != last {
            let moved_hash = self.hash_at(env.hasher, last);
            if let Some(slot) = self.table.find_mut(moved_hash, |&i| i == last) {
                *slot = idx;
            }
        }
        self.nodes.swap_remove(idx as usize);
        let kv = self.slots.swap_remove(idx as usize);
        if !self.idle.is_empty() {
            self.idle.swap_remove(idx as usize);
        }
        self.expiring.on_swap_remove(idx, last);
        if idx != last {
            self.policy.on_relocate(&mut self.nodes, last, idx);
        }
        kv
    }

    /// Removes `key` if present (expired or not); the second field says
    /// whether it had already expired.
    pub(crate) fn remove<Q, S>(&mut self, env: &Env<'_, K, V, S>, hash: u64, key: &Q) -> Option<((K, V), bool)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        S: BuildHasher,
    {
        let idx = self.find(hash, key)?;
        let expired = self.is_expired_now(idx, env);
        Some((self.remove_at(env, idx), expired))
    }

    fn is_expired_now<S>(&self, idx: u32, env: &Env<'_, K, V, S>) -> bool {
        let now = LazyNow::new(|| env.now);
        self.expired_at(idx, self.nodes[idx as usize].get(), &now, env.tti)
    }

    /// Samples entries that can expire and removes the expired ones (Redis's
    /// active expiry): rounds of 8 samples, another round only while more than a
    /// quarter of the last one was expired, at most 4 rounds.
    pub(crate) fn expire_some<S: BuildHasher>(&mut self, env: &Env<'_, K, V, S>, removed: &mut Removed<K, V>) {
        for _ in 0..4 {
            let mut expired = 0;
            for _ in 0..8 {
                let r = self.next_random();
                let idx = if env.tti.is_some() {
                    if self.nodes.is_empty() {
                        return;
                    }
                    (r % self.nodes.len() as u64) as u32
                } else {
                    match self.expiring.sample(r) {
                        Some(idx) => idx,
                        None => return,
                    }
                };
                if self.is_expired_now(idx, env) {
                    let (k, v) = self.remove_at(env, idx);
                    removed.push((k, v, RemovalCause::Expired));
                    expired += 1;
                }
            }
            if expired <= 2 {
                return;
            }
        }
    }

    /// Removes every expired entry among those that can expire.
    pub(crate) fn purge_expired<S: BuildHasher>(&mut self, env: &Env<'_, K, V, S>, removed: &mut Removed<K, V>) {
        let mut candidates: Vec<u32> =
            if env.tti.is_some() { (0..self.nodes.len() as u32).collect() } else { self.expiring.tokens().to_vec() };
        // Highest token first, so removals (which move the last token down) never
        // move an unvisited candidate.
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        for idx in candidates {
            if self.is_expired_now(idx, env) {
                let (k, v) = self.remove_at(env, idx);
                removed.push((k, v, RemovalCause::Expired));
            }
        }
    }

    /// Keeps the live entries for which `keep` returns true; the rest, and
    /// every expired entry, go to `removed`.
    pub(crate) fn retain<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        mut keep: impl FnMut(&K, &V) -> bool,
        removed: &mut Removed<K, V>,
    ) {
        for idx in (0..self.nodes.len() as u32).rev() {
            let cause = if self.is_expired_now(idx, env) {
                RemovalCause::Expired
            } else {
                let (k, v) = &self.slots[idx as usize];
                if keep(k, v) {
                    continue;
                }
                RemovalCause::Removed
            };
            let (k, v) = self.remove_at(env, idx);
            removed.push((k, v, cause));
        }
    }

    /// Empties the shard into `removed`.
    pub(crate) fn clear(&mut self, removed: &mut Removed<K, V>) {
        self.table.clear();
        self.nodes.clear();
        self.idle.clear();
        self.expiring.clear();
        self.policy.clear();
        self.weight = 0;
        removed.extend(self.slots.drain(..).map(|(k, v)| (k, v, RemovalCause::Removed)));
    }

    /// The token of the live entry for `key`; an expired one is removed (to
    /// `removed`) and reported absent.
    pub(crate) fn live_index<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> Option<u32> {
        let idx = self.find(hash, key)?;
        if self.is_expired_now(idx, env) {
            let (k, v) = self.remove_at(env, idx);
            removed.push((k, v, RemovalCause::Expired));
            return None;
        }
        Some(idx)
    }

    /// The value and deadline at a token from [`live_index`](Self::live_index).
    pub(crate) fn at(&self, idx: u32) -> Found<'_, V> {
        Found { value: &self.slots[idx as usize].1, deadline: meta::deadline(self.nodes[idx as usize].get()) }
    }

    /// Sets or clears the deadline of a live `key`; false if absent or expired.
    pub(crate) fn set_expiry<Q, S>(&mut self, env: &Env<'_, K, V, S>, hash: u64, key: &Q, deadline: Option<u64>) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        S: BuildHasher,
    {
        match self.find(hash, key) {
            Some(idx) if !self.is_expired_now(idx, env) => {
                self.set_deadline(idx, deadline);
                true
            }
            _ => false,
        }
    }

    /// Calls `f` on every live entry.
    pub(crate) fn for_each_live<F: Fn() -> u64>(&self, now: &LazyNow<F>, tti: Option<u64>, mut f: impl FnMut(&K, &V)) {
        for (idx, (k, v)) in self.slots.iter().enumerate() {
            if !self.expired_at(idx as u32, self.nodes[idx].get(), now, tti) {
                f(k, v);
            }
        }
    }

    /// Checks the shard's internal invariants (tests and fuzzing).
    #[cfg(test)]
    pub(crate) fn validate<S: BuildHasher>(&self, hasher: &S, weights: &Weights<K, V>) {
        assert_eq!(self.nodes.len(), self.slots.len());
        assert_eq!(self.table.len(), self.slots.len());
        assert_eq!(self.policy.linked(), self.slots.len());
        let mut w = 0;
        for (i, (k, v)) in self.slots.iter().enumerate() {
            assert_eq!(self.find(hasher.hash_one(k), k), Some(i as u32));
            w += weights.weigh(k, v);
        }
        assert_eq!(w, self.weight);
        for &t in self.expiring.tokens() {
            assert!(meta::deadline(self.nodes[t as usize].get()).is_some());
        }
    }
}
