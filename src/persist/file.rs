//! [`FileLog`]: the append-only log, with group commit.

use super::frame;
use super::migrate::migrate;
use super::recovery;

#[path = "file_buffer.rs"]
mod buffer;
#[path = "file_commit.rs"]
mod commit;
#[path = "file_rewrite.rs"]
mod rewrite;
use super::storage::Storage;
use super::storage_file::FileStorage;
use super::{
    Fsync, OnCorruptTail, OnCorruption, PersistError, RecoveryReport, RewriteKind, Snapshot,
    WriteAheadLog,
};
use crate::sync::{Arc, AtomicU64, Condvar, Mutex, Ordering};
use commit::spawn_flusher;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// An append-only log of framed records on a [`Storage`] (a locked file by
/// default), like Redis's AOF.
///
/// Appends go to a buffer in memory, in log order, and are handed to the
/// storage in batches: one `write` for many records instead of a system call
/// per record, which is what makes a log affordable on every insert.
///
/// Durability follows [`Fsync`]:
///
/// - `Always`: `wait(lsn)` returns only once the record is on disk. This is
///   group commit: the first waiter writes everything buffered so far and
///   fsyncs once; writers that appended meanwhile find their record covered
///   or lead the next round, and appending never waits behind an fsync.
/// - `EverySecond` and `Never`: a background thread hands the buffer to the
///   OS every [`write_delay`](Self::write_delay) (10 ms by default) and, for
///   `EverySecond`, fsyncs once a second; under load, appends hand the
///   buffer over themselves once its oldest record has waited the delay. A
///   process crash loses about the records of the last `write_delay` plus
///   one write's time (measured: at most 16.5 ms with the default delay and
///   2 threads of load; nothing with a zero delay, which writes each record
///   before `append` returns); a power failure at most about the last second
///   (`EverySecond`). [`sync`](WriteAheadLog::sync) and dropping
///   the log write everything out.
///
/// A failed write or fsync stops the log: it takes no records (each append
/// is an error, and [`health`](WriteAheadLog::health) says why) until a
/// rewrite replaces it with a complete snapshot, in a new file. A failed
/// fsync is never retried: the OS may have dropped the pages it could not
/// write, so a second fsync could succeed without them. Under
/// `Fsync::Always` the records since the last good fsync were refused to
/// their writers, so they are cut from the file (back to the length the
/// last good fsync covered); if even that fails, whether they are on disk is
/// unknown, and the error says so. Under `EverySecond` and `Never` the
/// buffered records are dropped from the log: the cache still holds them,
/// and its repair (the rewrite) logs them again.
///
/// ```
/// use shardcache::persist::{FileLog, Fsync};
/// use shardcache::Cache;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("cache.log");
/// {
///     let log = FileLog::open(&path, Fsync::Always)?;
///     let (cache, _report) = Cache::<String, u64>::builder().max_capacity(100).build_persistent(log)?;
///     cache.insert("answer".into(), 42);
/// }
/// let log = FileLog::open(&path, Fsync::Always)?;
/// let (cache, report) = Cache::<String, u64>::builder().max_capacity(100).build_persistent(log)?;
/// assert_eq!(cache.get("answer"), Some(42));
/// assert_eq!(report.records, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileLog<S: Storage = FileStorage> {
    /// The background writer (`EverySecond`, `Never`); stopped on drop,
    /// before `inner` drops.
    flusher: Option<commit::Flusher>,
    inner: Arc<LogInner<S>>,
}

impl<S: Storage> Drop for FileLog<S> {
    fn drop(&mut self) {
        // The flusher upgrades its weak reference while it works: stopped
        // first, it cannot be the one left holding the log, so the log is
        // written out and its file lock released here, before `drop`
        // returns (a reopen right after sees no lock).
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
    }
}

struct LogInner<S: Storage> {
    storage: S,
    name: String,
    fsync: Fsync,
    /// Settings, atomics so the builder methods work after the EverySecond
    /// flusher (which holds a weak reference) has started.
    refuse_corrupt: AtomicBool,
    /// [`OnCorruption::SetAside`].
    set_aside: AtomicBool,
    /// The last LSN, the records not yet handed to the storage, and the
    /// appends a running rewrite must carry over; the mutex orders appends.
    appended: Mutex<Appended>,
    /// Held while handing the buffer to the storage, so batches reach it in
    /// LSN order. Lock order: `rewrite_lock`, then `writer`, then `appended`.
    writer: Mutex<Writer>,
    synced: AtomicU64,
    /// `appended.failed` is set (read without the lock by `health`).
    stopped: AtomicBool,
    /// The group commit: whether a leader is writing and syncing, and what
    /// the last round saw. Followers wait on `synced_cv` instead of queueing
    /// for a lock, so each wakes as soon as its record is covered.
    rounds: Mutex<Rounds>,
    synced_cv: Condvar,
    /// How long a record may wait in the buffer (EverySecond, Never), in µs.
    write_delay_us: AtomicU64,
    bytes: AtomicU64,
    /// The log's size after it was opened or last rewritten.
    base: AtomicU64,
    /// The type fingerprint (from `replay`), for a rewrite's header.
    fingerprint: AtomicU64,
    rewrite_lock: Mutex<()>,
    growth_percent: AtomicU64,
    min_rewrite_size: AtomicU64,
    /// The failure the background writer met, until `take_unreported`.
    unreported: Mutex<Option<PersistError>>,
}

struct Appended {
    lsn: u64,
    /// Framed records not yet handed to the storage, in LSN order.
    buf: Vec<u8>,
    /// While a rewrite runs: every record appended since it started.
    tail: Option<Vec<u8>>,
    /// Why the log stopped (a write or fsync failed): appends fail until a
    /// rewrite replaces the log.
    failed: Option<String>,
    /// When the oldest record in `buf` was appended.
    since: Option<std::time::Instant>,
}

struct Writer {
    /// The storage's length after the last good write, to undo a partial one.
    good_len: u64,
    /// The storage's length the last good fsync covered.
    synced_len: u64,
    /// Which bytes the lengths are of: a new value at every open and
    /// rewrite, so that an fsync that began before a rewrite swapped the
    /// bytes does not set the replacement's `synced_len` from the old
    /// bytes' length.
    generation: u64,
    /// The buffer being written (swapped with `Appended::buf`, so both keep
    /// their allocations, up to [`buffer::KEEP`]).
    spare: Vec<u8>,
}

/// What the last group commit saw, to size the next one.
struct Rounds {
    /// A leader is writing and syncing.
    leading: bool,
    /// Records the last fsync covered: about one per writer waiting on it.
    batch: u64,
    /// How long that fsync took.
    fsync: Duration,
}

/// The most writers a group commit leader waits for.
const MAX_GATHER: u64 = 64;

/// The buffer size at which an append hands the buffer over itself instead
/// of leaving it to the background thread.
const WRITE_AT: usize = 1 << 20;
/// How often (in appends) an append checks the age of the buffer.
const AGE_CHECK_EVERY: u64 = 16;
/// The default [`FileLog::write_delay`].
pub const DEFAULT_WRITE_DELAY: Duration = Duration::from_millis(10);

/// The default `rewrite_percentage`, as Redis's `auto-aof-rewrite-percentage`.
pub const DEFAULT_REWRITE_PERCENTAGE: u64 = 100;
/// The default `rewrite_min_size` (64 MiB), as Redis's `auto-aof-rewrite-min-size`.
pub const DEFAULT_REWRITE_MIN_SIZE: u64 = 64 << 20;

impl FileLog<FileStorage> {
    /// Opens (or creates) the log at `path` and locks it.
    ///
    /// # Errors
    ///
    /// [`PersistError::Locked`] if another process has it open, or
    /// [`PersistError::Io`] naming the path.
    pub fn open(path: impl AsRef<Path>, fsync: Fsync) -> Result<Self, PersistError> {
        let path = path.as_ref();
        let storage = FileStorage::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => PersistError::Locked {
                path: path.display().to_string(),
            },
            _ => PersistError::io("opening", path.display().to_string(), e),
        })?;
        Ok(Self::with_storage(storage, fsync))
    }
}

impl<S: Storage> FileLog<S> {
    /// A log over any [`Storage`] (tests use [`MemStorage`](super::MemStorage)).
    pub fn with_storage(storage: S, fsync: Fsync) -> Self {
        let name = storage.describe();
        let inner = Arc::new(LogInner {
            storage,
            name,
            fsync,
            refuse_corrupt: AtomicBool::new(false),
            set_aside: AtomicBool::new(false),
            appended: Mutex::new(Appended {
                lsn: 0,
                buf: Vec::new(),
                tail: None,
                failed: None,
                since: None,
            }),
            writer: Mutex::new(Writer {
                good_len: 0,
                synced_len: 0,
                generation: 0,
                spare: Vec::new(),
            }),
            synced: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            rounds: Mutex::new(Rounds {
                leading: false,
                batch: 0,
                fsync: Duration::ZERO,
            }),
            synced_cv: Condvar::new(),
            write_delay_us: AtomicU64::new(DEFAULT_WRITE_DELAY.as_micros() as u64),
            bytes: AtomicU64::new(0),
            base: AtomicU64::new(0),
            fingerprint: AtomicU64::new(0),
            rewrite_lock: Mutex::new(()),
            growth_percent: AtomicU64::new(DEFAULT_REWRITE_PERCENTAGE),
            min_rewrite_size: AtomicU64::new(DEFAULT_REWRITE_MIN_SIZE),
            unreported: Mutex::new(None),
        });
        let flusher = if fsync == Fsync::Always {
            None
        } else {
            spawn_flusher(Arc::downgrade(&inner))
        };
        Self { flusher, inner }
    }

    /// How long an appended record may wait in memory before an
    /// `EverySecond` or `Never` log hands it to the OS (default 10 ms): the
    /// most a process crash can lose. `Duration::ZERO` writes every record
    /// before `append` returns, so a process crash loses nothing appended, at
    /// the cost of one system call per record. `Always` ignores it (a write
    /// that returned is on disk).
    ///
    /// ```
    /// use shardcache::persist::{FileLog, Fsync};
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let log = FileLog::open(dir.path().join("c.log"), Fsync::EverySecond)?
    ///     .write_delay(Duration::ZERO);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_delay(self, delay: Duration) -> Self {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner.write_delay_us.store(us, Ordering::Relaxed);
        self
    }

    /// What to do with a torn or corrupt tail at load: truncate it (the
    /// default, like `aof-load-truncated yes`) or refuse to load.
    pub fn on_corrupt_tail(self, policy: OnCorruptTail) -> Self {
        self.inner
            .refuse_corrupt
            .store(policy == OnCorruptTail::Refuse, Ordering::Relaxed);
        self
    }

    /// What to do with a log damaged inside (a bad record followed by valid
    /// ones) at load: refuse (the default) or set the file aside and load
    /// what precedes the damage. A torn tail is governed by
    /// [`on_corrupt_tail`](Self::on_corrupt_tail).
    ///
    /// ```
    /// use shardcache::persist::{FileLog, Fsync, OnCorruption};
    /// let dir = tempfile::tempdir()?;
    /// let log = FileLog::open(dir.path().join("c.log"), Fsync::Always)?
    ///     .on_corruption(OnCorruption::SetAside);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_corruption(self, policy: OnCorruption) -> Self {
        self.inner
            .set_aside
            .store(policy == OnCorruption::SetAside, Ordering::Relaxed);
        self
    }

    /// When a cache on this log rewrites it by itself, as Redis's
    /// `auto-aof-rewrite-percentage` and `auto-aof-rewrite-min-size`: once
    /// the log has grown by `percentage` % over its size after the last
    /// rewrite (or at open) and is over `min_size` bytes. A percentage of 0
    /// turns automatic rewrites off. Defaults: 100 % and 64 MiB. Dropping
    /// the cache ends a rewrite running in the background before the drop
    /// returns (the log stays complete), so the path opens again at once.
    pub fn rewrite_policy(self, percentage: u64, min_size: u64) -> Self {
        let inner = &self.inner;
        inner.growth_percent.store(percentage, Ordering::Relaxed);
        inner.min_rewrite_size.store(min_size, Ordering::Relaxed);
        self
    }
}

impl<S: Storage> LogInner<S> {
    fn io(&self, op: &'static str, e: io::Error) -> PersistError {
        PersistError::io(op, self.name.clone(), e)
    }

    /// Hands every buffered record to the storage; returns the last LSN
    /// now written, the storage's length after it and the
    /// [`generation`](Writer::generation) that length is of. A failure
    /// stops the log (see [`stop`](Self::stop)).
    fn write_out(&self) -> Result<(u64, u64, u64), PersistError> {
        let mut writer = self.writer.lock();
        let writer = &mut *writer;
        let lsn = {
            let mut appended = self.appended.lock();
            if let Some(cause) = &appended.failed {
                return Err(self.stopped_error(cause));
            }
            std::mem::swap(&mut appended.buf, &mut writer.spare);
            appended.since = None;
            appended.lsn
        };
        if writer.spare.is_empty() {
            return Ok((lsn, writer.good_len, writer.generation));
        }
        let result = self.storage.append(&writer.spare);
        let written = writer.spare.len() as u64;
        buffer::empty(&mut writer.spare);
        match result {
            Ok(()) => {
                writer.good_len += written;
                Ok((lsn, writer.good_len, writer.generation))
            }
            Err(e) => Err(self.stop(writer, "appending to", e)),
        }
    }

    /// Stops the log after a failed write or fsync: drops the buffered
    /// records, abandons a running rewrite's carry-over, and cuts the
    /// storage back to what can be trusted (under `Always`, to the last good
    /// fsync: those records were refused to their writers). Returns the
    /// error for the caller, saying whether the cut worked.
    fn stop(&self, writer: &mut Writer, op: &'static str, e: io::Error) -> PersistError {
        let keep = match self.fsync {
            Fsync::Always => writer.synced_len,
            // Written records were acknowledged; only a partial write goes.
            Fsync::EverySecond | Fsync::Never => writer.good_len,
        };
        let cut = self.storage.truncate(keep);
        if cut.is_ok() {
            writer.good_len = keep;
        }
        let outcome = match (&cut, self.fsync) {
            (Ok(()), Fsync::Always) => {
                "the records since the last good sync were cut from the log; \
                 their writes are refused"
            }
            (Ok(()), _) => "buffered records stay in memory until the log is rewritten",
            (Err(_), _) => {
                "cutting the records since the last good sync failed too: whether \
                 they are on disk is unknown"
            }
        };
        self.fail(op, e, outcome)
    }

    /// Marks the log failed with `e` (what `op` met) and what became of the
    /// records not known durable, `outcome`: drops the buffered records and
    /// a running rewrite's carry-over; appends are refused from now until a
    /// rewrite. Returns the error.
    fn fail(&self, op: &'static str, e: io::Error, outcome: &str) -> PersistError {
        let mut appended = self.appended.lock();
        buffer::empty(&mut appended.buf);
        appended.tail = None;
        let error = PersistError::io(
            op,
            self.name.clone(),
            io::Error::new(e.kind(), format!("{e}; {outcome}")),
        );
        appended.failed.get_or_insert_with(|| error.to_string());
        self.stopped.store(true, Ordering::Release);
        error
    }

    fn stopped_error(&self, cause: &str) -> PersistError {
        PersistError::Refused {
            path: self.name.clone(),
            cause: cause.to_owned(),
        }
    }

    /// Records that the storage now holds a complete log of `size` bytes
    /// (opened, or just rewritten): the size growth is measured from, and
    /// the length a failed write is cut back to.
    fn starts_at(&self, writer: &mut Writer, size: u64) {
        writer.good_len = size;
        writer.synced_len = size;
        writer.generation += 1;
        self.bytes.store(size, Ordering::Relaxed);
        self.base.store(size, Ordering::Relaxed);
    }
}

impl<S: Storage> Drop for LogInner<S> {
    fn drop(&mut self) {
        // Best effort, as a clean shutdown: an error has no one left to reach.
        if self.write_out().is_ok() && self.fsync == Fsync::EverySecond {
            let _ = self.storage.sync();
        }
    }
}

impl<S: Storage> WriteAheadLog for FileLog<S> {
    fn replay(
        &self,
        fingerprint: u64,
        apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
    ) -> Result<RecoveryReport, PersistError> {
        self.replay_migrating(fingerprint, &[], apply)
    }

    fn replay_migrating(
        &self,
        fingerprint: u64,
        previous: &[u64],
        apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
    ) -> Result<RecoveryReport, PersistError> {
        let log = &self.inner;
        log.fingerprint.store(fingerprint, Ordering::Relaxed);
        let policy = recovery::Policy {
            tail: if log.refuse_corrupt.load(Ordering::Relaxed) {
                OnCorruptTail::Refuse
            } else {
                OnCorruptTail::Truncate
            },
            inside: if log.set_aside.load(Ordering::Relaxed) {
                OnCorruption::SetAside
            } else {
                OnCorruption::Refuse
            },
        };
        let (report, size) = recovery::open(
            &log.storage,
            &log.name,
            fingerprint,
            previous,
            &policy,
            apply,
        )?;
        if let Some(from) = report.migrated_from {
            migrate(&log.storage, &log.name, size, (from, fingerprint), &report)?;
        }
        log.starts_at(&mut log.writer.lock(), size);
        Ok(report)
    }

    fn append(&self, payload: &[u8]) -> Result<u64, PersistError> {
        let log = &self.inner;
        let mut appended = log.appended.lock();
        if let Some(cause) = &appended.failed {
            return Err(log.stopped_error(cause));
        }
        let Appended {
            buf,
            tail,
            lsn,
            since,
            ..
        } = &mut *appended;
        let start = buf.len();
        if start == 0 && log.fsync != Fsync::Always {
            *since = Some(std::time::Instant::now());
        }
        frame::encode(payload, buf);
        let framed = &buf[start..];
        log.bytes.fetch_add(framed.len() as u64, Ordering::Relaxed);
        if let Some(tail) = tail {
            tail.extend_from_slice(framed);
        }
        *lsn += 1;
        let lsn = *lsn;
        let write_now = match log.fsync {
            // `wait` writes and syncs.
            Fsync::Always => false,
            // Under load the writers hand the buffer over themselves once
            // its oldest record has waited the write delay (checked every
            // few appends), so the bound does not depend on when the
            // background thread gets a core.
            Fsync::EverySecond | Fsync::Never => match log.write_delay() {
                None => true,
                Some(delay) => {
                    buf.len() >= WRITE_AT
                        || (lsn % AGE_CHECK_EVERY == 0
                            && since.is_some_and(|t| t.elapsed() >= delay))
                }
            },
        };
        drop(appended);
        if write_now {
            log.write_out()?;
        }
        Ok(lsn)
    }

    fn wait(&self, lsn: u64) -> Result<(), PersistError> {
        match self.inner.fsync {
            Fsync::Always => self.inner.sync_to(lsn),
            Fsync::EverySecond | Fsync::Never => Ok(()),
        }
    }

    fn sync(&self) -> Result<(), PersistError> {
        let lsn = self.inner.appended.lock().lsn;
        self.inner.sync_to(lsn)
    }

    fn size(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    fn rewrite(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError> {
        self.inner.rewrite_one(snapshot, RewriteKind::Repair)
    }

    fn compact(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError> {
        self.inner.rewrite_one(snapshot, RewriteKind::Compaction)
    }

    fn durable_lsn(&self) -> u64 {
        self.inner.synced.load(Ordering::Acquire)
    }

    fn waits_for_disk(&self) -> bool {
        self.inner.fsync == Fsync::Always
    }

    fn health(&self) -> Result<(), PersistError> {
        let log = &self.inner;
        if !log.stopped.load(Ordering::Acquire) {
            return Ok(());
        }
        match &log.appended.lock().failed {
            Some(cause) => Err(log.stopped_error(cause)),
            None => Ok(()),
        }
    }

    fn take_unreported(&self) -> Option<PersistError> {
        self.inner.unreported.lock().take()
    }

    fn describe(&self) -> String {
        self.inner.name.clone()
    }

    fn save_summary(&self, summary: &[u8]) -> Result<(), PersistError> {
        let log = &self.inner;
        log.storage
            .write_summary(summary)
            .map_err(|e| PersistError::io("writing the admission summary of", log.name.clone(), e))
    }

    fn load_summary(&self, limit: u64) -> Result<Option<Vec<u8>>, PersistError> {
        let log = &self.inner;
        log.storage
            .read_summary(limit)
            .map_err(|e| PersistError::io("reading the admission summary of", log.name.clone(), e))
    }

    fn wants_rewrite(&self) -> bool {
        let log = &self.inner;
        let growth = log.growth_percent.load(Ordering::Relaxed);
        if growth == 0 {
            return false;
        }
        let size = log.bytes.load(Ordering::Relaxed);
        let base = log.base.load(Ordering::Relaxed);
        size >= log.min_rewrite_size.load(Ordering::Relaxed)
            && size.saturating_sub(base) >= base.saturating_mul(growth) / 100
    }
}
