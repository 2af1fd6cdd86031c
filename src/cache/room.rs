//! Making room across shards for one capacity shared by every shard
//! (Redis's `maxmemory` is one number for the whole store, not a share per
//! shard).
//!
//! Owns the cross-shard step of a write: when the shared
//! [`Budget`](crate::shard::Budget) has no room, evict by the policy in the
//! writer's own shard first (never the key being written), and then, through
//! [`Cache::make_room`], in the other shards (their expired entries first),
//! only ever trying their locks.
//! Calls the shards (under their locks) and nothing above the cache.

use crate::cache::Cache;
use crate::callback::Held;
use crate::listener::Removed;
use crate::shard::expiry::is_expired;
use crate::shard::{Budget, Env, Inserted, Shard};
use crate::sync::spin_wait;
use crate::weigher::Weight;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;

/// How many passes that evict something a write makes over the other
/// shards to find room (writers racing for the room freed may need two).
const PASSES: usize = 2;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Called with shard `s` write-locked, before a write that grows it by
    /// `need`: evicts by the policy from the other shards until the cache's
    /// shared `budget` has `need` units free, then reserves them for the
    /// write (see [`Shard::prepay`]), so that no racing writer takes the
    /// room made for it. Other shards are only tried (`try_write`), never waited for, so
    /// two writers holding each other's shard cannot deadlock; a shard busy
    /// at that moment is skipped. Evicted entries go to `removed`.
    pub(crate) fn make_room(
        &self,
        s: usize,
        need: u64,
        budget: &Budget,
        removed: &mut Removed<K, V>,
    ) -> Room {
        for _ in 0..PASSES {
            let (progress, busy) = self.room_pass(s, need, budget, removed);
            if budget.try_reserve(need) {
                return Room::Reserved(need);
            }
            if !progress {
                return if busy { Room::Busy } else { Room::Short };
            }
        }
        Room::Busy
    }

    /// One pass of [`make_room`](Self::make_room) over the shards other
    /// than `s`: whether it evicted anything, and whether another thread
    /// had a part in the room it found: a shard it held was skipped, or the
    /// room was there before the pass was done (a batch's own shards give
    /// their room in `batch_locked.rs`).
    fn room_pass(
        &self,
        s: usize,
        need: u64,
        budget: &Budget,
        removed: &mut Removed<K, V>,
    ) -> (bool, bool) {
        let n = self.shard_count();
        let (mut progress, mut busy) = (false, false);
        for o in (1..n).map(|i| (s + i) % n) {
            if budget.available() >= need {
                // Room now: if a racing writer takes it before this one
                // reserves it, a later try may find more.
                busy = true;
                break;
            }
            let Some(mut other) = self.shard(o).try_write() else {
                // A shard this thread holds (a batch's) is not waited for.
                busy |= !self.shard(o).held_here();
                continue;
            };
            let env = self.write_env(o);
            // Entries past their deadline go first, whatever the policy:
            // a shard no write reaches would otherwise keep its expired
            // entries, and under a policy that never evicts they would
            // refuse every write for as long.
            let before = budget.available();
            other.expire_some(&env, removed);
            progress |= budget.available() > before;
            while budget.available() < need && other.evict_one(&env, removed) {
                progress = true;
            }
        }
        (progress, busy)
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Under ordered deadlines (`CacheBuilder::expired_first`), removes the
    /// entries past their deadline from every shard but `s` whose earliest
    /// deadline is at or before `now`, so that no live entry is evicted
    /// while they hold room. A shard is only tried, never waited for (see
    /// [`make_room`](Self::make_room)); `s` does its own in its admission.
    fn reclaim_expired(&self, s: usize, now: u64, removed: &mut Removed<K, V>) {
        for (o, front) in self.fronts().iter().enumerate() {
            if o == s || !is_expired(front.load(Ordering::Relaxed), now) {
                continue;
            }
            if let Some(mut other) = self.shard(o).try_write() {
                other.expire_some(&self.write_env(o), removed);
            }
        }
    }
}

/// What [`Cache::make_room`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// This many units are reserved for the write: prepay them to its shard.
    Reserved(u64),
    /// Short of room, and a shard another thread held was skipped (or
    /// racing writers kept taking the room made): a later try may find it.
    Busy,
    /// Short of room with every other shard tried: nothing more to evict.
    Short,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Inserts `key` = `value` into shard `s` (held as `shard`), making
    /// room in the shared budget if there is one: when this shard's own
    /// evictable weight cannot cover the growth, the other shards are asked
    /// first (see [`make_room`](Self::make_room)); and if the insert is still
    /// refused (the policy kept naming entries it may not evict, or racing
    /// writers held or took the room), they are asked for the whole growth
    /// and the insert is tried again, on the lock waiters' schedule, while
    /// another thread may free the room.
    ///
    /// `weight` is the entry's weight if the writer knows it already (a
    /// batch weighs its values as it plans), else the weight the weigher
    /// cannot see in `value` (see [`compute_slot`](Self::compute_slot)); 0
    /// for every other write. The weigher is asked once at most.
    ///
    /// Always inlined: the call alone, ten arguments partly on the stack,
    /// cost about 30 instructions per insert.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn insert_with_room(
        &self,
        s: usize,
        shard: &mut Shard<K, V>,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: K,
        value: V,
        weight: Weight,
        deadline: Option<u64>,
        removed: &mut Removed<K, V>,
    ) -> Result<Inserted, (K, V)> {
        match self.budget() {
            None => shard.insert(env, hash, key, value, weight, deadline, removed),
            Some(budget) => self.insert_in_budget(
                budget, s, shard, env, hash, key, value, weight, deadline, removed,
            ),
        }
    }

    /// [`insert_with_room`](Self::insert_with_room) with a shared budget.
    #[allow(clippy::too_many_arguments)]
    fn insert_in_budget(
        &self,
        budget: &Budget,
        s: usize,
        shard: &mut Shard<K, V>,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: K,
        value: V,
        weight: Weight,
        deadline: Option<u64>,
        removed: &mut Removed<K, V>,
    ) -> Result<Inserted, (K, V)> {
        // Weighed once: the inserts below are told the answer.
        let weight = env
            .weights
            .weight(&key, &value, weight, Held::of(&mut *shard));
        let known = Weight::Known(weight);
        // Heavier than the whole budget: it could never fit, so nothing is
        // evicted for it.
        if weight > self.max_capacity() {
            return Err((key, value));
        }
        // Room for the whole entry: no need to look up what it replaces.
        if budget.available() < weight {
            let old = shard.weight_of(env, hash, &key);
            let need = weight.saturating_sub(old);
            // A write that grows the cache past its budget: expired entries
            // anywhere go before the policy names a live one.
            if need > budget.available() && !self.fronts().is_empty() {
                self.reclaim_expired(s, env.now(), removed);
            }
            let own_spare = shard.weight().saturating_sub(old);
            if need > budget.available().saturating_add(own_spare) {
                if let Room::Reserved(n) = self.make_room(s, need - own_spare, budget, removed) {
                    shard.prepay(n);
                }
            }
        }
        let mut attempt = shard.insert(env, hash, key, value, known, deadline, removed);
        shard.refund();
        // Refused: make room in the other shards, reserved for this write,
        // and try again. While other writers hold the shards with the room
        // (or take the room as it is made), wait on the lock waiters'
        // schedule ([`spin_wait`]): a writer holds a shard for one write or
        // batch, so its room is usually free within a few rounds. A holder
        // that waits for this writer's shard never lets go; the schedule
        // bounds that wait, and the write is refused.
        let mut round = 0;
        while let Err((key, value)) = attempt {
            let need = weight.saturating_sub(shard.weight_of(env, hash, &key));
            let room = self.make_room(s, need, budget, removed);
            if let Room::Reserved(n) = room {
                shard.prepay(n);
            }
            attempt = shard.insert(env, hash, key, value, known, deadline, removed);
            shard.refund();
            let retry = room != Room::Short && shard.can_evict();
            if attempt.is_ok() || !retry || !spin_wait(&mut round) {
                break;
            }
        }
        attempt
    }
}
