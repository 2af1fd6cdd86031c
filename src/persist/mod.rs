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
//! process was down is not loaded; deadlines convert to and from the log
//! through one wall-clock origin per cache, so each comes back on the
//! millisecond it was logged with, however long the replay takes),
//! removals, TTL changes and clears;
//! batches of inserts and removals made as one step (`KvStore`'s `MSET`,
//! `RENAME`...), one record each, so a batch replays whole or not at all;
//! and, for a [`KvStore`](crate::kv::KvStore), partial writes (`APPEND`,
//! `SETRANGE`, `SETBIT`) as the bytes written and their offset, so the log
//! grows by what a write wrote, not by the value's length (see
//! `docs/persistence.md`, "Partial writes").
//! Evictions are not logged: after a restart the cache reloads what was
//! written and not removed, and evicts again if that exceeds its capacity.
//!
//! # What a write that returned guarantees
//!
//! A persistent cache never acknowledges a write its log did not keep:
//!
//! - `Fsync::Always`: a write that returned without an error is on disk. If
//!   the log fails (a full disk, an I/O error, a failed fsync), the write is
//!   not applied, or is undone before its method returns, together with
//!   every other write the log had not made durable; its caller gets the
//!   error through [`Cache::durably`](crate::Cache::durably) (or
//!   [`Cache::sync`](crate::Cache::sync) if it used a method that cannot
//!   return one). The cache then holds exactly what the log can reproduce.
//! - `Fsync::EverySecond` and `Fsync::Never`: writes are acknowledged once
//!   buffered (see [`Fsync`] for what a crash can lose). A failure of the
//!   background write or fsync makes every later write fail the same way
//!   ([`PersistError::Refused`], Redis's `MISCONF`) until the log is repaired.
//!   These logs keep no undo records: the write whose append meets the
//!   failure stays in memory and its caller gets the error (as a Redis
//!   command whose AOF write fails has already run); the repair writes it
//!   to the new log, and a crash before the repair loses it.
//!
//! In every mode, a write whose record (key, value and expiry, encoded)
//! is over [`MAX_RECORD_LEN`] (1 GiB + 1 MiB) is refused
//! ([`PersistError::TooLarge`]) and not applied: a log frame holds at most
//! that much, and recovery reads a longer one as damage. While the log is failed reads go on and writes are
//! refused. A failed fsync is never retried (the OS may have dropped the
//! pages it could not write, and a second fsync would then succeed without
//! them): the log is repaired by rewriting it, into a new file, from the
//! cache's own state. [`Cache::sync`](crate::Cache::sync) repairs at once; a
//! refused write starts a repair at most once a second; writes resume when
//! one succeeds.
//!
//! # Loading
//!
//! The log is read in 1 MiB chunks, so opening it takes the memory of the
//! live data plus a chunk (or one record, if larger: at most
//! [`MAX_RECORD_LEN`], whatever a damaged length field claims), not of the
//! file. A
//! torn tail (damage in the last record, or zeros after it) is cut and
//! reported; damage followed by valid records is refused
//! ([`PersistError::Corrupt`]) rather than repaired by deleting them, unless
//! [`OnCorruption::SetAside`] asks to copy the file aside and load the part
//! before the damage. See `docs/persistence.md` for the measured figures.
//!
//! The log is compacted by a rewrite ([`Cache::rewrite_log`](crate::Cache::rewrite_log),
//! and automatically as it grows): a snapshot of the live entries replaces it
//! atomically, and writes made meanwhile are carried over.
//!
//! # Warm restart
//!
//! Each rewrite also saves, beside a [`FileLog`] (`<path>.admission`), a
//! summary of the TinyLFU policy's state for the snapshot's entries: the
//! segment each entry was in, its key's frequency estimate (which orders
//! the segment on restore), its hits not yet counted, and the adaptive
//! window's share. Opening the log restores it when it matches the log, so
//! a restarted cache evicts and admits as it did before the restart rather
//! than from a cold policy. A missing, damaged or mismatched summary is reported in
//! [`RecoveryReport::admission`] and the cache starts cold; it never stops
//! the log from loading. See `docs/persistence.md` for the format and the
//! measured hit ratios.

mod batch;
mod crc;
mod error;
mod file;
mod frame;
mod identity;
pub(crate) mod journal;
mod migrate;
mod recovery;
mod scan;
mod storage;
mod storage_file;
mod storage_mem;
mod summary;
mod summary_file;

pub(crate) use batch::{Part, PartRef};
pub use error::PersistError;
pub use file::{
    FileLog, DEFAULT_REWRITE_MIN_SIZE, DEFAULT_REWRITE_PERCENTAGE, DEFAULT_WRITE_DELAY,
};
pub use frame::StopReason;
pub(crate) use identity::{
    fingerprint, schema_fingerprint, type_path_fingerprint, LogIdentity, LogSchema,
};
pub use storage::{RewriteTarget, Storage};
pub use storage_file::{FileRewrite, FileStorage};
pub use storage_mem::{FaultOn, MemRewrite, MemStorage};
pub(crate) use summary::SummaryReader;
pub(crate) use summary::SummaryWriter;
pub use summary::{AdmissionRestore, SummaryError, SUMMARY_MAX_BYTES, SUMMARY_VERSION};

/// The largest record a log holds, in bytes (the encoded key, value and
/// expiry of one write): 1 GiB + 1 MiB, room for a key and a value of
/// 512 MiB each (Redis's `proto-max-bulk-len`, and
/// [`MAX_STRING_LEN`](crate::kv::MAX_STRING_LEN)) with their encoding. A
/// larger write is refused with [`PersistError::TooLarge`]; recovery reads
/// a frame claiming more as damage, so a damaged length field never makes
/// it read or allocate more than this.
pub const MAX_RECORD_LEN: usize = frame::MAX_PAYLOAD;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// When the log is flushed to disk, as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// A write that returned is on disk. Concurrent writers share fsyncs.
    Always,
    /// Synced by a background thread once a second: a power failure loses at
    /// most about a second of writes (more if the disk cannot keep up with
    /// the writes); a process crash loses only what had not been handed to
    /// the OS yet: records wait at most the log's write delay (10 ms by
    /// default) before a write hands them over, so a crash loses about that
    /// plus the time the OS takes to accept one write (measured under 2
    /// threads of load: at most 16.5 ms of writes with the default delay).
    /// [`FileLog::write_delay`]`(Duration::ZERO)` writes every record before
    /// the insert returns: a process crash then loses nothing.
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

/// What to do when a log is damaged inside, not just at its end: a bad
/// record followed by valid ones (see [`FileLog::on_corruption`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorruption {
    /// Refuse to load ([`PersistError::Corrupt`], naming the offset and what
    /// follows): loading would drop the records after the damage. The
    /// default, as Redis refuses an AOF damaged in the middle.
    Refuse,
    /// Copy the whole file aside, untouched (`<path>.damaged-<unix ms>`,
    /// named in [`RecoveryReport::set_aside`]), then load the records before
    /// the damage and cut the rest from the log.
    SetAside,
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
    /// Bytes of zero fill (space the file was grown by ahead of the log)
    /// cut after the last record: not damage, and nothing was lost.
    pub zero_fill: u64,
    /// The file was shorter than a header and held the start of one (a
    /// crash while the log was being created): it was started afresh, empty.
    pub torn_header: bool,
    /// Where a log damaged inside was copied before its good part was
    /// loaded (under [`OnCorruption::SetAside`]).
    pub set_aside: Option<String>,
    /// Whether the TinyLFU admission state was restored from the summary
    /// saved with the last rewrite, or why the cache started cold.
    pub admission: AdmissionRestore,
    /// The fingerprint the log's header carried when it was opened under a
    /// declared log schema ([`CacheBuilder::log_schema`](crate::CacheBuilder::log_schema))
    /// without carrying the schema's yet (a log written before the schema
    /// was declared): the header was replaced by the schema's before the
    /// log was opened. `None` when the header already matched.
    pub migrated_from: Option<u64>,
    /// Keys whose partial writes (a [`KvStore`](crate::kv::KvStore)'s
    /// `APPEND`, `SETRANGE` or `SETBIT`, logged as the bytes written) found
    /// no value to apply to, and that no later whole write of the key
    /// settled: their value had been evicted, during the load (a cache
    /// loads no more than it holds) or while a rewrite whose snapshot no
    /// longer held it carried the writes over (evictions are not logged),
    /// or the log lost the records that wrote it. They are left absent; no value is made up for the bytes
    /// the writes did not cover.
    pub orphan_splices: u64,
    /// Records whose logged deadline lies further ahead than the reopened
    /// cache can hold: deadlines reach about 34.8 years past a cache's
    /// start ([`MAX_EXPIRE_MS`](crate::kv::MAX_EXPIRE_MS)), so a deadline
    /// logged near that limit is out of reach of a cache whose clock reads
    /// earlier than the one that logged it (a wall clock set back, another
    /// machine). Their keys come back with the farthest deadline the cache
    /// holds instead; every other deadline comes back exactly.
    pub deadlines_capped: u64,
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

    /// Replays as [`replay`](Self::replay), and also accepts a log whose
    /// header carries one of `previous`: the fingerprints the same data was
    /// logged under before a log schema was declared for it. Such a log's
    /// header must be replaced by `fingerprint` before this returns, as a
    /// crash-safe step (a crash leaves the old header or the new one, and
    /// every record), and reported in [`RecoveryReport::migrated_from`].
    /// Later rewrites write `fingerprint`.
    ///
    /// The default calls `replay` and so refuses those logs
    /// ([`PersistError::Fingerprint`]): a log that keeps a header overrides
    /// it, as [`FileLog`] does.
    ///
    /// # Errors
    ///
    /// As `replay`, or the header could not be replaced (the log is
    /// unchanged, or carries the new header; either opens again).
    fn replay_migrating(
        &self,
        fingerprint: u64,
        previous: &[u64],
        apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
    ) -> Result<RecoveryReport, PersistError> {
        let _ = previous;
        self.replay(fingerprint, apply)
    }

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
    /// This is the rewrite that repairs a failed log: it runs whatever
    /// [`health`](Self::health) says, and once it succeeds the log takes
    /// records again. The cache calls it only after undoing every write the
    /// log did not keep; for compaction it calls [`compact`](Self::compact).
    ///
    /// # Errors
    ///
    /// The rewrite failed; the old log is still in use and complete.
    fn rewrite(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError>;

    /// A rewrite that only compacts, and never repairs: as
    /// [`rewrite`](Self::rewrite), but refused while the log is failed, and
    /// failing (leaving the old log and its failure in place) if the log
    /// fails before it swaps. A compaction's snapshot may be taken while the
    /// cache still holds writes the failure cost (they are undone after the
    /// failure, not at it), so a compaction that replaced a failed log could
    /// bring refused writes back.
    ///
    /// The check and the start of carrying appends over must be one step: a
    /// failure between a separate check and that start would be cleared by
    /// the swap. The default checks [`health`](Self::health) and then calls
    /// `rewrite`, with that gap between them: it suits a log that never
    /// fails. A log with a failed state overrides it, as [`FileLog`] does.
    ///
    /// # Errors
    ///
    /// The log is failed or failed meanwhile, or the rewrite failed; the old
    /// log is still in use, complete, and as failed as it was.
    fn compact(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError> {
        self.health()?;
        self.rewrite(snapshot)
    }

    /// Whether the log has grown enough that the cache should rewrite it
    /// (checked after each logged write; a rewrite then runs on a
    /// background thread). The default never asks.
    fn wants_rewrite(&self) -> bool {
        false
    }

    /// The highest LSN known durable under the log's policy (records up to
    /// it survive a crash). A cache undoes in memory the writes after it
    /// when the log fails.
    fn durable_lsn(&self) -> u64;

    /// Whether [`wait`](Self::wait) returns only once a record is durable
    /// (as `Fsync::Always`). A cache then applies a write only for as long
    /// as the log may still keep it: if the log fails, the write is undone
    /// and its caller gets the error. Logs that buffer (`false`) report
    /// failures to later writes instead, which are refused until the log is
    /// repaired. The default is `true`.
    fn waits_for_disk(&self) -> bool {
        true
    }

    /// `Err` while the log has failed and takes no records (until a
    /// successful [`rewrite`](Self::rewrite)). The default is always `Ok`.
    ///
    /// # Errors
    ///
    /// The failure that stopped the log.
    fn health(&self) -> Result<(), PersistError> {
        Ok(())
    }

    /// Takes the failure the log met on its own, with no caller to tell
    /// (a background write or fsync that stopped it), for the cache's next
    /// [`sync`](crate::Cache::sync) to report. The default has none.
    fn take_unreported(&self) -> Option<PersistError> {
        None
    }

    /// A name for error messages (a path). The default is `"log"`.
    fn describe(&self) -> String {
        "log".to_owned()
    }

    /// Replaces the admission summary kept beside the log (the cache calls
    /// it after each successful [`rewrite`](Self::rewrite), with the TinyLFU
    /// estimates of the snapshot's keys). It must replace the previous one
    /// atomically. The default keeps none.
    ///
    /// # Errors
    ///
    /// The summary could not be stored (the log itself is unaffected; the
    /// previous summary, if kept, no longer matches the log and is ignored
    /// at the next open).
    fn save_summary(&self, summary: &[u8]) -> Result<(), PersistError> {
        let _ = summary;
        Ok(())
    }

    /// The admission summary kept beside the log, if any, refusing one longer
    /// than `limit` bytes. The default keeps none.
    ///
    /// # Errors
    ///
    /// It could not be read, or is longer than `limit`.
    fn load_summary(&self, limit: u64) -> Result<Option<Vec<u8>>, PersistError> {
        let _ = limit;
        Ok(None)
    }
}

/// Which rewrite the cache asks for: the two differ in whether they may end
/// a failure of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RewriteKind {
    /// A compaction ([`WriteAheadLog::compact`]): refused on a failed log.
    Compaction,
    /// A repair ([`WriteAheadLog::rewrite`]), run after the rollback of
    /// every write the failed log did not keep.
    Repair,
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
    /// A partial write (`APPEND`, `SETRANGE`, `SETBIT` on a `KvStore`):
    /// `bytes` written at `offset` of the key's value, zero-padded first if
    /// it is shorter, the key's expiry (`expires_at`) kept. `fresh`: the key
    /// held no live value, so the write started from an empty one. Only a
    /// cache built with a [`Splicer`](crate::compute::Splicer) writes and
    /// replays them. Last, so that logs written before it decode unchanged.
    Splice {
        key: K,
        offset: u64,
        bytes: bytes::Bytes,
        expires_at: Option<u64>,
        fresh: bool,
    },
    /// Several writes applied as one step (see `persist/batch.rs`).
    Batch(Vec<Part<K, V>>),
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
    Splice {
        key: &'a K,
        offset: u64,
        bytes: RawBytes<'a>,
        expires_at: Option<u64>,
        fresh: bool,
    },
    Batch(Vec<PartRef<'a, K, V>>),
}

/// Bytes encoded as postcard encodes a `Bytes` (a length, then the bytes),
/// written at once rather than one element at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawBytes<'a>(pub(crate) &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<K: Serialize, V: Serialize> RecordRef<'_, K, V> {
    /// Appends the encoding to `out` (no allocation once `out` has room).
    /// A record over [`MAX_RECORD_LEN`] is refused (and `out` left as it
    /// was): recovery reads a longer frame as damage.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), PersistError> {
        let start = out.len();
        *out = postcard::to_extend(self, std::mem::take(out))
            .map_err(|e| PersistError::Encode(e.to_string()))?;
        let bytes = out.len() - start;
        if bytes > MAX_RECORD_LEN {
            out.truncate(start);
            return Err(PersistError::TooLarge {
                bytes,
                limit: MAX_RECORD_LEN,
            });
        }
        Ok(())
    }
}

impl<K: DeserializeOwned, V: DeserializeOwned> Record<K, V> {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, PersistError> {
        postcard::from_bytes(bytes).map_err(|e| PersistError::Decode(e.to_string()))
    }
}

/// The header a log for `K → V` starts with (for fuzzing and tests).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn header_for<K, V>() -> Vec<u8> {
    frame::header(fingerprint::<K, V>()).to_vec()
}

/// The header a log of the log schema `name` starts with (for fuzzing).
#[cfg(feature = "fuzzing")]
pub(crate) fn header_of_schema(name: &str) -> Vec<u8> {
    frame::header(schema_fingerprint(name)).to_vec()
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
    fn a_splice_round_trips_and_leaves_the_older_variants_as_they_were() {
        let mut bytes = Vec::new();
        let key = "k".to_string();
        let record: RecordRef<'_, String, u32> = RecordRef::Splice {
            key: &key,
            offset: 512 << 20,
            bytes: RawBytes(b"xyz"),
            expires_at: None,
            fresh: true,
        };
        record.encode_into(&mut bytes).expect("encode");
        // Variant 4, "k", offset as a varint, the bytes, no expiry, fresh.
        assert_eq!(
            bytes,
            [4, 1, b'k', 0x80, 0x80, 0x80, 0x80, 0x02, 3, b'x', b'y', b'z', 0, 1]
        );
        match Record::<String, u32>::decode(&bytes).expect("decode") {
            Record::Splice {
                key,
                offset,
                bytes,
                expires_at,
                fresh,
            } => assert_eq!(
                (key.as_str(), offset, &bytes[..], expires_at, fresh),
                ("k", 512 << 20, &b"xyz"[..], None, true)
            ),
            other => panic!("decoded {other:?}"),
        }
        // The variants a 0.1 log holds keep their tags.
        let mut clear = Vec::new();
        let record: RecordRef<'_, String, u32> = RecordRef::Clear;
        record.encode_into(&mut clear).expect("encode");
        assert_eq!(clear, [3]);
    }
}
