//! Persistence: an append-only log that lets a cache survive restarts.
//!
//! A [`WriteAheadLog`] stores opaque records; [`FileLog`] is the file
//! implementation. A cache built with
//! [`CacheBuilder::build_persistent`](crate::CacheBuilder::build_persistent)
//! first replays the log, then appends every write to it, in the order the
//! writes were applied to each key (records are appended while the key's
//! shard is locked).
//!
//! What is logged: inserts (with their absolute wall-clock expiry, Unix
//! milliseconds, so a TTL survives a restart and what expired while the
//! process was down is not loaded), removals, TTL changes and clears.
//! Evictions are not logged: after a restart the cache reloads what was
//! written and not removed, and evicts again if that exceeds its capacity.
//!
//! Log write failures never make the cache unusable: the write is applied in
//! memory, and the error is returned by the next [`Cache::sync`](crate::Cache::sync).
//!
//! The log is compacted by a rewrite ([`Cache::rewrite_log`](crate::Cache::rewrite_log),
//! and automatically as it grows): a snapshot of the live entries replaces it
//! atomically, and writes made meanwhile are carried over.

mod file;
mod frame;
mod storage;

pub use file::{
    FileLog, DEFAULT_REWRITE_MIN_SIZE, DEFAULT_REWRITE_PERCENTAGE, DEFAULT_WRITE_DELAY,
};
pub use frame::StopReason;
pub use storage::{FileRewrite, FileStorage, MemRewrite, MemStorage, RewriteTarget, Storage};

use crate::sync::Arc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// When the log is flushed to disk, as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// A write that returned is on disk. Concurrent writers share fsyncs.
    Always,
    /// Synced by a background thread once a second: a power failure loses at
    /// most about a second of writes; a process crash loses only what had not
    /// been handed to the OS yet, at most the log's write delay (10 ms by
    /// default, none with [`FileLog::write_delay`]`(Duration::ZERO)`).
    EverySecond,
    /// Left to the OS: a process crash loses what had not been handed to the
    /// OS yet (as for `EverySecond`), a power failure may lose whatever the
    /// OS had not written to disk.
    Never,
}

/// What to do when the log ends in a torn or corrupt record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorruptTail {
    /// Load the valid prefix and cut the rest (Redis's `aof-load-truncated yes`).
    Truncate,
    /// Refuse to load ([`PersistError::CorruptTail`]).
    Refuse,
}

/// A persistence failure; each names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// An I/O operation on the log failed.
    #[error("I/O error {op} {path}: {source}")]
    Io {
        /// What was being done ("appending to", "syncing", ...).
        op: &'static str,
        /// The log.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the log open.
    #[error("{path} is locked: another process has this log open")]
    Locked {
        /// The log.
        path: String,
    },
    /// The file does not start with a shardcache log header.
    #[error("{path} is not a shardcache log (bad magic bytes)")]
    NotALog {
        /// The file.
        path: String,
    },
    /// The log was written by another format version.
    #[error(
        "{path} has log format version {found}; this build reads version {}",
        frame::VERSION
    )]
    Version {
        /// The log.
        path: String,
        /// Its version.
        found: u32,
    },
    /// The log was written for other key/value types.
    #[error("{path} was written for other key/value types (fingerprint {found:#x}, expected {expected:#x})")]
    Fingerprint {
        /// The log.
        path: String,
        /// The fingerprint in the file.
        found: u64,
        /// This cache's fingerprint.
        expected: u64,
    },
    /// The log ends in a bad record and the policy is [`OnCorruptTail::Refuse`].
    #[error("{path} has a {reason} at byte {offset}")]
    CorruptTail {
        /// The log.
        path: String,
        /// Where the valid prefix ends.
        offset: u64,
        /// What is wrong there.
        reason: StopReason,
    },
    /// A record with a valid checksum did not decode as this cache's types.
    #[error("a log record did not decode: {0}")]
    Decode(String),
    /// A key or value could not be encoded.
    #[error("a key or value could not be encoded: {0}")]
    Encode(String),
    /// The cache's settings are invalid.
    #[error(transparent)]
    Build(#[from] crate::BuildError),
}

impl PersistError {
    pub(crate) fn io(op: &'static str, path: String, source: std::io::Error) -> Self {
        Self::Io { op, path, source }
    }
}

/// What loading a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Records replayed.
    pub records: u64,
    /// Inserts not loaded because their expiry had passed.
    pub expired: u64,
    /// Bytes cut from a torn or corrupt tail.
    pub bytes_discarded: u64,
    /// Where the valid prefix ended early, and why.
    pub stopped_at: Option<(u64, StopReason)>,
}

/// A log of opaque records. Implement it to keep a cache's writes somewhere
/// else; [`FileLog`] is the file implementation.
///
/// The contract: `append` stores a record after all earlier ones and returns
/// its sequence number (LSN, from 1); `wait(lsn)` returns once that record is
/// as durable as the log promises; `replay` calls `apply` with every record
/// in order (checking that the log belongs to `fingerprint`, or starting a
/// new one) and never panics on bad bytes.
pub trait WriteAheadLog: Send + Sync + 'static {
    /// Replays every record into `apply`; see the trait docs.
    ///
    /// # Errors
    ///
    /// Unreadable, foreign or (under a refusing policy) corrupt logs.
    fn replay(
        &self,
        fingerprint: u64,
        apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
    ) -> Result<RecoveryReport, PersistError>;

    /// Appends one record; returns its LSN. The log may buffer it:
    /// [`wait`](Self::wait) and [`sync`](Self::sync) make it durable.
    ///
    /// # Errors
    ///
    /// The log refused the record, or a write of buffered records failed
    /// (a [`FileLog`] keeps them buffered, in order, and retries them with
    /// its next write).
    fn append(&self, record: &[u8]) -> Result<u64, PersistError>;

    /// Waits until record `lsn` is durable under the log's policy.
    ///
    /// # Errors
    ///
    /// The sync failed.
    fn wait(&self, lsn: u64) -> Result<(), PersistError>;

    /// Makes everything appended so far durable, whatever the policy.
    ///
    /// # Errors
    ///
    /// The sync failed.
    fn sync(&self) -> Result<(), PersistError>;

    /// Bytes in the log.
    fn size(&self) -> u64;

    /// Replaces the log with a compact one: the records `snapshot` emits (one
    /// insert per live entry), then every record appended while it ran, so
    /// no write is lost. Appends go on during the rewrite. A crash at any
    /// point must leave a log that loads (the old one or the new one).
    ///
    /// # Errors
    ///
    /// The rewrite failed; the old log is still in use and complete.
    fn rewrite(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError>;

    /// Whether the log has grown enough that the cache should rewrite it
    /// (checked after each logged write; a rewrite then runs on a
    /// background thread). The default never asks.
    fn wants_rewrite(&self) -> bool {
        false
    }
}

/// What a rewrite calls to get the live state: it calls its argument (`emit`)
/// once per record.
pub type Snapshot<'a> =
    dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<(), PersistError>) -> Result<(), PersistError> + 'a;

/// One logged write. Encoded with postcard; `RecordRef` encodes the same bytes
/// from borrowed keys and values.
#[derive(Debug, Deserialize)]
pub(crate) enum Record<K, V> {
    Insert {
        key: K,
        value: V,
        expires_at: Option<u64>,
    },
    Remove {
        key: K,
    },
    Expire {
        key: K,
        expires_at: Option<u64>,
    },
    Clear,
}

#[derive(Serialize)]
pub(crate) enum RecordRef<'a, K, V> {
    Insert {
        key: &'a K,
        value: &'a V,
        expires_at: Option<u64>,
    },
    Remove {
        key: &'a K,
    },
    Expire {
        key: &'a K,
        expires_at: Option<u64>,
    },
    Clear,
}

impl<K: Serialize, V: Serialize> RecordRef<'_, K, V> {
    /// Appends the encoding to `out` (no allocation once `out` has room).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), PersistError> {
        *out = postcard::to_extend(self, std::mem::take(out))
            .map_err(|e| PersistError::Encode(e.to_string()))?;
        Ok(())
    }
}

impl<K: DeserializeOwned, V: DeserializeOwned> Record<K, V> {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, PersistError> {
        postcard::from_bytes(bytes).map_err(|e| PersistError::Decode(e.to_string()))
    }
}

/// A stable fingerprint of the key and value types (by name), so a log
/// written for other types is refused instead of misread.
pub(crate) fn fingerprint<K, V>() -> u64 {
    let names = format!(
        "{}\u{0}{}",
        std::any::type_name::<K>(),
        std::any::type_name::<V>()
    );
    let lo = crc32c::crc32c(names.as_bytes());
    let hi = crc32c::crc32c_append(0x5348_5244, names.as_bytes());
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The header a log for `K → V` starts with (for fuzzing and tests).
#[doc(hidden)]
pub fn header_for<K, V>() -> Vec<u8> {
    frame::header(fingerprint::<K, V>()).to_vec()
}

/// The cache's handle on its log: encodes records for its own types, and
/// starts background rewrites when the log asks for one.
pub(crate) trait Journal<K, V>: Send + Sync {
    fn encode(&self, record: RecordRef<'_, K, V>) -> Result<Vec<u8>, PersistError> {
        let mut out = Vec::new();
        self.encode_into(record, &mut out)?;
        Ok(out)
    }
    /// Appends `record`'s encoding to `out`.
    fn encode_into(
        &self,
        record: RecordRef<'_, K, V>,
        out: &mut Vec<u8>,
    ) -> Result<(), PersistError>;
    fn log(&self) -> &dyn WriteAheadLog;
    /// Called after each logged write.
    fn after_write(&self);
}

pub(crate) struct Journaled<L> {
    log: L,
    /// A background rewrite is running.
    rewriting: Arc<AtomicBool>,
    start_rewrite: Box<dyn Fn() + Send + Sync>,
}

impl<K: Serialize, V: Serialize, L: WriteAheadLog> Journal<K, V> for Journaled<L> {
    fn encode_into(
        &self,
        record: RecordRef<'_, K, V>,
        out: &mut Vec<u8>,
    ) -> Result<(), PersistError> {
        record.encode_into(out)
    }

    fn log(&self) -> &dyn WriteAheadLog {
        &self.log
    }

    fn after_write(&self) {
        if self.log.wants_rewrite() && !self.rewriting.swap(true, Ordering::AcqRel) {
            (self.start_rewrite)();
        }
    }
}

/// A closure that rewrites the cache's log on a background thread, holding
/// the cache only weakly until it runs.
fn background_rewriter<K, V, S>(
    cache: &crate::Cache<K, V, S>,
    rewriting: Arc<AtomicBool>,
) -> Box<dyn Fn() + Send + Sync>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
{
    let weak = Arc::downgrade(&cache.inner);
    Box::new(move || {
        let (weak, done) = (weak.clone(), rewriting.clone());
        let spawned = std::thread::Builder::new()
            .name("shardcache-rewrite".into())
            .spawn(move || {
                if let Some(inner) = weak.upgrade() {
                    let cache = crate::Cache { inner };
                    let result = cache.rewrite_log();
                    // A failure surfaces on the next `Cache::sync`.
                    cache.keep_error(result);
                }
                done.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            // No thread now; the next write asks again.
            rewriting.store(false, Ordering::Release);
        }
    })
}

impl<K, V, S> crate::CacheBuilder<K, V, S> {
    /// Builds the cache, replays `log` into it, and logs every write from
    /// then on. Inserts whose expiry passed while the process was down are
    /// not loaded.
    ///
    /// # Errors
    ///
    /// Invalid settings ([`PersistError::Build`]), or a log that cannot be
    /// read, belongs to other types, has another format version, or (under
    /// [`OnCorruptTail::Refuse`]) ends in a bad record.
    pub fn build_persistent<L: WriteAheadLog>(
        self,
        log: L,
    ) -> Result<(crate::Cache<K, V, S>, RecoveryReport), PersistError>
    where
        K: Serialize + DeserializeOwned + std::hash::Hash + Eq + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
    {
        let cache = self.build()?;
        let now = cache.wall_clock_ms();
        let ttl_from = |at: u64| std::time::Duration::from_millis(at - now);
        // Entries whose expiry (from their insert or a later `Expire`) has
        // passed, kept until the end of the log: a later `Expire` record (a
        // TTL extended or removed, e.g. a sliding session or PERSIST) may
        // bring them back.
        let mut lapsed: std::collections::HashMap<K, V> = std::collections::HashMap::new();
        let mut report = log.replay(fingerprint::<K, V>(), &mut |bytes| {
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
                    // A full noeviction cache keeps what it has; the rest is not loaded.
                    let _ = cache.try_insert_with_expiry(key, value, expires_at.map(ttl_from));
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
                    if let Some(value) = cache.remove(&key) {
                        lapsed.insert(key, value);
                    }
                }
                Record::Expire { key, expires_at } => match lapsed.remove(&key) {
                    Some(value) => {
                        let ttl = expires_at.map(ttl_from);
                        let _ = cache.try_insert_with_expiry(key, value, ttl);
                    }
                    None => {
                        cache.set_ttl(&key, expires_at.map(ttl_from));
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
        cache.reset_stats();
        let rewriting = Arc::new(AtomicBool::new(false));
        let journal: Arc<dyn Journal<K, V>> = Arc::new(Journaled {
            log,
            start_rewrite: background_rewriter(&cache, rewriting.clone()),
            rewriting,
        });
        // The cache was built just above, so the slot is empty.
        let _ = cache.inner.journal.set(journal);
        Ok((cache, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_and_owned_records_share_an_encoding() {
        let mut bytes = Vec::new();
        RecordRef::Insert {
            key: &"k".to_string(),
            value: &7u32,
            expires_at: Some(9),
        }
        .encode_into(&mut bytes)
        .expect("encode");
        match Record::<String, u32>::decode(&bytes).expect("decode") {
            Record::Insert {
                key,
                value,
                expires_at,
            } => assert_eq!((key.as_str(), value, expires_at), ("k", 7, Some(9))),
            other => panic!("decoded {other:?}"),
        }
        assert!(Record::<String, u32>::decode(&[0xFF, 0xFF]).is_err());
    }

    #[test]
    fn fingerprints_tell_types_apart() {
        assert_eq!(fingerprint::<String, u64>(), fingerprint::<String, u64>());
        assert_ne!(fingerprint::<String, u64>(), fingerprint::<String, u32>());
    }
}
