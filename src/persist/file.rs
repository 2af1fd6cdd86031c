//! [`FileLog`]: the append-only log, with group commit.

use super::frame::{self, HeaderError, StopReason};
use super::storage::{FileStorage, RewriteTarget, Storage};
use super::{Fsync, OnCorruptTail, PersistError, RecoveryReport, Snapshot, WriteAheadLog};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// An append-only log of framed records on a [`Storage`] (a locked file by
/// default), like Redis's AOF.
///
/// Durability follows [`Fsync`]: with `Always`, `wait(lsn)` returns only
/// once the record is on disk, and concurrent writers share each fsync (the
/// first waiter syncs everything appended so far; the others find their record
/// already covered). With `EverySecond` a background thread syncs once a
/// second. Every mode hands each record to the OS before `append` returns, so
/// a process crash loses nothing that was appended.
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
    inner: Arc<LogInner<S>>,
}

struct LogInner<S> {
    storage: S,
    name: String,
    fsync: Fsync,
    /// Settings, atomics so the builder methods work after the EverySecond
    /// flusher (which holds a weak reference) has started.
    refuse_corrupt: AtomicBool,
    /// The last LSN, and the appends a running rewrite must carry over; the
    /// mutex serializes appends.
    appended: Mutex<Appended>,
    synced: AtomicU64,
    sync_lock: Mutex<()>,
    bytes: AtomicU64,
    /// The log's size after it was opened or last rewritten.
    base: AtomicU64,
    /// The type fingerprint (from `replay`), for a rewrite's header.
    fingerprint: AtomicU64,
    rewrite_lock: Mutex<()>,
    growth_percent: AtomicU64,
    min_rewrite_size: AtomicU64,
}

struct Appended {
    lsn: u64,
    /// While a rewrite runs: every record appended since it started.
    tail: Option<Vec<u8>>,
}

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
            appended: Mutex::new(Appended { lsn: 0, tail: None }),
            synced: AtomicU64::new(0),
            sync_lock: Mutex::new(()),
            bytes: AtomicU64::new(0),
            base: AtomicU64::new(0),
            fingerprint: AtomicU64::new(0),
            rewrite_lock: Mutex::new(()),
            growth_percent: AtomicU64::new(DEFAULT_REWRITE_PERCENTAGE),
            min_rewrite_size: AtomicU64::new(DEFAULT_REWRITE_MIN_SIZE),
        });
        if fsync == Fsync::EverySecond {
            spawn_flusher(Arc::downgrade(&inner));
        }
        Self { inner }
    }

    /// What to do with a torn or corrupt tail at load: truncate it (the
    /// default, like `aof-load-truncated yes`) or refuse to load.
    pub fn on_corrupt_tail(self, policy: OnCorruptTail) -> Self {
        self.inner
            .refuse_corrupt
            .store(policy == OnCorruptTail::Refuse, Ordering::Relaxed);
        self
    }

    /// When a cache on this log rewrites it by itself, as Redis's
    /// `auto-aof-rewrite-percentage` and `auto-aof-rewrite-min-size`: once
    /// the log has grown by `percentage` % over its size after the last
    /// rewrite (or at open) and is over `min_size` bytes. A percentage of 0
    /// turns automatic rewrites off. Defaults: 100 % and 64 MiB.
    pub fn rewrite_policy(self, percentage: u64, min_size: u64) -> Self {
        let inner = &self.inner;
        inner.growth_percent.store(percentage, Ordering::Relaxed);
        inner.min_rewrite_size.store(min_size, Ordering::Relaxed);
        self
    }
}

impl<S> LogInner<S>
where
    S: Storage,
{
    fn io(&self, op: &'static str, e: io::Error) -> PersistError {
        PersistError::io(op, self.name.clone(), e)
    }

    /// Syncs everything appended so far unless `lsn` is already durable.
    fn sync_to(&self, lsn: u64) -> Result<(), PersistError> {
        if self.synced.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let _one_syncer = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let target = self.appended.lock().lsn;
        self.storage.sync().map_err(|e| self.io("syncing", e))?;
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

fn spawn_flusher<S: Storage>(log: std::sync::Weak<LogInner<S>>) {
    let spawned = std::thread::Builder::new()
        .name("shardcache-fsync".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(log) = log.upgrade() else { return };
            let lsn = log.appended.lock().lsn;
            // An error here resurfaces on the next explicit sync or Always write.
            let _ = log.sync_to(lsn);
        });
    // Without the thread, EverySecond degrades to Never; say so rather than fail.
    if let Err(e) = spawned {
        eprintln!("shardcache: could not start the fsync thread ({e}); the log will not be synced every second");
    }
}

impl<S: Storage> WriteAheadLog for FileLog<S> {
    fn replay(
        &self,
        fingerprint: u64,
        apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
    ) -> Result<RecoveryReport, PersistError> {
        let log = &self.inner;
        log.fingerprint.store(fingerprint, Ordering::Relaxed);
        let bytes = log.storage.read_all().map_err(|e| log.io("reading", e))?;
        let mut report = RecoveryReport::default();
        if bytes.is_empty() {
            log.storage
                .append(&frame::header(fingerprint))
                .map_err(|e| log.io("writing the header of", e))?;
            log.storage.sync().map_err(|e| log.io("syncing", e))?;
            log.bytes.store(frame::HEADER_LEN as u64, Ordering::Relaxed);
            log.base.store(frame::HEADER_LEN as u64, Ordering::Relaxed);
            return Ok(report);
        }
        let path = log.name.clone();
        frame::check_header(&bytes, fingerprint).map_err(|e| match e {
            HeaderError::NotALog => PersistError::NotALog { path: path.clone() },
            HeaderError::Version(found) => PersistError::Version {
                path: path.clone(),
                found,
            },
            HeaderError::Fingerprint { found } => PersistError::Fingerprint {
                path: path.clone(),
                found,
                expected: fingerprint,
            },
        })?;
        let body = &bytes[frame::HEADER_LEN..];
        let mut failed = None;
        let (valid, stop) = frame::decode(body, |payload| {
            if failed.is_none() {
                match apply(payload) {
                    Ok(()) => report.records += 1,
                    Err(e) => failed = Some(e),
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(reason) = stop {
            let offset = (frame::HEADER_LEN + valid) as u64;
            if log.refuse_corrupt.load(Ordering::Relaxed) {
                return Err(PersistError::CorruptTail {
                    path,
                    offset,
                    reason,
                });
            }
            log.storage
                .truncate(offset)
                .map_err(|e| log.io("truncating", e))?;
            report.bytes_discarded = (body.len() - valid) as u64;
            report.stopped_at = Some((offset, reason));
        }
        let size = (frame::HEADER_LEN + valid) as u64;
        log.bytes.store(size, Ordering::Relaxed);
        log.base.store(size, Ordering::Relaxed);
        Ok(report)
    }

    fn append(&self, payload: &[u8]) -> Result<u64, PersistError> {
        let log = &self.inner;
        let mut framed = Vec::with_capacity(payload.len() + frame::FRAME_OVERHEAD);
        frame::encode(payload, &mut framed);
        let mut appended = log.appended.lock();
        log.storage
            .append(&framed)
            .map_err(|e| log.io("appending to", e))?;
        log.bytes.fetch_add(framed.len() as u64, Ordering::Relaxed);
        if let Some(tail) = &mut appended.tail {
            tail.extend_from_slice(&framed);
        }
        appended.lsn += 1;
        Ok(appended.lsn)
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
        let log = &self.inner;
        let _one_rewrite = log.rewrite_lock.lock();
        let result = log.rewrite(snapshot);
        if result.is_err() {
            // Try again only after the log has grown as much once more.
            log.base
                .store(log.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        result
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

impl<S: Storage> LogInner<S> {
    /// Writes the snapshot, then the records appended meanwhile, to a
    /// replacement and swaps it in (with appends paused only for the swap).
    fn rewrite(&self, snapshot: &mut Snapshot<'_>) -> Result<(), PersistError> {
        let mut next = self
            .storage
            .begin_rewrite()
            .map_err(|e| self.io("starting a rewrite of", e))?;
        let fingerprint = self.fingerprint.load(Ordering::Relaxed);
        next.append(&frame::header(fingerprint))
            .map_err(|e| self.io("rewriting", e))?;
        // From here every append is also kept for the replacement, so a
        // write the snapshot misses is carried over.
        self.appended.lock().tail = Some(Vec::new());
        let written = self.write_snapshot(&mut next, snapshot);
        let mut appended = self.appended.lock();
        let tail = appended.tail.take().unwrap_or_default();
        written?;
        next.append(&tail).map_err(|e| self.io("rewriting", e))?;
        let size = next.len();
        self.storage
            .commit_rewrite(next)
            .map_err(|e| self.io("replacing", e))?;
        self.bytes.store(size, Ordering::Relaxed);
        self.base.store(size, Ordering::Relaxed);
        // The replacement holds every record appended so far, synced.
        self.synced.fetch_max(appended.lsn, Ordering::AcqRel);
        Ok(())
    }

    fn write_snapshot(
        &self,
        next: &mut S::Rewrite,
        snapshot: &mut Snapshot<'_>,
    ) -> Result<(), PersistError> {
        let mut framed = Vec::new();
        snapshot(&mut |payload| {
            framed.clear();
            frame::encode(payload, &mut framed);
            next.append(&framed).map_err(|e| self.io("rewriting", e))
        })
    }
}

/// Why a torn or corrupt tail was cut, for reports.
impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Torn => "torn record (cut short)",
            Self::Checksum => "checksum mismatch",
            Self::BadLength => "impossible record length",
        })
    }
}
