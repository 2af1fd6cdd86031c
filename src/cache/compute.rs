//! Atomic read-modify-write of one entry: [`Cache::compute`].
//!
//! The closure runs under the key's shard write lock, so no other write to
//! that shard interleaves between reading the current value and applying the
//! decision. That is what Redis-style `INCR`, `SET NX`, `GETSET` or
//! `EXPIRE ... GT` need. Keep the closure short: it blocks the shard.

use super::Cache;
use crate::callback::Held;
use crate::compute::{Current, Decision, Slot, Splice, Ttl};
use crate::error::CapacityError;
use crate::listener::{RemovalCause, Removed};
use crate::persist::journal::Ticket;
use crate::persist::{RawBytes, RecordRef};
use crate::shard::LoadId;
use crate::weigher::Weight;
use std::hash::{BuildHasher, Hash};

/// What a [`compute_marked`](Cache::compute_marked) closure is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sees {
    /// Live entries only, as every write sees them.
    Live,
    /// Also an entry past its time to live that the refresh windows keep.
    Kept,
    /// Live entries, with [`Slot::patchable`] set where a `Put` is sure to
    /// apply (a splice, which may write in place).
    Patchable,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Reads the live entry for `key` (if any), decides, and applies the
    /// decision, atomically with respect to other writes.
    ///
    /// ```
    /// use shardcache::{Cache, Decision, Ttl};
    /// fn incr(c: &Cache<String, i64>, key: &str) -> Result<i64, shardcache::Error> {
    ///     Ok(c.compute(key.to_string(), |cur| {
    ///         let n = cur.map_or(0, |c| *c.value) + 1;
    ///         (Decision::Put(n, Ttl::Keep), n)
    ///     })?)
    /// }
    /// let cache = Cache::new(100);
    /// assert_eq!(incr(&cache, "hits")?, 1);
    /// assert_eq!(incr(&cache, "hits")?, 2);
    /// # Ok::<(), shardcache::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`CapacityError`] when the decision was `Put` and the value does not fit
    /// (the policy never evicts and the cache is full, or the entry alone
    /// weighs more than a shard may hold); nothing changed.
    ///
    /// # Panics
    ///
    /// The closure runs under the key's shard write lock and must not call
    /// this cache: a call that reaches the same shard would wait for the
    /// lock its own thread holds, so it panics instead (and nothing is
    /// applied). A call that reaches another shard waits for it, and one
    /// that asks for a key another thread is loading waits for that load;
    /// if such a wait would close a cycle (another thread's closure holds
    /// that shard and waits, directly or through others, for this one; or
    /// the load's loader waits, directly or through other loads, a log's
    /// rollback or its repair, for the shard this closure holds), the
    /// thread whose wait closes it panics (or, for a `sync` in the cycle,
    /// gets [`PersistError::InCallback`](crate::persist::PersistError::InCallback)),
    /// instead of deadlocking. `sync` and `rewrite_log` return
    /// [`PersistError::InCallback`](crate::persist::PersistError::InCallback)
    /// from the closure.
    pub fn compute<R>(
        &self,
        key: K,
        f: impl FnOnce(Option<Current<'_, V>>) -> (Decision<V>, R),
    ) -> Result<R, CapacityError<K, V>> {
        self.compute_slot(key, |slot| {
            let (decision, r) = f(slot.map(|s| Current {
                value: &*s.value,
                ttl: s.ttl,
            }));
            (decision, 0, r)
        })
    }

    /// [`compute`](Self::compute) for writers that reuse the current
    /// value's memory: the closure sees the value as a [`Slot`] (see its
    /// contract), and answers, beside the decision, the weight of a `Put`'s
    /// value that the weigher cannot see (`KvStore`: the spare capacity an
    /// `APPEND` keeps in the value's buffer), added to the weigher's answer
    /// for as long as the entry holds that value. Ignored under unit weights.
    ///
    /// # Errors
    ///
    /// As [`compute`](Self::compute).
    pub(crate) fn compute_slot<R>(
        &self,
        key: K,
        f: impl FnOnce(Option<Slot<'_, V>>) -> (Decision<V>, u64, R),
    ) -> Result<R, CapacityError<K, V>> {
        self.compute_marked(key, &mut None, Sees::Live, None, None, |slot, _| {
            let (decision, hidden, r) = f(slot);
            (decision, hidden, None, r)
        })
    }

    /// [`compute_slot`](Self::compute_slot) for writes of part of a value
    /// (`KvStore`'s `APPEND`, `SETRANGE`, `SETBIT`): with a `Put`, the
    /// closure may also answer the [`Splice`] it made (the value's expiry
    /// kept, `Ttl::Keep`), which a persistent cache logs in place of the
    /// whole value. Only a cache built with a
    /// [`Splicer`](crate::compute::Splicer) may answer one: recovery needs
    /// it to apply the record.
    ///
    /// # Errors
    ///
    /// As [`compute`](Self::compute).
    pub(crate) fn compute_spliced<'s, R>(
        &self,
        key: K,
        f: impl FnOnce(Option<Slot<'_, V>>) -> (Decision<V>, u64, Option<Splice<'s>>, R),
    ) -> Result<R, CapacityError<K, V>> {
        self.compute_marked(key, &mut None, Sees::Patchable, None, None, |slot, _| {
            f(slot)
        })
    }

    /// [`compute`](Self::compute) for a reload that stores through it: `load`
    /// (the load's mark) is ended under the shard's lock, `f` is also told
    /// whether a write to `key` overtook that load (see `shard/loads.rs`),
    /// and it sees an entry kept past its time to live for the refresh
    /// windows (the reload's value replaces it). The write's removals are
    /// counted and left in `later` for the caller to hand to the listener
    /// (`notify::deliver`).
    pub(super) fn compute_loaded<R>(
        &self,
        key: K,
        load: &mut Option<LoadId>,
        later: &mut Removed<K, V>,
        f: impl FnOnce(Option<Current<'_, V>>, bool) -> (Decision<V>, R),
    ) -> Result<R, CapacityError<K, V>> {
        self.compute_marked(
            key,
            load,
            Sees::Kept,
            None,
            Some(later),
            |slot, overtaken| {
                let current = slot.map(|s| Current {
                    value: &*s.value,
                    ttl: s.ttl,
                });
                let (decision, r) = f(current, overtaken);
                (decision, 0, None, r)
            },
        )
    }

    /// The body of [`compute_slot`](Self::compute_slot) and
    /// [`compute_loaded`](Self::compute_loaded): `f` sees the slot and
    /// whether a write overtook `load`; an entry past its time to live but
    /// kept for the refresh windows only if it [`Sees::Kept`] (otherwise it
    /// is expired, as every other view but a stale read has it), and a slot
    /// marked [`patchable`](Slot::patchable) only if it [`Sees::Patchable`].
    /// `now`, if given, is the
    /// clock's reading (taken by the caller just before) that the write uses.
    /// With `later`, the write's removals are counted and left there instead
    /// of handed to the listener.
    pub(super) fn compute_marked<'s, R>(
        &self,
        key: K,
        load: &mut Option<LoadId>,
        sees: Sees,
        now: Option<u64>,
        later: Option<&mut Removed<K, V>>,
        f: impl FnOnce(Option<Slot<'_, V>>, bool) -> (Decision<V>, u64, Option<Splice<'s>>, R),
    ) -> Result<R, CapacityError<K, V>> {
        let (hash, s) = self.locate_key(&key);
        let env = self.write_env(s);
        env.now_ms.set(now);
        let mut removed = Removed::new();
        let mut ticket = Ticket::None;
        // While the log is failed the closure still runs (so it can answer),
        // but a decision that changes the entry is refused.
        let mut refused = self.admit().err();
        let result = {
            let mut shard = self.shard(s).write();
            let overtaken = !super::may_store(&mut shard, load.take());
            let idx = shard
                .live_index(&env, hash, &key, &mut removed)
                .filter(|&i| sees == Sees::Kept || !shard.is_past_now(i, &env));
            let existing = idx.map(|i| shard.at(i).deadline);
            // A `Put` is sure to apply (see `Slot::patchable`) while the log
            // admits writes and keeps no undo record.
            let patchable = match (idx, &refused, self.journal()) {
                (Some(i), None, journal)
                    if sees == Sees::Patchable && !journal.is_some_and(|j| j.undoable()) =>
                {
                    let held = Held::of(&mut *shard);
                    let found = self.inner.weights.weigh(&key, shard.value_mut(i), 0, held);
                    Some(shard.weight_at(&env, i).saturating_sub(found))
                }
                _ => None,
            };
            let held = Held::of(&mut *shard);
            let current = idx.map(|i| Slot {
                ttl: existing
                    .flatten()
                    .map(|d| env.left_until(d.saturating_sub(env.grace))),
                value: shard.value_mut(i),
                patchable,
            });
            // A closure that panics leaves the entry as it was; the expired
            // entry the lookup removed is still notified first.
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::callback::under_shard_lock(held, || f(current, overtaken))
            }));
            let (decision, hidden, splice, r) = match called {
                Ok(answer) => answer,
                Err(payload) => {
                    drop(shard);
                    self.notify(removed);
                    std::panic::resume_unwind(payload);
                }
            };
            let deadline_for = |ttl: Ttl| match ttl {
                Ttl::Keep => existing.flatten(),
                Ttl::Never => None,
                Ttl::After(d) => self.stored_deadline(Some(env.deadline_after(d))),
            };
            let wall = |deadline: Option<u64>| deadline.map(|d| self.wall_ms(d));
            let decision = match refused {
                Some(_) => Decision::Nothing,
                None => decision,
            };
            let undo = match decision {
                Decision::Nothing => None,
                _ => self.undo_for(&shard, &env, hash, &key, Some(&key)),
            };
            match decision {
                Decision::Nothing => Ok((r, None)),
                Decision::Put(value, ttl) => {
                    let deadline = deadline_for(ttl);
                    debug_assert!(splice.is_none() || ttl == Ttl::Keep);
                    let record = self.encode(|| match &splice {
                        // A key with no live value was written from an
                        // empty one (`fresh`), as recovery must redo it.
                        Some(splice) => RecordRef::Splice {
                            key: &key,
                            offset: splice.offset,
                            bytes: RawBytes(&splice.bytes),
                            expires_at: wall(deadline),
                            fresh: existing.is_none(),
                        },
                        None => RecordRef::Insert {
                            key: &key,
                            value: &value,
                            expires_at: wall(deadline),
                        },
                    });
                    match record {
                        Err(e) => {
                            refused = Some(e);
                            Ok((r, None))
                        }
                        Ok(record) => {
                            let inserted = self.insert_with_room(
                                s,
                                &mut shard,
                                &env,
                                hash,
                                key,
                                value,
                                Weight::Hidden(hidden),
                                deadline,
                                &mut removed,
                            );
                            if inserted.is_ok() {
                                self.log_evicted(&removed);
                                ticket = self.append(record, undo);
                            }
                            inserted
                                .map(|kind| (r, Some(kind)))
                                .map_err(|(key, value)| CapacityError { key, value })
                        }
                    }
                }
                Decision::SetTtl(ttl) => {
                    let deadline = deadline_for(ttl);
                    if shard.set_expiry(&env, hash, &key, deadline) {
                        let expires_at = wall(deadline);
                        ticket = match self.encode(|| RecordRef::Expire {
                            key: &key,
                            expires_at,
                        }) {
                            Ok(record) => self.append(record, undo),
                            Err(e) => Ticket::Failed(e),
                        };
                    }
                    Ok((r, None))
                }
                Decision::Remove => {
                    if let Some(((k, v), expired)) = shard.remove(&env, hash, &key) {
                        ticket = match self.encode(|| RecordRef::Remove { key: &k }) {
                            Ok(record) => self.append(record, undo),
                            Err(e) => Ticket::Failed(e),
                        };
                        let cause = if expired {
                            RemovalCause::Expired
                        } else {
                            RemovalCause::Removed
                        };
                        removed.push((k, v, cause));
                    }
                    Ok((r, None))
                }
            }
        };
        if let Some(e) = refused {
            self.report(e);
        }
        let stands = self.settle_write(ticket, &mut removed);
        let kind = result
            .as_ref()
            .ok()
            .and_then(|(_, kind)| *kind)
            .filter(|_| stands);
        match later {
            None => self.after_write(removed, kind, result.is_err()),
            Some(later) => {
                self.count_write(&removed, kind, result.is_err());
                *later = removed;
            }
        }
        result.map(|(r, _)| r)
    }
}
