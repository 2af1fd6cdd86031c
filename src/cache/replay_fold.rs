//! A folded replay (see [`CacheBuilder::replay_folded`](crate::CacheBuilder)):
//! each key's records are folded into its final state, and only once the
//! log is read are the keys still held loaded into the cache, in the order
//! of their last write.
//!
//! A plain replay applies each record to the cache as it comes, so a full
//! cache evicts while it replays, in an order of its own (reads are not
//! logged, and the shards differ from one process to the next). For a log
//! that records every entry that leaves the cache, evictions included, that
//! is wrong: such a log says exactly which keys are live at its end. Its
//! eviction records follow the writes that made them (the session store
//! logs them from its eviction listener), so the log holds more live keys
//! than the capacity for a moment, and a plain replay would evict one of
//! them for good (the record that frees the room comes after). Folded, no
//! key is loaded that the log removes, and every key it keeps is.
//!
//! The fold holds every key the log has not removed until the end of the
//! log: for a log that records its evictions, about the capacity; for one
//! that did not (written before they were recorded), every key written
//! since the log's last rewrite. If more keys remain than the capacity
//! holds, the load evicts the oldest written, as a plain replay would.

use super::{Cache, Expire};
use crate::persist::{PersistError, Record};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// The final state of every key the log has not removed (so far).
pub(super) struct Folded<K, V> {
    keys: HashMap<K, Final<V>>,
    /// Inserts folded so far: the order of a key's last write.
    writes: u64,
}

/// A key's value and deadline as the records folded so far leave them.
struct Final<V> {
    /// When it was last written (see [`Folded::writes`]).
    order: u64,
    value: V,
    /// Its deadline, in wall-clock Unix milliseconds, as the log holds it.
    expires_at: Option<u64>,
}

impl<K: Hash + Eq, V> Folded<K, V> {
    pub(super) fn new() -> Self {
        Self {
            keys: HashMap::new(),
            writes: 0,
        }
    }

    /// Folds in the next record of the log.
    ///
    /// # Errors
    ///
    /// [`PersistError::Decode`] for a partial write (splice): a cache
    /// replayed folded takes none.
    pub(super) fn apply(&mut self, record: Record<K, V>) -> Result<(), PersistError> {
        match record {
            Record::Insert {
                key,
                value,
                expires_at,
            } => {
                self.writes += 1;
                let order = self.writes;
                self.keys.insert(
                    key,
                    Final {
                        order,
                        value,
                        expires_at,
                    },
                );
            }
            Record::Remove { key } => {
                self.keys.remove(&key);
            }
            // A deadline set, lifted or moved: a later one may bring back a
            // key whose earlier deadline has passed, as in a plain replay.
            Record::Expire { key, expires_at } => {
                if let Some(state) = self.keys.get_mut(&key) {
                    state.expires_at = expires_at;
                }
            }
            Record::Clear => self.keys.clear(),
            Record::Splice { .. } => {
                return Err(PersistError::Decode(
                    "a partial write (splice) in the log of a cache whose values take none"
                        .to_owned(),
                ))
            }
            Record::Batch(parts) => {
                for part in parts {
                    self.apply(Record::from(part))?;
                }
            }
        }
        Ok(())
    }

    /// Loads into `cache` the keys whose deadline is after `now` (wall-clock
    /// Unix milliseconds), oldest last write first, each with the expiry
    /// `stored` gives its deadline; returns how many keys had lapsed (their
    /// deadline passed: not loaded).
    pub(super) fn load<S>(
        self,
        cache: &Cache<K, V, S>,
        now: u64,
        stored: impl Fn(Option<u64>) -> Expire,
    ) -> u64
    where
        K: Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: BuildHasher + Clone + Send + Sync + 'static,
    {
        let held = self.keys.len();
        let mut live: Vec<(K, Final<V>)> = self
            .keys
            .into_iter()
            .filter(|(_, state)| state.expires_at.is_none_or(|at| at > now))
            .collect();
        let lapsed = held - live.len();
        live.sort_unstable_by_key(|(_, state)| state.order);
        for (key, state) in live {
            // A full noeviction cache keeps what it has; the rest is not loaded.
            let _ = cache.try_insert_inner(key, state.value, stored(state.expires_at));
        }
        lapsed as u64
    }
}

#[cfg(test)]
mod tests {
    use crate::persist::{FileLog, Fsync, MemStorage};
    use crate::{Cache, CacheBuilder, MockClock, Policy};
    use std::time::Duration;

    fn builder(clock: &MockClock, capacity: u64) -> CacheBuilder<String, u32> {
        Cache::builder()
            .max_capacity(capacity)
            .shared_capacity()
            .policy(Policy::lru())
            .clock(clock.clone())
            .replay_folded()
    }

    /// Each key ends as its last records leave it: removed, cleared,
    /// lapsed (counted), its deadline lifted again.
    #[test]
    fn a_folded_replay_loads_each_key_as_the_log_leaves_it() {
        let storage = MemStorage::new();
        let clock = MockClock::new();
        let open = || {
            let log = FileLog::with_storage(storage.clone(), Fsync::Always);
            builder(&clock, 100).build_persistent(log).expect("open")
        };
        let (cache, _) = open();
        cache.insert("z".into(), 0);
        cache.clear();
        cache.insert("a".into(), 1);
        cache.insert("b".into(), 2);
        cache.remove("b");
        cache.insert_with_ttl("c".into(), 3, Duration::from_secs(1));
        cache.insert_with_ttl("d".into(), 4, Duration::from_secs(1));
        assert!(cache.set_ttl("d", None));
        cache.sync().expect("healthy");
        drop(cache);
        clock.advance(Duration::from_secs(2));
        let (cache, report) = open();
        assert_eq!(report.expired, 1, "c lapsed");
        let mut keys: Vec<_> = cache.iter().map(|(k, v)| (k.clone(), v)).collect();
        keys.sort();
        assert_eq!(keys, [("a".to_string(), 1), ("d".to_string(), 4)]);
        assert_eq!(cache.ttl("d"), Some(None));
    }

    /// A removal logged after the write that needed its room (as the
    /// session store logs its evictions): the folded replay loads what the
    /// cache held, though the log held three keys for a moment.
    #[test]
    fn a_folded_replay_does_not_evict_for_a_moment_over_capacity() {
        for _ in 0..16 {
            let storage = MemStorage::new();
            let clock = MockClock::new();
            let open = || {
                let log = FileLog::with_storage(storage.clone(), Fsync::Always);
                builder(&clock, 2).build_persistent(log).expect("open")
            };
            let (cache, _) = open();
            cache.insert("a".into(), 1);
            cache.insert("b".into(), 2);
            let _ = cache.get("a");
            cache.insert("c".into(), 3);
            let gone = ["a", "b"].into_iter().find(|k| !cache.contains_key(*k));
            let gone = gone.expect("one of a and b was evicted");
            // Its removal, logged after the insert that evicted it.
            let logged = cache.log_gone(&gone.to_string());
            assert!(cache.settle_or_report(logged));
            let mut held: Vec<_> = cache.iter().map(|(k, _)| k.clone()).collect();
            held.sort();
            drop(cache);
            let (cache, _) = open();
            let mut loaded: Vec<_> = cache.iter().map(|(k, _)| k.clone()).collect();
            loaded.sort();
            assert_eq!(loaded, held);
        }
    }
}
