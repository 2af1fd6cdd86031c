//! Atomic writes of several keys, across shards: [`Cache::write_batch`],
//! what `KvStore`'s `MSET`, `MSETNX`, `RENAME` and `COPY` stand on.
//!
//! A batch takes the write locks of every shard its keys live in, in
//! ascending shard index. That is one total order for every batch, so two
//! batches never wait for each other in a cycle; a single-key write holds
//! one shard lock and waits for no other, and the cross-shard eviction of
//! [`make_room`](Cache::make_room) only tries locks (a shard the batch holds
//! is skipped), so neither can close a cycle with a batch either. Under the
//! locks the batch reads the live entries, lets its caller decide every
//! key's write from them (the condition of `MSETNX` or `RENAME`), checks
//! what can fail before anything changes, applies every write, and logs
//! them as one [`Record::Batch`](crate::persist::Record) record: a log
//! frame's checksum then replays all of them or none. A reader, which takes
//! one shard's lock, sees every key of the batch before it or after it.
//!
//! An insert the cache cannot store (the policy never evicts and there is
//! no room) fails the whole batch: the writes applied before it are rolled
//! back in memory before the locks are released, nothing is logged, and the
//! caller is told nothing was written. Under a log that keeps undo records
//! (`Fsync::Always`), the batch's undo record restores every key it wrote
//! if the log fails before the batch is durable ([`Cache::undo_batch`]).
//! Removal notices go to the listener once every lock is released.

use super::Cache;
use crate::callback::Held;
use crate::compute::{Current, Ttl};
use crate::listener::{RemovalCause, Removed};
use crate::persist::journal::Ticket;
use crate::persist::{Part, PartRef, RecordRef};
use crate::shard::expiry::deadline_after;
use crate::shard::Env;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

/// What a batch does with one of its keys.
pub(crate) enum BatchWrite<V> {
    /// Leave it as it is.
    Keep,
    /// Store this value, expiring as the [`Ttl`] says (`Keep`: the key's
    /// current deadline, none if it is absent).
    Put(V, Ttl),
    /// Remove it (nothing if it is absent).
    Remove,
}

/// A batch that wrote nothing because one of its values could not be stored
/// (heavier than the cache, or no room under a policy that never evicts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchFull;

/// One write of a batch, once its deadline is known.
enum Step<V> {
    Put(V, Option<u64>),
    Remove,
}

/// A key's state before the batch, to roll an applied write back: its value,
/// deadline and the weight its value carries beyond the weigher's answer.
type Prior<V> = Option<(V, Option<u64>, u64)>;

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
    /// [`compute`](Self::compute).
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
        let env = self.write_env(0);
        env.now_ms.set(now);
        let at: Vec<(u64, usize)> = keys.iter().map(|k| self.locate_key(k)).collect();
        let mut order: Vec<usize> = at.iter().map(|&(_, s)| s).collect();
        order.sort_unstable();
        order.dedup();
        let slot = |s: usize| order.binary_search(&s).unwrap_or(0);
        let mut refused = self.admit().err();
        let mut removed = Removed::new();
        let mut ticket = Ticket::None;
        let mut kinds = Vec::new();
        let outcome = {
            // Ascending shard index: see the module docs.
            let mut held: Vec<_> = order.iter().map(|&s| self.shard(s).write()).collect();
            let idx: Vec<Option<u32>> = keys
                .iter()
                .zip(&at)
                .map(|(k, &(h, s))| {
                    let shard = &mut *held[slot(s)];
                    shard
                        .live_index(&env, h, k, &mut removed)
                        .filter(|&i| !shard.is_past_now(i, &env))
                })
                .collect();
            let (writes, r) = {
                let current: Vec<Option<Current<'_, V>>> = idx
                    .iter()
                    .zip(&at)
                    .map(|(i, &(_, s))| {
                        i.map(|i| {
                            let found = held[slot(s)].at(i);
                            Current {
                                value: found.value,
                                ttl: found.deadline.map(|d| {
                                    Duration::from_millis(
                                        d.saturating_sub(env.grace).saturating_sub(env.now()),
                                    )
                                }),
                            }
                        })
                    })
                    .collect();
                decide(&current)
            };
            // The writes that change something, with their deadlines.
            let mut plan: Vec<(usize, Step<V>)> = Vec::new();
            if refused.is_none() {
                for (i, write) in writes.into_iter().enumerate().take(keys.len()) {
                    let existing = idx[i].and_then(|ix| held[slot(at[i].1)].at(ix).deadline);
                    match write {
                        BatchWrite::Keep => {}
                        BatchWrite::Remove if idx[i].is_none() => {}
                        BatchWrite::Remove => plan.push((i, Step::Remove)),
                        BatchWrite::Put(v, ttl) => {
                            let deadline = match ttl {
                                Ttl::Keep => existing,
                                Ttl::Never => None,
                                Ttl::After(d) => {
                                    self.stored_deadline(Some(deadline_after(env.now(), d)))
                                }
                            };
                            plan.push((i, Step::Put(v, deadline)));
                        }
                    }
                }
            }
            // Checked before anything changes: a value heavier than the
            // whole cache could never be stored.
            let too_heavy = plan.iter().any(|(i, step)| match step {
                Step::Put(v, _) => {
                    let shard = &mut *held[slot(at[*i].1)];
                    let w = self
                        .inner
                        .weights
                        .weigh(&keys[*i], v, 0, Held::of(&mut *shard));
                    w > self.max_capacity()
                }
                Step::Remove => false,
            });
            if too_heavy {
                Err(BatchFull)
            } else if plan.is_empty() {
                Ok(r)
            } else {
                let wall = |d: Option<u64>| d.map(|d| self.wall_ms(d, env.now()));
                let record = self.encode(|| {
                    RecordRef::Batch(
                        plan.iter()
                            .map(|(i, step)| match step {
                                Step::Put(value, d) => PartRef::Insert {
                                    key: &keys[*i],
                                    value,
                                    expires_at: wall(*d),
                                },
                                Step::Remove => PartRef::Remove { key: &keys[*i] },
                            })
                            .collect(),
                    )
                });
                match record {
                    Err(e) => {
                        refused = Some(e);
                        Ok(r)
                    }
                    Ok(record) => {
                        let undo = self.batch_undo(&held, &slot, &at, keys, &idx, &plan, &env);
                        let prior: Vec<Prior<V>> = plan
                            .iter()
                            .map(|&(i, _)| {
                                let (h, s) = at[i];
                                let shard = &mut *held[slot(s)];
                                idx[i].map(|ix| {
                                    let found = shard.at(ix);
                                    let (value, deadline) = (found.value.clone(), found.deadline);
                                    let all = shard.weight_of(&env, h, &keys[i]);
                                    let seen = self.inner.weights.weigh(
                                        &keys[i],
                                        &value,
                                        0,
                                        Held::of(&mut *shard),
                                    );
                                    (value, deadline, all.saturating_sub(seen))
                                })
                            })
                            .collect();
                        let mut applied = Vec::new();
                        let mut failed = false;
                        for (n, (i, step)) in plan.into_iter().enumerate() {
                            let (h, s) = at[i];
                            let shard = &mut *held[slot(s)];
                            match step {
                                Step::Put(v, d) => {
                                    let key = keys[i].clone();
                                    match self.insert_with_room(
                                        s,
                                        shard,
                                        &env,
                                        h,
                                        key,
                                        v,
                                        0,
                                        d,
                                        &mut removed,
                                    ) {
                                        Ok(kind) => kinds.push(kind),
                                        Err(_) => {
                                            failed = true;
                                            break;
                                        }
                                    }
                                }
                                Step::Remove => {
                                    if let Some(((k, v), expired)) = shard.remove(&env, h, &keys[i])
                                    {
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
                        if failed {
                            kinds.clear();
                            let mut prior = prior;
                            let mut lost = Removed::new();
                            for &(i, n) in applied.iter().rev() {
                                let (h, s) = at[i];
                                let shard = &mut *held[slot(s)];
                                let prior = prior[n].take();
                                roll_back(shard, &env, h, &keys[i], prior, &mut removed, &mut lost);
                            }
                            // Of the notices about the batch's own keys, only
                            // the expired values it found stay: every other
                            // value of theirs is back, or was never seen.
                            let ours = |k: &K| applied.iter().any(|&(i, _)| keys[i] == *k);
                            removed.retain(|(k, _, cause)| {
                                *cause == RemovalCause::Expired || !ours(k)
                            });
                            removed.extend(lost);
                            Err(BatchFull)
                        } else {
                            ticket = self.append(record, undo);
                            Ok(r)
                        }
                    }
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
        let rejected = outcome.is_err();
        self.after_write(removed, None, rejected);
        outcome
    }

    /// The record that restores, in one step, every key `plan` writes, when
    /// the log keeps undo records. Call under the locks, before the writes.
    #[allow(clippy::too_many_arguments)]
    fn batch_undo(
        &self,
        held: &[crate::shard_lock::WriteGuard<'_, crate::shard::Shard<K, V>>],
        slot: &impl Fn(usize) -> usize,
        at: &[(u64, usize)],
        keys: &[K],
        idx: &[Option<u32>],
        plan: &[(usize, Step<V>)],
        env: &Env<'_, K, V, S>,
    ) -> Option<Vec<u8>> {
        let journal = self.journal().filter(|j| j.undoable())?;
        let parts = plan
            .iter()
            .map(|&(i, _)| match idx[i] {
                Some(ix) => {
                    let found = held[slot(at[i].1)].at(ix);
                    PartRef::Insert {
                        key: &keys[i],
                        value: found.value,
                        expires_at: found.deadline.map(|d| self.wall_ms(d, env.now())),
                    }
                }
                None => PartRef::Remove { key: &keys[i] },
            })
            .collect();
        journal.encode(RecordRef::Batch(parts)).ok()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Applies a batch's undo record without logging it, every key under
    /// the locks of all their shards at once (taken in ascending index, as a
    /// batch takes them), so readers see the batch whole or undone; returns
    /// the removals for the listener, counted as statistics count them.
    pub(crate) fn undo_batch(&self, parts: Vec<Part<K, V>>) -> Removed<K, V> {
        let wall = self.wall_clock_ms();
        let env = self.write_env(0);
        let at: Vec<(u64, usize)> = parts
            .iter()
            .map(|p| match p {
                Part::Insert { key, .. } | Part::Remove { key } => self.locate_key(key),
            })
            .collect();
        let mut order: Vec<usize> = at.iter().map(|&(_, s)| s).collect();
        order.sort_unstable();
        order.dedup();
        let slot = |s: usize| order.binary_search(&s).unwrap_or(0);
        let (mut removed, mut undone) = (Removed::new(), Removed::new());
        {
            let mut held: Vec<_> = order.iter().map(|&s| self.shard(s).write()).collect();
            for (part, (h, s)) in parts.into_iter().zip(at) {
                let shard = &mut *held[slot(s)];
                match part {
                    Part::Insert {
                        key,
                        value,
                        expires_at,
                    } if expires_at.is_none_or(|at| at > wall) => {
                        let deadline = expires_at
                            .map(|at| deadline_after(env.now(), Duration::from_millis(at - wall)));
                        let _ = shard.insert(&env, h, key, value, 0, deadline, &mut removed);
                    }
                    Part::Insert { key, .. } | Part::Remove { key } => {
                        // The refused value leaves: the listener hears of
                        // it, and no statistic counts it (its write was not
                        // counted).
                        if let Some(((k, v), _)) = shard.remove(&env, h, &key) {
                            undone.push((k, v, RemovalCause::Removed));
                        }
                    }
                }
            }
        }
        self.count_write(&removed, None, false);
        removed.extend(undone);
        removed
    }
}

/// Puts `key` back as it was before the batch (`prior`), in its locked
/// shard: the batch's value leaves unannounced (no one saw it). A prior
/// value the shard can no longer hold leaves as evicted.
fn roll_back<K, V, S>(
    shard: &mut crate::shard::Shard<K, V>,
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
        Some((value, deadline, hidden)) => {
            let back = shard.insert(
                env,
                hash,
                key.clone(),
                value,
                hidden,
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
