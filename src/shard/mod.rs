//! One shard: a hash table of tokens, the entries, the policy's state and the
//! expiry index. Single-threaded: it knows nothing about locks; [`Cache`]
//! wraps each shard in one.
//!
//! Entries live in a slab (`entries[token]`), each holding its policy
//! [`Node`] beside its key and value so a hit touches one cache line. A removed
//! entry's slot goes on a free list and the next insert reuses it; nothing
//! moves, so eviction never has to fix up other entries' links.
//!
//! Owns the table (`table.rs`), the slab (`slab.rs`), the expiry index
//! (`expiry.rs`), its side of the shared budget (`budget.rs`), bulk removal
//! (`sweep.rs`), cursor steps (`scan.rs`), walks over its entries
//! (`walk.rs`) and the loads in flight on its keys (`loads.rs`). Calls down only: the policy (through its hooks,
//! handing it a view of the slab's nodes), the weigher and the clock; it
//! hands removed entries back to its caller and never calls the listener or
//! the log.
//!
//! [`Cache`]: crate::Cache

mod admission;
mod budget;
mod env;
pub(crate) mod expiry;
mod loads;
mod scan;
mod slab;
mod spare;
mod sweep;
pub(crate) mod table;
#[cfg(test)]
mod validate;
mod walk;
mod weights;
pub(crate) use budget::Budget;
pub(crate) use env::{left_ms, Env, Found, Inserted, LazyNow, Lookup};
pub(crate) use loads::LoadId;
pub(crate) use scan::ScanBudget;
use slab::{Entry, Slab, SlabView};

use crate::callback::Held;
use crate::listener::{RemovalCause, Removed};
use crate::policy::node::{meta, HitCount, Node};
use crate::policy::PolicyState;
use crate::sync::{AtomicU64, Ordering};
use crate::weigher::Weight;
use expiry::{is_expired, ExpiryIndex};
use loads::Loads;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use table::Table;

/// The fields every operation touches, the table and the slab, come first:
/// the cache keeps each shard's lock words right before it (see `Cache`),
/// so they share the lock's cache line. Taking the lock, shared or
/// exclusive, loads that line, so reading them (and a writer updating the
/// table's counts) costs no further miss.
#[repr(C)]
pub(crate) struct Shard<K, V> {
    table: Table,
    entries: Slab<K, V>,
    /// Last access (monotonic ms) per token; only under time-to-idle.
    idle: Vec<AtomicU64>,
    /// Each token's weight as the weigher gave it at insert; only with a
    /// custom weigher (see `weights.rs`).
    weights: Vec<u32>,
    free: Vec<u32>,
    expiring: ExpiryIndex,
    policy: PolicyState,
    weight: u64,
    capacity: u64,
    can_evict: bool,
    /// Whether eviction passes over the keys `spare` holds (see `spare.rs`).
    sparing: bool,
    /// The most slots the slab can need (see [`Shard::new`]); it grows
    /// towards this bound and never past it.
    slab_bound: usize,
    rng: u64,
    /// The capacity shared with the other shards, when there is one.
    budget: Option<std::sync::Arc<crate::shard::Budget>>,
    /// Units of `budget` reserved for this shard's next write (see
    /// [`prepay`](Self::prepay)); 0 between writes.
    prepaid: u64,
    /// Read-through loads of this shard's keys in flight.
    loads: Loads,
    /// The hashes of the keys eviction passes over while `sparing`.
    spare: Vec<u64>,
}

impl<K, V> Shard<K, V>
where
    K: Hash + Eq,
{
    /// A shard of `capacity` weight whose table and slab start with room for
    /// `presize` entries. `slab_bound` is the most entries it can hold at
    /// once, plus one (an insert takes its slot before its eviction frees
    /// one): `capacity + 1` under unit weights, `usize::MAX` when unknown.
    pub(crate) fn new(
        capacity: u64,
        policy: PolicyState,
        can_evict: bool,
        presize: usize,
        slab_bound: usize,
        seed: u64,
    ) -> Self {
        Self {
            table: Table::with_capacity(presize),
            entries: Vec::with_capacity(presize.min(slab_bound)),
            free: Vec::new(),
            idle: Vec::new(),
            weights: Vec::new(),
            expiring: ExpiryIndex::default(),
            policy,
            weight: 0,
            capacity,
            can_evict,
            sparing: false,
            slab_bound,
            rng: seed | 1,
            budget: None,
            prepaid: 0,
            loads: Loads::default(),
            spare: Vec::new(),
        }
    }

    /// Shares `budget` with other shards: every weight this shard takes is
    /// reserved in it first, and every weight it drops is given back.
    pub(crate) fn share_budget(&mut self, budget: std::sync::Arc<crate::shard::Budget>) {
        self.budget = Some(budget);
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Makes room for one more slab slot. The slab doubles, as a `Vec`
    /// does, but stops at `slab_bound`: a shard of 6,250 entries that
    /// started at 4,096 slots would otherwise double to 8,192 and leave
    /// 31 % of its slab unused for good. Past the bound (never, under unit
    /// weights) the push grows it as a `Vec` does.
    #[inline]
    fn reserve_slot(&mut self) {
        let len = self.entries.len();
        if len == self.entries.capacity() && len < self.slab_bound {
            self.entries
                .reserve_exact((self.slab_bound - len).min(len.max(4)));
        }
    }

    /// The entry at an occupied token.
    #[inline]
    fn entry(&self, idx: u32) -> &Entry<K, V> {
        match &self.entries[idx as usize] {
            Some(e) => e,
            None => slab::not_occupied("token", idx),
        }
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Whether the policy evicts (false for `noeviction`).
    pub(crate) fn can_evict(&self) -> bool {
        self.can_evict
    }

    /// The most weight the shard holds (its share of the cache's capacity,
    /// or the whole capacity under a shared budget).
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.find(hash, |i| self.entry(i).key.borrow() == key)
    }

    /// Whether token `idx` is past its deadline or idle limit.
    #[inline]
    fn expired_at<F: Fn() -> (u64, bool)>(
        &self,
        idx: u32,
        m: u64,
        now: &LazyNow<F>,
        tti: Option<u64>,
    ) -> bool {
        if let Some(d) = meta::deadline(m) {
            if is_expired(d, now.get()) {
                return true;
            }
        }
        if let Some(tti) = tti {
            // `last` is the last access's millisecond, rounded up.
            let last = self.idle[idx as usize].load(Ordering::Relaxed);
            if is_expired(last.saturating_add(tti), now.get()) {
                return true;
            }
        }
        false
    }

    /// The read path: a shared borrow, one plain store at most to the
    /// entry's own meta word (skipped once it holds as many hits as
    /// `counts` lets the policy use), no allocation.
    #[inline]
    pub(crate) fn get<Q, F>(
        &self,
        hash: u64,
        key: &Q,
        now: &LazyNow<F>,
        tti: Option<u64>,
        counts: HitCount,
    ) -> Lookup<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        F: Fn() -> (u64, bool),
    {
        let Some(idx) = self.find(hash, key) else {
            // A miss is usually followed by an insert of the key, which
            // will count it in the policy's sketch.
            self.policy.prefetch_key(hash);
            return Lookup::Miss;
        };
        let entry = self.entry(idx);
        let m = entry.node.meta.load(Ordering::Relaxed);
        if self.expired_at(idx, m, now, tti) {
            return Lookup::Expired;
        }
        if tti.is_some() {
            let cell = &self.idle[idx as usize];
            let t = now.ceil();
            if cell.load(Ordering::Relaxed) < t {
                cell.store(t, Ordering::Relaxed);
            }
        }
        entry
            .node
            .record_hit_at(m, counts, || self.policy.read_tick());
        Lookup::Hit(&entry.value)
    }

    /// The stored key equal to `key`, if present.
    pub(crate) fn key_of<Q>(&self, hash: u64, key: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(hash, key).map(|i| &self.entry(i).key)
    }

    /// A live entry's value and deadline, without counting an access.
    pub(crate) fn peek<Q, F>(
        &self,
        hash: u64,
        key: &Q,
        now: &LazyNow<F>,
        tti: Option<u64>,
    ) -> Option<Found<'_, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        F: Fn() -> (u64, bool),
    {
        let idx = self.find(hash, key)?;
        let entry = self.entry(idx);
        let m = entry.node.get();
        if self.expired_at(idx, m, now, tti) {
            return None;
        }
        Some(Found {
            value: &entry.value,
            deadline: meta::deadline(m),
        })
    }
}

impl<K, V> Shard<K, V>
where
    K: Hash + Eq + 'static,
    V: 'static,
{
    fn entry_mut(&mut self, idx: u32) -> &mut Entry<K, V> {
        match &mut self.entries[idx as usize] {
            Some(e) => e,
            None => slab::not_occupied("token", idx),
        }
    }

    /// Inserts or replaces `key`, of the weight `weight` says (the
    /// weigher's answer plus hidden weight, or one known already).
    /// `deadline: None` keeps no deadline; replaced and evicted entries go
    /// to `removed`.
    ///
    /// Always inlined (the cache has few insert paths): as a call, it cost
    /// about 15 instructions per insert.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn insert<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: K,
        value: V,
        weight: Weight,
        deadline: Option<u64>,
        removed: &mut Removed<K, V>,
    ) -> Result<Inserted, (K, V)> {
        self.written(hash);
        let weight = env
            .weights
            .weight(&key, &value, weight, Held::of(&mut *self));
        let mut found = self.find(hash, &key);
        if let Some(idx) = found.filter(|&idx| self.expired_before_write(idx, env)) {
            // Past its time but not yet reclaimed: it leaves as expired, and
            // the key is written anew (as `compute` does).
            let (k, v) = self.remove_hashed(env, idx, Some(hash));
            removed.push((k, v, RemovalCause::Expired));
            found = None;
        }
        if let Some(idx) = found {
            if weight > self.capacity {
                // It could never fit: the old value stays, nothing evicted.
                return Err((key, value));
            }
            let old_weight = self.weight_at(env, idx);
            let grows = weight.saturating_sub(old_weight);
            if grows > 0 && !self.can_evict && self.weight + grows > self.capacity {
                return Err((key, value));
            }
            if grows > 0 && !self.admit(env, grows, Some(idx), removed) {
                return Err((key, value));
            }
            if let Some(b) = &self.budget {
                b.release(old_weight.saturating_sub(weight));
            }
            let old = std::mem::replace(&mut self.entry_mut(idx).value, value);
            let old_deadline = meta::deadline(self.entry(idx).node.get());
            self.remember_weight(env, idx, weight);
            self.weight = self.weight - old_weight + weight;
            self.set_deadline(idx, deadline);
            self.touch(idx, env);
            self.evict_to_capacity(env, removed);
            if self.over_with(idx) {
                let new = self.take_back_replaced(env, idx, old, old_weight, old_deadline);
                return Err((key, new));
            }
            removed.push((key, old, RemovalCause::Replaced));
            return Ok(Inserted::Replaced);
        }
        if weight > self.capacity || (!self.can_evict && self.weight + weight > self.capacity) {
            self.expire_some(env, removed);
            if weight > self.capacity || self.weight + weight > self.capacity {
                return Err((key, value));
            }
        }
        if !self.admit(env, weight, None, removed) {
            return Err((key, value));
        }
        let entry = Entry {
            node: Node::new(meta::with_deadline(0, deadline)),
            key,
            value,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.entries[idx as usize] = Some(entry);
                idx
            }
            None => {
                self.reserve_slot();
                self.entries.push(Some(entry));
                self.expiring.on_push();
                if env.tti.is_some() {
                    self.idle.push(AtomicU64::new(env.now_ceil()));
                }
                self.entries.len() as u32 - 1
            }
        };
        self.remember_weight(env, idx, weight);
        self.expiring.set(idx, deadline, self.entries.len());
        if env.tti.is_some() {
            self.idle[idx as usize].store(env.now_ceil(), Ordering::Relaxed);
        }
        let entries = &self.entries;
        self.table
            .insert_unique(hash, idx, |i| match &entries[i as usize] {
                Some(e) => env.hasher.hash_one(&e.key),
                None => slab::not_occupied("table token", i),
            });
        self.weight += weight;
        self.policy.on_insert(
            &mut SlabView {
                entries: &mut self.entries,
                hasher: env.hasher,
            },
            idx,
            hash,
        );
        self.expire_some(env, removed);
        if self.weight > self.capacity {
            self.evict_to_capacity(env, removed);
            if self.over_with(idx) {
                return Err(self.remove_at(env, idx));
            }
            let nodes = SlabView {
                entries: &mut self.entries,
                hasher: env.hasher,
            };
            // Two `if let`s: a loop over the array's flattened options kept
            // its iterator on the stack, about 20 instructions per eviction.
            let [victim, candidate] = self.policy.prefetch_next(&nodes);
            if let Some(hash) = victim {
                self.table.prefetch(hash);
            }
            if let Some(hash) = candidate {
                self.table.prefetch(hash);
            }
        } else {
            self.policy.maintain(&mut SlabView {
                entries: &mut self.entries,
                hasher: env.hasher,
            });
        }
        self.policy.count_insert(&mut SlabView {
            entries: &mut self.entries,
            hasher: env.hasher,
        });
        Ok(Inserted::New)
    }

    /// Removes token `idx` and frees its slot.
    fn remove_at<S: BuildHasher>(&mut self, env: &Env<'_, K, V, S>, idx: u32) -> (K, V) {
        self.remove_hashed(env, idx, None)
    }

    /// Removes token `idx`, whose key hashes to `hash` if the caller knows
    /// it (a victim's policy does), and frees its slot.
    ///
    /// Always inlined, as is [`evict_to_capacity`](Self::evict_to_capacity)
    /// into the insert: as calls, their entry and exit cost about 45
    /// instructions per eviction.
    #[inline(always)]
    fn remove_hashed<S: BuildHasher>(
        &mut self,
        env: &Env<'_, K, V, S>,
        idx: u32,
        hash: Option<u64>,
    ) -> (K, V) {
        self.policy.on_remove(
            &mut SlabView {
                entries: &mut self.entries,
                hasher: env.hasher,
            },
            idx,
        );
        self.expiring.set(idx, None, self.entries.len());
        let Some(Entry { key, value, .. }) = self.entries[idx as usize].take() else {
            slab::not_occupied("removed token", idx);
        };
        let hash = hash.unwrap_or_else(|| env.hasher.hash_one(&key));
        debug_assert_eq!(hash, env.hasher.hash_one(&key), "token {idx}: wrong hash");
        let found = self.table.remove(hash, idx);
        debug_assert!(found, "token {idx} was not in the table");
        let weight = self.weight_at(env, idx);
        self.weight -= weight;
        if let Some(b) = &self.budget {
            b.release(weight);
        }
        self.free.push(idx);
        (key, value)
    }

    /// Removes `key` if present (expired or not); the second field says
    /// whether it had already expired (to callers: see
    /// [`is_past_now`](Self::is_past_now)). A load of `key` in flight is
    /// overtaken even if it was absent.
    pub(crate) fn remove<Q, S>(
        &mut self,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: &Q,
    ) -> Option<((K, V), bool)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        S: BuildHasher,
    {
        self.written(hash);
        let idx = self.find(hash, key)?;
        let expired = self.is_past_now(idx, env);
        Some((self.remove_at(env, idx), expired))
    }

    /// [`is_past_now`](Self::is_past_now) for an entry a write is about to
    /// replace, inlined: a deadline is checked against the clock (already
    /// read, under a TTL, for the new deadline), the idle limit only under
    /// time-to-idle.
    #[inline(always)]
    fn expired_before_write<S>(&self, idx: u32, env: &Env<'_, K, V, S>) -> bool {
        if let Some(d) = meta::deadline(self.entry(idx).node.get()) {
            if is_expired(d.saturating_sub(env.grace), env.now()) {
                return true;
            }
        }
        env.tti.is_some() && self.is_expired_now(idx, env)
    }

    fn is_expired_now<S>(&self, idx: u32, env: &Env<'_, K, V, S>) -> bool {
        let now = LazyNow::new(|| env.reading());
        self.expired_at(idx, self.entry(idx).node.get(), &now, env.tti)
    }

    /// Whether token `idx` is expired to callers: past its idle limit, or
    /// past its time to live though kept for the refresh windows
    /// (`env.grace`). Without them, the same as reclaimable.
    pub(crate) fn is_past_now<S>(&self, idx: u32, env: &Env<'_, K, V, S>) -> bool {
        let deadline = meta::deadline(self.entry(idx).node.get());
        deadline.is_some_and(|d| is_expired(d.saturating_sub(env.grace), env.now()))
            || self.is_expired_now(idx, env)
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
        let e = self.entry(idx);
        Found {
            value: &e.value,
            deadline: meta::deadline(e.node.get()),
        }
    }

    /// The value at a token from [`live_index`](Self::live_index), for a
    /// [`Slot`](crate::compute::Slot): whatever is left there keeps the
    /// entry's weight.
    pub(crate) fn value_mut(&mut self, idx: u32) -> &mut V {
        &mut self.entry_mut(idx).value
    }

    /// Sets or clears the deadline of a live `key`; false if absent or
    /// expired (to callers).
    pub(crate) fn set_expiry<Q, S>(
        &mut self,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: &Q,
        deadline: Option<u64>,
    ) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        S: BuildHasher,
    {
        match self.find(hash, key) {
            Some(idx) if !self.is_past_now(idx, env) => {
                self.set_deadline(idx, deadline);
                true
            }
            _ => false,
        }
    }
}
