//! The cache's side of persistence: how a write reaches the journal, how a
//! failed log's writes are undone, and the durable-write API
//! ([`Cache::durably`], [`Cache::sync`], [`Cache::rewrite_log`]).
//!
//! Every logged write follows the same steps: encode its record (before the
//! shard lock), ask the journal to admit it, and under the shard lock build
//! its undo record, apply it and append the record; then, with the lock
//! released, settle the append (wait for durability). A failure at any step
//! leaves the write unapplied (or undone) and is reported to the caller's
//! [`Cache::durably`] scope, or kept for [`Cache::sync`].

use crate::cache::{Cache, Inner, ShardLock};
use crate::clock::Millis;
use crate::hash::hash_of;
use crate::listener::{RemovalCause, Removed};
use crate::persist::journal::{self, Hooks, Journal, Ticket};
use crate::persist::{PersistError, Record, RecordRef, RewriteKind, SummaryWriter};
use crate::shard::{Env, LazyNow, Shard};
use crate::sync::Arc;
use crate::waits::Cycle;
use crate::weigher::Weight;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Weak;

/// Slab slots a log rewrite reads per hold of a shard's read lock.
const REWRITE_CHUNK: usize = 1024;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Connects `journal` to this cache (once, right after replay).
    pub(crate) fn attach_journal(&self, journal: Journal<K, V>)
    where
        K: DeserializeOwned + Serialize,
        V: DeserializeOwned + Serialize,
    {
        journal.set_hooks(Box::new(CacheHooks {
            cache: Arc::downgrade(&self.inner),
            source: self.log_source(),
        }));
        let _ = self.inner.journal.set(Arc::new(journal));
    }

    pub(crate) fn journal(&self) -> Option<&Arc<Journal<K, V>>> {
        self.inner.journal.get()
    }

    /// Whether a write may proceed: always without a log; while the log is
    /// failed, refused.
    pub(crate) fn admit(&self) -> Result<(), PersistError> {
        self.journal().map_or(Ok(()), |j| j.admit())
    }

    /// The record for a write (`None` without a log).
    pub(crate) fn encode<'a>(
        &self,
        record: impl FnOnce() -> RecordRef<'a, K, V>,
    ) -> Result<Option<Vec<u8>>, PersistError>
    where
        K: 'a,
        V: 'a,
    {
        self.journal().map(|j| j.encode(record())).transpose()
    }

    /// The record that restores `key`'s current state in `shard`, when the
    /// log needs undo records. Call under the shard's write lock, before the
    /// write. `owned` names the key when it is not in the shard.
    pub(crate) fn undo_for<Q>(
        &self,
        shard: &Shard<K, V>,
        env: &Env<'_, K, V, S>,
        hash: u64,
        key: &Q,
        owned: Option<&K>,
    ) -> Option<Vec<u8>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let journal = self.journal().filter(|j| j.undoable())?;
        let now = LazyNow::new(|| env.reading());
        let tti = self.tti();
        let record = match (shard.key_of(hash, key), shard.peek(hash, key, &now, tti)) {
            (Some(k), Some(found)) => RecordRef::Insert {
                key: k,
                value: found.value,
                expires_at: found.deadline.map(|d| self.wall_ms(d)),
            },
            (Some(k), None) => RecordRef::Remove { key: k },
            (None, _) => RecordRef::Remove { key: owned? },
        };
        journal.encode(record).ok()
    }

    /// Appends a write's record (call under the key's shard lock, after
    /// applying the write).
    pub(crate) fn append(&self, record: Option<Vec<u8>>, undo: Option<Vec<u8>>) -> Ticket {
        match self.journal() {
            Some(j) => j.append(record, undo),
            None => Ticket::None,
        }
    }

    /// Waits (with no shard locked) until an append is durable as the log
    /// promises; on failure the write has been undone.
    pub(crate) fn settle(&self, ticket: Ticket) -> Result<(), PersistError> {
        match self.journal() {
            Some(j) => j.wait(ticket),
            None => Ok(()),
        }
    }

    /// Tells the caller's [`durably`](Self::durably) scope (or the next
    /// [`sync`](Self::sync)) that a write was refused or undone.
    pub(crate) fn report(&self, e: PersistError) {
        if let Some(j) = self.journal() {
            j.report(e);
        }
    }

    /// Settles `ticket` and reports a failure; whether the write stands.
    pub(crate) fn settle_or_report(&self, ticket: Ticket) -> bool {
        match self.settle(ticket) {
            Ok(()) => true,
            Err(e) => {
                self.report(e);
                false
            }
        }
    }

    /// Settles a write's `ticket` and reports a failure. A write the log
    /// failed to keep, under a log that keeps undo records, was undone:
    /// the key's previous value is back, so its notice (replaced, or
    /// removed by a `compute`) is taken out of `removed`; the evictions
    /// the write made stand. Returns whether the write stands (false when
    /// it was undone), for the caller to count it or not.
    pub(crate) fn settle_write(&self, ticket: Ticket, removed: &mut Removed<K, V>) -> bool {
        let undone = !self.settle_or_report(ticket) && self.journal().is_some_and(|j| j.undoable());
        if undone {
            removed.retain(|(_, _, cause)| {
                !matches!(cause, RemovalCause::Replaced | RemovalCause::Removed)
            });
        }
        !undone
    }

    /// Runs `writes` and reports whether the log kept every write they made
    /// on this thread through this cache (or any clone of it).
    ///
    /// On a persistent cache, a write that the log could not keep is not
    /// applied, or is undone before its method returns, with one exception:
    /// under a buffering log (`Fsync::EverySecond` or `Never`, which keep no
    /// undo records), the write whose append meets the failure stays in
    /// memory, as a Redis command whose AOF write fails has already run; the
    /// repair that ends the failure writes it to the new log, and a crash
    /// before that repair loses it. A write method that cannot return the
    /// error itself (`insert`, `remove`, `compute`...) hands it to the
    /// innermost `durably` around it, or, outside one, keeps it for the next
    /// [`sync`](Self::sync). With `Fsync::Always`, `Ok` means
    /// every write made in `writes` is on disk; with a log that buffers, that
    /// every write was accepted (see the log's loss bound). Without a log,
    /// always `Ok`.
    ///
    /// ```
    /// use shardcache::persist::{Fsync, MemStorage, FileLog};
    /// use shardcache::Cache;
    /// let storage = MemStorage::new();
    /// let log = FileLog::with_storage(storage.clone(), Fsync::Always);
    /// let (cache, _) = Cache::<String, u32>::builder().max_capacity(100).build_persistent(log)?;
    /// cache.durably(|| cache.insert("kept".into(), 1))?;
    ///
    /// storage.fail_after(0); // the disk fails
    /// assert!(cache.durably(|| cache.insert("lost".into(), 2)).is_err());
    /// assert_eq!(cache.get("lost"), None); // not applied
    /// assert_eq!(cache.get("kept"), Some(1)); // reads go on
    ///
    /// storage.heal(); // the disk works again
    /// let _ = cache.sync(); // repairs the log (and reports the failure once)
    /// cache.durably(|| cache.insert("again".into(), 3))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The first failure of a write in `writes`: a
    /// [`PersistError::Refused`] while the log is failed, or the I/O error
    /// that made it fail.
    #[must_use = "an Err means a write was not kept"]
    pub fn durably<R>(&self, writes: impl FnOnce() -> R) -> Result<R, PersistError> {
        match self.journal() {
            None => Ok(writes()),
            Some(j) => match journal::scope(j, writes) {
                (r, None) => Ok(r),
                (_, Some(e)) => Err(e),
            },
        }
    }

    /// Makes every logged write durable, repairs a failed log (by rewriting
    /// it from the cache), and reports the first log failure since the last
    /// call that no caller was told of (a write outside
    /// [`durably`](Self::durably), or a background write, fsync or rewrite).
    /// Without a log, does nothing.
    ///
    /// # Errors
    ///
    /// That failure (the log has then been repaired if it could be), a
    /// failed repair, or a failed sync; [`PersistError::InCallback`] from
    /// an eviction listener told of a write being undone after the log
    /// failed (the repair would wait for that undo), or from code a cache
    /// (this one or another) runs under a shard's lock (a `compute`
    /// closure, a `retain` predicate, a weigher, an expiry rule).
    /// Also [`PersistError::InCallback`] where the repair's waits would
    /// close a cycle with this thread's: from a loader whose load the
    /// repair running on another thread waits for (through a rollback's
    /// listener, or a `compute` closure holding a shard the repair reads),
    /// or when the repair itself would wait for a shard held by code that
    /// waits for this thread. The repair is then not done (the log stays
    /// failed, undo records not yet applied stay for the next rollback);
    /// call `sync` again once that code has returned.
    pub fn sync(&self) -> Result<(), PersistError> {
        self.journal().map_or(Ok(()), |j| j.sync())
    }

    /// Rewrites (compacts) the cache's log now, as Redis's `BGREWRITEAOF`:
    /// the log is replaced by one insert per live entry, written from a
    /// snapshot taken one shard at a time while writes go on (writes made
    /// during the rewrite are carried over, none is lost). A log built with
    /// [`FileLog`](crate::persist::FileLog) is also rewritten automatically,
    /// on a background thread, once it has grown enough (see
    /// [`FileLog::rewrite_policy`](crate::persist::FileLog::rewrite_policy)).
    /// Without a log, does nothing.
    ///
    /// # Errors
    ///
    /// The rewrite failed; the old log stays in use, complete. Refused
    /// while the log is failed, and ([`PersistError::InCallback`]) from an
    /// eviction listener told of a write being undone or from code a
    /// cache runs under a shard's lock, as [`sync`](Self::sync) is, or
    /// where its read of a shard, or its wait for another rewrite of the
    /// log, would close a cycle of waits (this thread leads a load that
    /// the shard's holder, or that rewrite, waits for).
    pub fn rewrite_log(&self) -> Result<(), PersistError> {
        self.rewrite_log_as(RewriteKind::Compaction)
    }

    /// [`rewrite_log`](Self::rewrite_log) as `kind`: the journal's repair
    /// asks for [`RewriteKind::Repair`], everything else compacts.
    fn rewrite_log_as(&self, kind: RewriteKind) -> Result<(), PersistError> {
        match self.journal() {
            Some(journal) => self.log_source().rewrite(journal, kind),
            None => Ok(()),
        }
    }

    /// Applies an undo record without logging it; returns its removals for
    /// the listener, counted as statistics count them.
    ///
    /// # Errors
    ///
    /// [`Cycle`] (nothing applied) if the wait for the key's shard would
    /// close a cycle of waits: the rollback gives the record back.
    fn apply_undo(&self, record: Record<K, V>) -> Result<Removed<K, V>, Cycle> {
        let clock = self.clock_reading();
        let wall = clock.wall_ms();
        let (key, value, expires_at) = match record {
            Record::Insert {
                key,
                value,
                expires_at,
            } => (key, Some(value), expires_at),
            Record::Remove { key } | Record::Expire { key, .. } => (key, None, None),
            // Never an undo record: `undo_for` restores a spliced value
            // whole (an insert of the value before the write).
            Record::Clear | Record::Splice { .. } => return Ok(Removed::new()),
            Record::Batch(parts) => return Ok(self.undo_batch(parts)),
        };
        let (hash, s) = self.locate_key(&key);
        let env = self.write_env(s);
        let mut removed = Removed::new();
        let mut shard = self.shard(s).write_or_cycle()?;
        match value {
            Some(value) if expires_at.is_none_or(|at| at > wall) => {
                let deadline = expires_at.map(|at| clock.tick_of(at));
                let _ = shard.insert(
                    &env,
                    hash,
                    key,
                    value,
                    Weight::Hidden(0),
                    deadline,
                    &mut removed,
                );
            }
            _ => {
                // The refused value leaves: the listener hears of it, and
                // no statistic counts it (its insert was not counted).
                if let Some(((k, v), _)) = shard.remove(&env, hash, &key) {
                    removed.push((k, v, RemovalCause::Removed));
                }
                return Ok(removed);
            }
        }
        drop(shard);
        self.count_write(&removed, None, false);
        Ok(removed)
    }
}

/// What a rewrite of the log reads: the cache's shards, and what places and
/// dates their entries. Held apart from the cache, so a rewrite running on a
/// background thread does not keep a dropped cache alive: the drop of its
/// last handle stops the rewrite and waits for it (see [`Inner`]'s `Drop`).
pub(crate) struct LogSource<K, V, S> {
    pub(crate) shards: Arc<[ShardLock<K, V>]>,
    pub(crate) hasher: S,
    pub(crate) tti: Option<u64>,
    pub(crate) clock: Millis,
}

impl<K, V, S> LogSource<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Rewrites `journal`'s log as `kind` from the live entries. A rewrite
    /// whose cache is being dropped stops at its next chunk, before it
    /// replaces the log: the log in use is untouched and holds every write.
    pub(crate) fn rewrite(
        &self,
        journal: &Journal<K, V>,
        kind: RewriteKind,
    ) -> Result<(), PersistError> {
        // One chunk's records, encoded back to back, where each ends, and
        // its key's admission estimate (none without a sketch).
        let (mut bytes, mut ends, mut estimates) = (Vec::new(), Vec::new(), Vec::new());
        let mut summary = None;
        // A read that would close a cycle of waits (this thread leads a
        // load, a rollback or a repair that the shard's holder waits for)
        // fails the rewrite instead.
        let call = match kind {
            RewriteKind::Repair => "sync",
            RewriteKind::Compaction => "rewrite_log",
        };
        let cycle = |_| journal.cycle_error(call);
        journal.rewrite(kind, &mut |emit| {
            let keeps_sketch = self.shards[0]
                .read_or_cycle()
                .map_err(cycle)?
                .admission_estimate(0)
                .is_some();
            summary = keeps_sketch.then(SummaryWriter::default);
            for shard in self.shards.iter() {
                // A shard is read in chunks of slots, each encoded under the
                // read lock (no clones) and written after it, so writers to
                // the shard wait for one chunk at most, not the whole shard.
                // Entries changed between chunks are in the log's tail, which
                // the rewrite appends after the snapshot.
                let mut next = Some(0);
                while let Some(start) = next {
                    if journal.closing() {
                        return Err(journal.closed_error());
                    }
                    bytes.clear();
                    ends.clear();
                    estimates.clear();
                    let clock = self.clock.reading();
                    let now_ms = clock.tick;
                    let now = LazyNow::new(|| (now_ms, false));
                    let mut failed = None;
                    let shard = shard.read_or_cycle().map_err(cycle)?;
                    next = shard.for_each_live_from(
                        start,
                        REWRITE_CHUNK,
                        &now,
                        self.tti,
                        |key, value, deadline| {
                            let record = RecordRef::Insert {
                                key,
                                value,
                                expires_at: deadline.map(|d| clock.wall_ms_of(d)),
                            };
                            match journal.encode_into(record, &mut bytes) {
                                Ok(()) => {
                                    ends.push(bytes.len());
                                    if keeps_sketch {
                                        let hash = hash_of(&self.hasher, key);
                                        estimates.push(shard.admission_entry_of(hash, key));
                                    }
                                }
                                Err(e) => failed = failed.take().or(Some(e)),
                            }
                        },
                    );
                    drop(shard);
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    let mut from = 0;
                    for (i, &end) in ends.iter().enumerate() {
                        emit(&bytes[from..end])?;
                        if let Some(w) = summary.as_mut() {
                            let saved = estimates.get(i).copied().flatten();
                            w.record(&bytes[from..end], saved.unwrap_or_default());
                        }
                        from = end;
                    }
                }
            }
            // A drop during the last chunk stops the rewrite before its swap.
            if journal.closing() {
                return Err(journal.closed_error());
            }
            Ok(())
        })?;
        if let Some(mut w) = summary {
            w.window = self.window_share();
            // The log is rewritten whatever becomes of its summary: one that
            // cannot be saved leaves the previous one, which no longer
            // matches the log and is ignored (and reported) at the next open.
            let _ = journal.save_summary(&w.finish(journal.fingerprint()));
        }
        Ok(())
    }

    /// The adaptive window's share averaged over the shards (saved with a
    /// log rewrite); `None` when the policy has no adaptive window.
    fn window_share(&self) -> Option<f64> {
        let shares: Vec<f64> = self
            .shards
            .iter()
            .filter_map(|s| s.read_or_cycle().ok()?.window_share())
            .collect();
        (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64)
    }
}

/// The drop of the cache's last handle (or of the last internal one, such as
/// a background reload's) ends a background rewrite of its log before the
/// log closes: the rewrite holds the journal, not the cache, so the log
/// would otherwise stay open (and locked) until the rewrite ended. The
/// thread dropping the cache holds none of the cache's locks (each is
/// taken through a handle), so the rewrite it waits for can always end.
impl<K, V, S> Drop for Inner<K, V, S> {
    fn drop(&mut self) {
        if let Some(journal) = self.journal.get() {
            journal.close();
        }
    }
}

/// The journal's way back to its cache: the cache held weakly (to undo a
/// write), and what its rewrites read.
struct CacheHooks<K, V, S> {
    cache: Weak<Inner<K, V, S>>,
    source: LogSource<K, V, S>,
}

impl<K, V, S> Hooks<K, V> for CacheHooks<K, V, S>
where
    K: DeserializeOwned + Hash + Eq + Send + Sync + 'static,
    V: DeserializeOwned + Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    fn rewrite(&self, journal: &Journal<K, V>, kind: RewriteKind) -> Result<(), PersistError> {
        self.source.rewrite(journal, kind)
    }

    /// Applies the undo, then tells the listener with the cache let go of,
    /// so that a drop of its last handle meanwhile closes the log at once.
    fn undo(&self, record: &[u8]) -> Result<(), Cycle> {
        let Ok(record) = Record::decode(record) else {
            return Ok(());
        };
        let undone = self.cache.upgrade().map(|inner| {
            let cache = Cache { inner };
            cache
                .apply_undo(record)
                .map(|removed| (cache.listener(), removed))
        });
        if let Some((Some(listener), removed)) = undone.transpose()? {
            crate::cache::deliver(&listener, removed);
        }
        Ok(())
    }
}
