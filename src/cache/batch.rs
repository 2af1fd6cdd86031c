//! Atomic writes of several keys, across shards: [`Cache::write_batch`],
//! what `KvStore`'s `MSET`, `MSETNX`, `RENAME`, `COPY` and multi-key `DEL`
//! stand on.
//!
//! A batch takes the write locks of every shard its keys live in, in
//! ascending shard index (see `locked.rs`). That is one total order for
//! every batch, and for multi-key reads ([`read_batch`](Cache::read_batch)),
//! so no two of them wait for each other in a cycle; a single-key write holds
//! one shard lock and waits for no other, [`clear`](Cache::clear) takes
//! every shard in the same ascending order, and the cross-shard eviction of
//! [`make_room`](Cache::make_room) only tries locks (a shard the batch holds
//! is skipped), so none of them can close a cycle with a batch either
//! (`tests/kv_multi.rs` runs batches in every key order to check it). A
//! `compute` closure that calls the cache could: batches are for callers
//! whose closures never do (`KvStore`). Under the
//! locks the batch reads the live entries, lets its caller decide every
//! key's write from them (the condition of `MSETNX` or `RENAME`), checks
//! what can fail before anything changes, applies every write, and logs
//! them as one [`Record::Batch`](crate::persist::Record) record: a log
//! frame's checksum then replays all of them or none. A reader of one key
//! (one shard's lock) or of several ([`read_batch`](Cache::read_batch), all
//! their shards' locks at once) sees every key of the batch before it or
//! after it.
//!
//! The batch's inserts make room as any write does, by evicting by the
//! policy in the key's shard and then in the shards the batch does not
//! hold; if that is not enough, the batch's other locked shards give room
//! too. While it applies, every key of the batch is spared by its shard's
//! evictions (`shard/spare.rs`): a value the batch stored, or one it keeps
//! (a `COPY`'s source), is never the room for another of its values.
//!
//! An insert the cache cannot store (the policy never evicts and there is
//! no room, or every entry left to evict is the batch's own) fails the
//! whole batch: the writes applied before it are rolled back in memory
//! before the locks are released, nothing is logged, and the caller is
//! told nothing was written. So does a batch that finds one of its keys
//! gone once its writes are applied, a safety net that sparing its keys
//! leaves nothing to catch. So does a batch whose undo record
//! cannot be encoded (too large): it could not be undone. Under a log that
//! keeps undo records (`Fsync::Always`), the batch's undo record restores
//! every key it wrote
//! if the log fails before the batch is durable ([`Cache::undo_batch`]),
//! under the locks of all of them at once. Removal notices go to the
//! listener once every lock is released, as a single write's do. The
//! record is encoded under the locks (a `RENAME`'s value is only known
//! there), where a single insert encodes before its lock.

use super::batch_locked::Locked;
use super::Cache;
use crate::compute::{Current, Ttl};
use crate::listener::{RemovalCause, Removed};
use crate::persist::journal::Ticket;
use crate::persist::{Part, PartRef, PersistError, RecordRef};
use crate::shard::{Env, Inserted, Shard};
use crate::weigher::Weight;
use std::hash::{BuildHasher, Hash};

/// What a batch does with one of its keys.
pub(crate) enum BatchWrite<V> {
    /// Leave it as it is.
    Keep,
    /// Store this value, expiring as the [`Ttl`] says (`Keep`: the key's
    /// current deadline, none if it is absent).
    Put(V, Ttl),
    /// Remove it (nothing if it is absent).
    Remove,
    /// Store the live value of the batch's key at this index (nothing if
    /// it is absent), with its deadline and the weight its value carries
    /// beyond the weigher's answer: a value moved here (`RENAME`) keeps
    /// what it was counted as.
    Move(usize),
}

/// A batch that wrote nothing because one of its values could not be stored
/// (heavier than the cache, or no room under a policy that never evicts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchFull;

/// One write of a batch that changes its key, once its deadline and
/// weight are known.
pub(super) enum Step<V> {
    /// The value, its deadline, and its weight: weighed once, as the batch
    /// is planned, and told to the checks and the insert that follow.
    Put(V, Option<u64>, u64),
    Remove,
}

/// The writes a batch makes: the index of each one's key, and the write.
pub(super) type Plan<V> = Vec<(usize, Step<V>)>;

/// A key's state before the batch, to roll an applied write back: its value,
/// deadline and weight.
type Prior<V> = Option<(V, Option<u64>, u64)>;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Applies a batch's undo record without logging it, every key under
    /// the locks of all their shards at once (taken as a batch takes them),
    /// so readers see the batch whole or undone; returns the removals for
    /// the listener, counted as statistics count them.
    pub(crate) fn undo_batch(&self, parts: Vec<Part<K, V>>) -> Removed<K, V> {
        let clock = self.clock_reading();
        let wall = clock.wall_ms();
        let env = self.write_env(0);
        let (mut removed, mut undone) = (Removed::new(), Removed::new());
        let restores = |p: &Part<K, V>| match p {
            Part::Insert { expires_at, .. } => expires_at.is_none_or(|at| at > wall),
            Part::Remove { .. } => false,
        };
        {
            let mut locked = self.lock_keys(parts.iter().map(part_key));
            // Every refused value leaves first, so the values put back
            // have the room they had before the batch (a `RENAME`'s
            // destination, an `MSET` that grew one key and shrank another).
            for (i, part) in parts.iter().enumerate() {
                let h = locked.hash(i);
                if let Some(((k, v), _)) = locked.shard_mut(i).remove(&env, h, part_key(part)) {
                    if restores(part) {
                        // Replaced by the value put back.
                        removed.push((k, v, RemovalCause::Replaced));
                    } else {
                        // The refused value leaves: the listener hears of
                        // it, and no statistic counts it (its write was not
                        // counted).
                        undone.push((k, v, RemovalCause::Removed));
                    }
                }
            }
            for (i, part) in parts.into_iter().enumerate() {
                if !restores(&part) {
                    continue;
                }
                if let Part::Insert {
                    key,
                    value,
                    expires_at,
                } = part
                {
                    let deadline = expires_at.map(|at| clock.tick_of(at));
                    let h = locked.hash(i);
                    let shard = locked.shard_mut(i);
                    let _ = shard.insert(
                        &env,
                        h,
                        key,
                        value,
                        Weight::Hidden(0),
                        deadline,
                        &mut removed,
                    );
                }
            }
        }
        self.count_write(&removed, None, false);
        removed.extend(undone);
        removed
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Writes several keys as one step: `decide` sees each key's live entry
    /// (in the order of `keys`, which must be distinct) with every one of
    /// their shards locked, and answers a write per key (missing answers
    /// keep their key) and a result. `now`, if given, is the clock's reading
    /// the batch uses.
    ///
    /// While the log is failed `decide` still runs, nothing is written, and
    /// the refusal goes to the caller's `durably` scope, as with
    /// [`compute`](Self::compute). `decide` runs under shard locks and must
    /// not call the cache (only `KvStore`, whose closures never do, uses
    /// batches: user code under one shard's lock waiting for a shard a
    /// batch holds could close a cycle the batch does not report).
    ///
    /// # Errors
    ///
    /// [`BatchFull`] when a value could not be stored: nothing was written.
    pub(crate) fn write_batch<R>(
        &self,
        keys: &[K],
        now: Option<u64>,
        decide: impl FnOnce(&[Option<Current<'_, V>>]) -> (Vec<BatchWrite<V>>, R),
    ) -> Result<R, BatchFull> {
        self.write_batch_kept(keys, now, decide).map(|(r, _)| r)
    }

    /// [`write_batch`](Self::write_batch), also answering whether it wrote
    /// something that stands: false when it changed nothing, or the log
    /// refused its writes or failed to keep them (and they were undone).
    ///
    /// # Errors
    ///
    /// As [`write_batch`](Self::write_batch).
    pub(crate) fn write_batch_kept<R>(
        &self,
        keys: &[K],
        now: Option<u64>,
        decide: impl FnOnce(&[Option<Current<'_, V>>]) -> (Vec<BatchWrite<V>>, R),
    ) -> Result<(R, bool), BatchFull> {
        let env = self.write_env(0);
        env.now_ms.set(now);
        let mut refused = self.admit().err();
        let mut removed = Removed::new();
        let (mut ticket, mut kinds, mut wrote) = (Ticket::None, Vec::new(), false);
        let outcome = {
            let mut locked = self.lock_keys(keys.iter());
            let idx: Vec<Option<u32>> = (0..keys.len())
                .map(|i| {
                    let h = locked.hash(i);
                    let shard = locked.shard_mut(i);
                    shard
                        .live_index(&env, h, &keys[i], &mut removed)
                        .filter(|&ix| !shard.is_past_now(ix, &env))
                })
                .collect();
            let (writes, r) = decide(&current(&locked, &idx, &env));
            let plan = match refused {
                Some(_) => Vec::new(),
                None => self.plan(&mut locked, keys, &idx, writes, &env),
            };
            if self.too_heavy(&locked, &plan) {
                Err(BatchFull)
            } else if plan.is_empty() {
                Ok(r)
            } else {
                let wall = |d: u64| self.wall_ms(d);
                match self.encode(|| batch_record(keys, &plan, wall)) {
                    Err(e) => {
                        refused = Some(e);
                        Ok(r)
                    }
                    Ok(record) => match self.batch_undo(&locked, keys, &idx, &plan) {
                        // No undo record (the keys' values are too large
                        // for one): a batch the log failed to keep could
                        // not be undone, so it is refused.
                        Err(e) => {
                            refused = Some(e);
                            Ok(r)
                        }
                        Ok(undo) => self
                            .apply(&mut locked, keys, &idx, plan, &env, &mut removed)
                            .map(|applied| {
                                (kinds, wrote) = (applied, true);
                                ticket = self.append(record, undo);
                                r
                            }),
                    },
                }
            }
        };
        if let Some(e) = refused {
            self.report(e);
        }
        let stands = self.settle_write(ticket, &mut removed);
        if stands {
            for kind in kinds {
                self.count_write(&Removed::new(), Some(kind), false);
            }
        }
        self.after_write(removed, None, outcome.is_err());
        outcome.map(|r| (r, wrote && stands))
    }

    /// The record that restores, in one step, every key `plan` writes, when
    /// the log keeps undo records. Call under the locks, before the writes.
    ///
    /// # Errors
    ///
    /// The record cannot be encoded (over `MAX_RECORD_LEN`).
    fn batch_undo(
        &self,
        locked: &Locked<'_, K, V>,
        keys: &[K],
        idx: &[Option<u32>],
        plan: &Plan<V>,
    ) -> Result<Option<Vec<u8>>, PersistError> {
        let Some(journal) = self.journal().filter(|j| j.undoable()) else {
            return Ok(None);
        };
        let parts = plan
            .iter()
            .map(|&(i, _)| match idx[i] {
                Some(ix) => {
                    let found = locked.shard(i).at(ix);
                    PartRef::Insert {
                        key: &keys[i],
                        value: found.value,
                        expires_at: found.deadline.map(|d| self.wall_ms(d)),
                    }
                }
                None => PartRef::Remove { key: &keys[i] },
            })
            .collect();
        journal.encode(RecordRef::Batch(parts)).map(Some)
    }

    /// Applies `plan` under the locks, sparing the batch's keys from
    /// eviction: the kinds of its inserts, or, when an insert is refused
    /// (or a key of the batch is gone after all), [`BatchFull`] once every
    /// write applied has been rolled back.
    fn apply(
        &self,
        locked: &mut Locked<'_, K, V>,
        keys: &[K],
        idx: &[Option<u32>],
        plan: Plan<V>,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) -> Result<Vec<Inserted>, BatchFull> {
        let mut prior: Vec<Prior<V>> = plan
            .iter()
            .map(|&(i, _)| self.prior(locked, keys, i, idx[i], env))
            .collect();
        // The live keys the batch keeps (a `COPY`'s source) are rolled back
        // too, after the written ones, should an insert evict them.
        let planned = plan.len();
        let mut written = vec![false; idx.len()];
        plan.iter().for_each(|&(i, _)| written[i] = true);
        let mut applied = Vec::with_capacity(idx.len());
        for i in (0..idx.len()).filter(|&i| !written[i] && idx[i].is_some()) {
            applied.push((i, prior.len()));
            prior.push(self.prior(locked, keys, i, idx[i], env));
        }
        let mut stay: Vec<usize> = applied.iter().map(|&(i, _)| i).collect();
        let mut kinds = Vec::new();
        locked.spare_batch();
        for (n, (i, step)) in plan.into_iter().enumerate() {
            match step {
                Step::Put(v, d, weight) => {
                    let key = keys[i].clone();
                    stay.push(i);
                    match self.insert_in_batch(locked, key, i, v, weight, d, env, removed) {
                        Ok(kind) => kinds.push(kind),
                        Err(_) => {
                            applied.retain(|&(i, n)| n < planned || missing(locked, keys, i));
                            self.roll_back_all(locked, keys, &applied, prior, env, removed);
                            return Err(BatchFull);
                        }
                    }
                }
                Step::Remove => {
                    let h = locked.hash(i);
                    if let Some(((k, v), expired)) = locked.shard_mut(i).remove(env, h, &keys[i]) {
                        let cause = if expired {
                            RemovalCause::Expired
                        } else {
                            RemovalCause::Removed
                        };
                        removed.push((k, v, cause));
                    }
                }
            }
            applied.push((i, n));
        }
        // The batch's keys were spared from eviction; should one be gone
        // all the same, the batch would be acknowledged with a key
        // missing, so it is refused whole.
        if stay.into_iter().any(|i| missing(locked, keys, i)) {
            // Kept keys still there need no restoring.
            applied.retain(|&(i, n)| n < planned || missing(locked, keys, i));
            self.roll_back_all(locked, keys, &applied, prior, env, removed);
            return Err(BatchFull);
        }
        Ok(kinds)
    }

    /// Key `i`'s live value, deadline and weight, if it has one.
    fn prior(
        &self,
        locked: &mut Locked<'_, K, V>,
        keys: &[K],
        i: usize,
        idx: Option<u32>,
        env: &Env<'_, K, V, S>,
    ) -> Prior<V> {
        Some(self.held(locked, keys, i, idx?, env))
    }

    /// The value key `i` holds at token `ix`, its deadline, and its weight
    /// as the shard keeps it (the weigher is not asked): the weight to put
    /// it back with under the same key.
    pub(super) fn held(
        &self,
        locked: &mut Locked<'_, K, V>,
        keys: &[K],
        i: usize,
        ix: u32,
        env: &Env<'_, K, V, S>,
    ) -> (V, Option<u64>, u64) {
        let h = locked.hash(i);
        let shard = locked.shard_mut(i);
        let found = shard.at(ix);
        let (value, deadline) = (found.value.clone(), found.deadline);
        (value, deadline, shard.weight_of(env, h, &keys[i]))
    }

    /// Rolls back the writes `applied` names (key index, plan index), newest
    /// first, to their `prior` state. Of the notices about the batch's own
    /// keys only the expired values it found stay: every other value of
    /// theirs is back, or was never seen.
    fn roll_back_all(
        &self,
        locked: &mut Locked<'_, K, V>,
        keys: &[K],
        applied: &[(usize, usize)],
        mut prior: Vec<Prior<V>>,
        env: &Env<'_, K, V, S>,
        removed: &mut Removed<K, V>,
    ) {
        let mut lost = Removed::new();
        for &(i, n) in applied.iter().rev() {
            let h = locked.hash(i);
            let shard = locked.shard_mut(i);
            roll_back(shard, env, h, &keys[i], prior[n].take(), removed, &mut lost);
        }
        let ours = |k: &K| applied.iter().any(|&(i, _)| keys[i] == *k);
        removed.retain(|(k, _, cause)| *cause == RemovalCause::Expired || !ours(k));
        removed.extend(lost);
    }
}

/// The key an undo part writes.
fn part_key<K, V>(part: &Part<K, V>) -> &K {
    match part {
        Part::Insert { key, .. } | Part::Remove { key } => key,
    }
}

/// Whether key `i` of a batch has no entry in its locked shard.
fn missing<K: Hash + Eq, V>(locked: &Locked<'_, K, V>, keys: &[K], i: usize) -> bool {
    locked.shard(i).key_of(locked.hash(i), &keys[i]).is_none()
}

/// What `decide` sees: each key's live entry.
fn current<'a, K: Hash + Eq + 'static, V: 'static, S>(
    locked: &'a Locked<'_, K, V>,
    idx: &[Option<u32>],
    env: &Env<'_, K, V, S>,
) -> Vec<Option<Current<'a, V>>> {
    idx.iter()
        .enumerate()
        .map(|(i, ix)| {
            ix.map(|ix| {
                let found = locked.shard(i).at(ix);
                let ttl = found
                    .deadline
                    .map(|d| env.left_until(d.saturating_sub(env.grace)));
                Current {
                    value: found.value,
                    ttl,
                }
            })
        })
        .collect()
}

/// The log record of `plan`: one part per write, in order.
fn batch_record<'a, K, V>(
    keys: &'a [K],
    plan: &'a Plan<V>,
    wall: impl Fn(u64) -> u64,
) -> RecordRef<'a, K, V> {
    RecordRef::Batch(
        plan.iter()
            .map(|(i, step)| match step {
                Step::Put(value, d, _) => PartRef::Insert {
                    key: &keys[*i],
                    value,
                    expires_at: d.map(&wall),
                },
                Step::Remove => PartRef::Remove { key: &keys[*i] },
            })
            .collect(),
    )
}

/// Puts `key` back as it was before the batch (`prior`), in its locked
/// shard: the batch's value leaves unannounced (no one saw it). A prior
/// value the shard can no longer hold leaves as evicted, in `lost`.
fn roll_back<K, V, S>(
    shard: &mut Shard<K, V>,
    env: &Env<'_, K, V, S>,
    hash: u64,
    key: &K,
    prior: Prior<V>,
    removed: &mut Removed<K, V>,
    lost: &mut Removed<K, V>,
) where
    K: Hash + Eq + Clone + 'static,
    V: 'static,
    S: BuildHasher,
{
    let mut scratch = Removed::new();
    match prior {
        Some((value, deadline, weight)) => {
            let back = shard.insert(
                env,
                hash,
                key.clone(),
                value,
                Weight::Known(weight),
                deadline,
                &mut scratch,
            );
            if let Err((k, v)) = back {
                let _ = shard.remove(env, hash, key);
                lost.push((k, v, RemovalCause::Evicted));
            }
        }
        None => {
            let _ = shard.remove(env, hash, key);
        }
    }
    // The batch's own value, replaced or removed here, was never seen;
    // what the restore evicted stands (unless it is another key of the
    // batch: the caller sorts those out).
    scratch.retain(|(_, _, cause)| *cause == RemovalCause::Evicted);
    removed.extend(scratch);
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
