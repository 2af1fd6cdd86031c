//! A persistent cache's start: the log is replayed into a new cache, the
//! admission summary restored beside it, and the journal attached.
//!
//! # Partial writes
//!
//! A splice record (`Record::Splice`, a `KvStore`'s `APPEND`, `SETRANGE`
//! or `SETBIT`) is applied, by the builder's [`Splicer`], to the value
//! recovery holds for its key so far: the loaded one, or one kept aside
//! because its expiry passed (see `lapsed`). A `fresh` splice (the key had
//! no live value when it was written) starts from an empty value whatever
//! recovery holds, as the write did.
//!
//! A splice for a key recovery holds no value for is skipped (and one
//! whose expiry has passed is not counted below: its key lapsed). A valid log
//! has one when the value was evicted during the replay (it is not
//! loaded), and after a rewrite that ran while the key was written: the
//! rewrite's snapshot may be newer than records it carries over, and a
//! later record of the key (the one the snapshot saw) settles it, unless
//! the key was evicted before the snapshot (evictions are not logged). Keys
//! that no later whole write (an insert, a removal, a clear, a fresh
//! splice) settles stay absent, and are counted in
//! [`RecoveryReport::orphan_splices`]: nothing is made up for the bytes the
//! splice did not write. Replaying a rewritten log's carried-over splices
//! onto its snapshot is safe because a splice overwrites bytes at a fixed
//! offset: the snapshot already holds the result of those the snapshot
//! saw, and writing them again changes nothing.
//!
//! A splice no cache could have written (past the longest value) is
//! damage: the open fails with [`PersistError::Decode`], as for a record
//! that does not decode. So is a splice in the log of a cache without a
//! splicer (one whose values are not byte strings).
//!
//! # Folded replays
//!
//! A cache built with `replay_folded` (the session store's, whose log
//! records every entry that leaves it) folds each key's records into its
//! final state before it loads any key: see `replay_fold.rs`.

use super::remove::NewDeadline;
use super::replay_fold::Folded;
use super::warm::WarmStart;
use super::{Cache, Expire};
use crate::builder::CacheBuilder;
use crate::compute::{Slot, Splicer};
use crate::persist::journal::Journal;
use crate::persist::{LogIdentity, PersistError, Record, RecoveryReport, WriteAheadLog};
use crate::policy::node::meta::DEADLINE_MAX;
use crate::{CapacityError, Decision, Ttl};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

impl<K, V, S> CacheBuilder<K, V, S> {
    /// Builds the cache, replays `log` into it, and logs every write from
    /// then on. Inserts whose expiry passed while the process was down are
    /// not loaded.
    ///
    /// A write the log cannot keep is not applied (or is undone), and its
    /// error goes to the [`Cache::durably`](crate::Cache::durably) scope
    /// around it, or to the next [`Cache::sync`](crate::Cache::sync).
    /// [`open_persistent`](Self::open_persistent) returns a handle whose
    /// every write method returns the error itself.
    ///
    /// # Errors
    ///
    /// Invalid settings ([`PersistError::Build`]), or a log that cannot be
    /// read, belongs to other types or another
    /// [`log_schema`](Self::log_schema) ([`PersistError::Fingerprint`]),
    /// has another format version, or (under
    /// [`OnCorruptTail::Refuse`](crate::persist::OnCorruptTail::Refuse)) ends in a bad record.
    pub fn build_persistent<L: WriteAheadLog>(
        self,
        log: L,
    ) -> Result<(crate::cache::Cache<K, V, S>, RecoveryReport), PersistError>
    where
        K: Serialize + DeserializeOwned + std::hash::Hash + Eq + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
    {
        let identity = LogIdentity::of::<K, V>(self.log_schema.as_ref());
        let splicer = self.splicer.clone();
        // See `replay_fold.rs`.
        let mut folded = self.replay_folded.then(Folded::new);
        let cache = self.build()?;
        // Deadlines convert through the cache's wall-clock origin, all from
        // one reading: a deadline lands on the millisecond it was logged
        // with, however long the replay takes.
        let clock = cache.clock_reading();
        let now = clock.wall_ms();
        // Logged deadlines are stored ones: installed as they are, without
        // adding the refresh windows' grace again.
        let capped = std::cell::Cell::new(0u64);
        let tick_of = |at: u64| {
            let tick = clock.tick_of(at);
            if tick > DEADLINE_MAX {
                capped.set(capped.get() + 1);
            }
            tick
        };
        let stored = |at: Option<u64>| at.map_or(Expire::Never, |at| Expire::StoredAt(tick_of(at)));
        let mut aside = Aside {
            lapsed: HashMap::new(),
            orphans: HashSet::new(),
        };
        let has_sketch = cache.shard(0).read().admission_estimate(0).is_some();
        let accepted = identity.accepted();
        let mut warm = WarmStart::begin(&log, &accepted, cache.shard_count(), has_sketch);
        let fingerprint = identity.fingerprint;
        let mut report = log.replay_migrating(fingerprint, &identity.previous, &mut |bytes| {
            let estimate = warm.next(bytes);
            // A batch replays as its parts, in order; its frame's checksum
            // made it whole or left it out.
            for record in Record::<K, V>::decode(bytes)?.into_parts() {
                if let Some(folded) = folded.as_mut() {
                    if let (Some(e), Record::Insert { key, .. }) = (estimate, &record) {
                        warm.keep(cache.locate_key(key), e);
                    }
                    folded.apply(record)?;
                    continue;
                }
                match record {
                    Record::Insert {
                        key,
                        value,
                        expires_at: Some(at),
                    } if at <= now => {
                        cache.remove(&key);
                        aside.orphans.remove(&key);
                        aside.lapsed.insert(key, value);
                    }
                    Record::Insert {
                        key,
                        value,
                        expires_at,
                    } => {
                        aside.forget(&key);
                        if let Some(e) = estimate {
                            warm.keep(cache.locate_key(&key), e);
                        }
                        // A full noeviction cache keeps what it has; the rest is not loaded.
                        let _ = cache.try_insert_inner(key, value, stored(expires_at));
                    }
                    Record::Remove { key } => {
                        aside.forget(&key);
                        cache.remove(&key);
                    }
                    Record::Expire {
                        key,
                        expires_at: Some(at),
                    } if at <= now => {
                        // Lapsed too, unless a later record (PERSIST, a longer
                        // EXPIRE) lifts the deadline again.
                        if let Some(value) = cache.remove_as(&key, true) {
                            aside.lapsed.insert(key, value);
                        }
                    }
                    Record::Expire { key, expires_at } => match aside.lapsed.remove(&key) {
                        Some(value) => {
                            let _ = cache.try_insert_inner(key, value, stored(expires_at));
                        }
                        None => {
                            cache.set_deadline_of(
                                &key,
                                NewDeadline::Stored(expires_at.map(tick_of)),
                            );
                        }
                    },
                    Record::Clear => {
                        aside.lapsed.clear();
                        aside.orphans.clear();
                        cache.clear();
                    }
                    Record::Splice {
                        key,
                        offset,
                        bytes,
                        expires_at,
                        fresh,
                    } => {
                        let splicer = splicer.as_deref().ok_or_else(|| {
                            PersistError::Decode(
                            "a partial write (splice) in the log of a cache whose values take none"
                                .to_owned(),
                        )
                        })?;
                        let lapses = expires_at.is_some_and(|at| at <= now);
                        let splice = Spliced {
                            offset,
                            bytes: &bytes,
                            lapses,
                            stored: if lapses {
                                Expire::Never
                            } else {
                                stored(expires_at)
                            },
                        };
                        aside.splice(&cache, splicer, key, fresh, &splice)?;
                    }
                    // `into_parts` hands a batch over as its parts.
                    Record::Batch(_) => {}
                }
            }
            Ok(())
        })?;
        report.expired = match folded {
            Some(folded) => folded.load(&cache, now, stored),
            None => aside.lapsed.len() as u64,
        };
        report.orphan_splices = aside.orphans.len() as u64;
        report.deadlines_capped = capped.get();
        report.admission = warm.finish(&cache);
        cache.reset_stats();
        let journal = Journal::new(Box::new(log), fingerprint, |record, out| {
            record.encode_into(out)
        });
        cache.attach_journal(journal);
        Ok((cache, report))
    }
}

/// What recovery holds outside the cache while it replays.
struct Aside<K, V> {
    /// Entries whose expiry (from their insert or a later `Expire`) has
    /// passed, kept until the end of the log: a later `Expire` record (a
    /// TTL extended or removed, e.g. a sliding session or PERSIST) may
    /// bring them back.
    lapsed: HashMap<K, V>,
    /// Keys a splice found no value for, and no later whole write settled
    /// (see the module docs).
    orphans: HashSet<K>,
}

/// A splice record's write, as recovery applies it.
struct Spliced<'a> {
    offset: u64,
    bytes: &'a [u8],
    /// Its key's expiry had passed when the log was opened.
    lapses: bool,
    /// Its key's expiry, as the cache stores it.
    stored: Expire,
}

impl<K: Hash + Eq, V> Aside<K, V> {
    /// A whole write of `key` (an insert or a removal) settled it.
    fn forget(&mut self, key: &K) {
        self.lapsed.remove(key);
        self.orphans.remove(key);
    }

    /// Applies a splice of `key` (see the module docs).
    fn splice<S>(
        &mut self,
        cache: &Cache<K, V, S>,
        splicer: &dyn Splicer<K, V>,
        key: K,
        fresh: bool,
        w: &Spliced<'_>,
    ) -> Result<(), PersistError>
    where
        K: Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: BuildHasher + Clone + Send + Sync + 'static,
    {
        let damaged = || {
            PersistError::Decode(format!(
                "a partial write of {} bytes at offset {} goes past the longest value",
                w.bytes.len(),
                w.offset
            ))
        };
        if fresh {
            self.forget(&key);
            cache.remove(&key);
        }
        // A value outside the cache (lapsed, or lapsing with this write):
        // spliced exactly, since an insert counts no spare capacity.
        let outside = if fresh {
            None
        } else {
            self.lapsed
                .remove(&key)
                .or_else(|| w.lapses.then(|| cache.remove_as(&key, true)).flatten())
        };
        if outside.is_some() || w.lapses {
            let mut outside = outside;
            if outside.is_none() && !fresh {
                // No value, and the key's expiry has passed: it lapsed
                // (before a rewrite's snapshot that carries this splice
                // over, say). Nothing to apply, nothing lost.
                return Ok(());
            }
            let slot = outside.as_mut().map(|value| Slot {
                value,
                ttl: None,
                patchable: None,
            });
            let (value, _) = splicer
                .splice(slot, w.offset, w.bytes, 0)
                .ok_or_else(damaged)?;
            if w.lapses {
                self.lapsed.insert(key, value);
            } else {
                let _ = cache.try_insert_inner(key, value, w.stored);
            }
            return Ok(());
        }
        if !fresh && !cache.contains_key(&key) {
            self.orphans.insert(key);
            return Ok(());
        }
        // In the cache: spliced in place as the write was, with room to
        // grow (then, if that does not fit, without).
        let mut impossible = false;
        let mut attempt = |key: K, room: usize| {
            cache.compute_slot(key, |cur| {
                if cur.is_none() && !fresh {
                    // Expired while the log loaded: no value is made up.
                    return (Decision::Nothing, 0, ());
                }
                match splicer.splice(cur, w.offset, w.bytes, room) {
                    Some((value, hidden)) => (Decision::Put(value, Ttl::Keep), hidden, ()),
                    None => {
                        impossible = true;
                        (Decision::Nothing, 0, ())
                    }
                }
            })
        };
        let room = splicer.room(&key);
        let result = match attempt(key, room) {
            // The spliced value, again without spare capacity: the splicer
            // may have taken the stored one, so the refused value is the
            // one to store (writing the same bytes again changes nothing).
            Err(CapacityError { key, mut value }) => cache.compute_slot(key, |_| {
                let slot = Slot {
                    value: &mut value,
                    ttl: None,
                    patchable: None,
                };
                match splicer.splice(Some(slot), w.offset, w.bytes, 0) {
                    Some((value, hidden)) => (Decision::Put(value, Ttl::Keep), hidden, ()),
                    None => (Decision::Nothing, 0, ()),
                }
            }),
            done => done,
        };
        if impossible {
            return Err(damaged());
        }
        if let Err(CapacityError { key, .. }) = result {
            // A full noeviction cache keeps what it has: the key, whose
            // value cannot be kept whole, is not loaded.
            cache.remove(&key);
            self.orphans.insert(key);
        }
        Ok(())
    }
}
