//! A persistent cache's start: the log is replayed into a new cache, the
//! admission summary restored beside it, and the journal attached.

use super::warm::WarmStart;
use crate::builder::CacheBuilder;
use crate::persist::journal::Journal;
use crate::persist::{LogIdentity, PersistError, Record, RecoveryReport, WriteAheadLog};
use serde::de::DeserializeOwned;
use serde::Serialize;

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
        let cache = self.build()?;
        let now = cache.wall_clock_ms();
        // Logged deadlines are stored ones: installed as they are, without
        // adding the refresh windows' grace again.
        let ttl_from = |at: u64| std::time::Duration::from_millis(at - now);
        let stored = |at: Option<u64>| {
            at.map_or(super::Expire::Never, |at| {
                super::Expire::Stored(ttl_from(at))
            })
        };
        // Entries whose expiry (from their insert or a later `Expire`) has
        // passed, kept until the end of the log: a later `Expire` record (a
        // TTL extended or removed, e.g. a sliding session or PERSIST) may
        // bring them back.
        let mut lapsed: std::collections::HashMap<K, V> = std::collections::HashMap::new();
        let has_sketch = cache.shard(0).read().admission_estimate(0).is_some();
        let accepted = identity.accepted();
        let mut warm = WarmStart::begin(&log, &accepted, cache.shard_count(), has_sketch);
        let fingerprint = identity.fingerprint;
        let mut report = log.replay_migrating(fingerprint, &identity.previous, &mut |bytes| {
            let estimate = warm.next(bytes);
            match Record::<K, V>::decode(bytes)? {
                Record::Insert {
                    key,
                    value,
                    expires_at: Some(at),
                } if at <= now => {
                    cache.remove(&key);
                    lapsed.insert(key, value);
                }
                Record::Insert {
                    key,
                    value,
                    expires_at,
                } => {
                    lapsed.remove(&key);
                    if let Some(e) = estimate {
                        warm.keep(cache.locate_key(&key), e);
                    }
                    // A full noeviction cache keeps what it has; the rest is not loaded.
                    let _ = cache.try_insert_inner(key, value, stored(expires_at));
                }
                Record::Remove { key } => {
                    lapsed.remove(&key);
                    cache.remove(&key);
                }
                Record::Expire {
                    key,
                    expires_at: Some(at),
                } if at <= now => {
                    // Lapsed too, unless a later record (PERSIST, a longer
                    // EXPIRE) lifts the deadline again.
                    if let Some(value) = cache.remove_as(&key, true) {
                        lapsed.insert(key, value);
                    }
                }
                Record::Expire { key, expires_at } => match lapsed.remove(&key) {
                    Some(value) => {
                        let _ = cache.try_insert_inner(key, value, stored(expires_at));
                    }
                    None => {
                        cache.set_deadline_of(&key, expires_at.map(ttl_from), true);
                    }
                },
                Record::Clear => {
                    lapsed.clear();
                    cache.clear();
                }
            }
            Ok(())
        })?;
        report.expired = lapsed.len() as u64;
        report.admission = warm.finish(&cache);
        cache.reset_stats();
        let journal = Journal::new(Box::new(log), fingerprint, |record, out| {
            record.encode_into(out)
        });
        cache.attach_journal(journal);
        Ok((cache, report))
    }
}
