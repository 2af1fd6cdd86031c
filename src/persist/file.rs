//! [`FileLog`]: the append-only log, with group commit.

use super::frame::{self, HeaderError, StopReason};
use super::storage::{FileStorage, RewriteTarget, Storage};
use super::{Fsync, OnCorruptTail, PersistError, RecoveryReport, Snapshot, WriteAheadLog};
use crate::sync::{Arc, AtomicU64, Condvar, Mutex, Ordering};
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
///   `EverySecond`, fsyncs once a second. A process crash loses at most the
///   records of the last `write_delay` (none with a zero delay, which writes
///   each record before `append` returns); a power failure at most about the
///   last second (`EverySecond`). [`sync`](WriteAheadLog::sync) and dropping
///   the log write everything out.
///
/// A failed write is undone (the storage is cut back to its last good
/// length) and retried by the next write, so the log stays a clean sequence
/// of records; the error reaches the caller through the cache's `sync`. If
/// the undo itself fails, or the buffer outgrows 64 MiB while the storage
/// keeps failing, the log stops taking records (each append is an error)
/// until a rewrite replaces it with a complete snapshot.
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

struct LogInner<S: Storage> {
    storage: S,
    name: String,
    fsync: Fsync,
    /// Settings, atomics so the builder methods work after the EverySecond
    /// flusher (which holds a weak reference) has started.
    refuse_corrupt: AtomicBool,
    /// The last LSN, the records not yet handed to the storage, and the
    /// appends a running rewrite must carry over; the mutex orders appends.
    appended: Mutex<Appended>,
    /// Held while handing the buffer to the storage, so batches reach it in
    /// LSN order. Lock order: `rewrite_lock`, then `writer`, then `appended`.
    writer: Mutex<Writer>,
    synced: AtomicU64,
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
}

struct Appended {
    lsn: u64,
    /// Framed records not yet handed to the storage, in LSN order.
    buf: Vec<u8>,
    /// While a rewrite runs: every record appended since it started.
    tail: Option<Vec<u8>>,
    /// The last hand-over failed; the buffer then grows only up to
    /// [`MAX_PENDING`].
    failing: bool,
    /// Records were lost or a torn write could not be undone: appends fail
    /// until a rewrite replaces the log.
    broken: bool,
}

struct Writer {
    /// The storage's length after the last good write, to undo a partial one.
    good_len: u64,
    /// The buffer being written (swapped with `Appended::buf`, so both keep
    /// their allocations).
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
/// How much a failing storage may leave buffered before records are dropped.
const MAX_PENDING: usize = 64 << 20;
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
            appended: Mutex::new(Appended {
                lsn: 0,
                buf: Vec::new(),
                tail: None,
                failing: false,
                broken: false,
            }),
            writer: Mutex::new(Writer {
                good_len: 0,
                spare: Vec::new(),
            }),
            synced: AtomicU64::new(0),
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
        });
        if fsync != Fsync::Always {
            spawn_flusher(Arc::downgrade(&inner));
        }
        Self { inner }
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

impl<S: Storage> LogInner<S> {
    fn io(&self, op: &'static str, e: io::Error) -> PersistError {
        PersistError::io(op, self.name.clone(), e)
    }

    /// Syncs everything appended so far unless `lsn` is already durable.
    fn sync_to(&self, lsn: u64) -> Result<(), PersistError> {
        if self.synced.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let mut rounds = self.rounds.lock();
        loop {
            if self.synced.load(Ordering::Acquire) >= lsn {
                return Ok(());
            }
            if !rounds.leading {
                break;
            }
            self.synced_cv.wait(&mut rounds);
        }
        rounds.leading = true;
        let (batch, last_fsync) = (rounds.batch, rounds.fsync);
        drop(rounds);
        // Whatever happens below (an error, a panicking storage), the next
        // waiter must be able to lead.
        let mut round = RoundGuard {
            log: self,
            covered: None,
        };
        let synced = self.synced.load(Ordering::Acquire);
        self.gather(synced, batch, last_fsync);
        let target = self.write_out()?;
        let started = std::time::Instant::now();
        self.storage.sync().map_err(|e| self.io("syncing", e))?;
        round.covered = Some((target, target.saturating_sub(synced), started.elapsed()));
        Ok(())
    }

    /// Group commit under `Always`: the last fsync covered `batch` records,
    /// about one per writer. Those writers are now appending their next
    /// record; give them up to half an fsync's time to do so, so that one
    /// fsync covers them all rather than the leader's record alone (a
    /// writer woken from the last round needs tens of microseconds to get
    /// here, and the leader, already running, would otherwise always win).
    /// A single writer never waits.
    fn gather(&self, synced: u64, batch: u64, last_fsync: Duration) {
        if self.fsync != Fsync::Always || batch <= 1 {
            return;
        }
        let want = synced + batch.min(MAX_GATHER);
        let deadline = std::time::Instant::now() + last_fsync / 2;
        while self.appended.lock().lsn < want && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    /// Hands every buffered record to the storage; returns the last LSN
    /// now written. A failed write is cut away and its records stay
    /// buffered, ahead of later ones, for the next attempt.
    fn write_out(&self) -> Result<u64, PersistError> {
        let mut writer = self.writer.lock();
        let writer = &mut *writer;
        let lsn = {
            let mut appended = self.appended.lock();
            if appended.broken {
                return Err(self.broken());
            }
            std::mem::swap(&mut appended.buf, &mut writer.spare);
            appended.lsn
        };
        if writer.spare.is_empty() {
            return Ok(lsn);
        }
        match self.storage.append(&writer.spare) {
            Ok(()) => {
                writer.good_len += writer.spare.len() as u64;
                writer.spare.clear();
                self.appended.lock().failing = false;
                Ok(lsn)
            }
            Err(e) => {
                let undone = self.storage.truncate(writer.good_len).is_ok();
                let mut appended = self.appended.lock();
                // Put the batch back in front of what was appended meanwhile.
                writer.spare.extend_from_slice(&appended.buf);
                std::mem::swap(&mut appended.buf, &mut writer.spare);
                writer.spare.clear();
                appended.failing = true;
                appended.broken |= !undone;
                Err(self.io("appending to", e))
            }
        }
    }

    fn broken(&self) -> PersistError {
        self.io(
            "appending to",
            io::Error::other(
                "an earlier write failed and could not be undone; \
                 the log takes no records until it is rewritten",
            ),
        )
    }

    /// Records that the storage now holds a complete log of `size` bytes
    /// (opened, or just rewritten): the size growth is measured from, and
    /// the length a failed write is cut back to.
    fn starts_at(&self, writer: &mut Writer, size: u64) {
        writer.good_len = size;
        self.bytes.store(size, Ordering::Relaxed);
        self.base.store(size, Ordering::Relaxed);
    }

    fn write_delay(&self) -> Option<Duration> {
        match self.write_delay_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// Ends a group commit round: publishes what it made durable (if it
/// succeeded), hands leadership on and wakes the followers.
struct RoundGuard<'a, S: Storage> {
    log: &'a LogInner<S>,
    /// The last LSN synced, the records covered, the fsync's duration.
    covered: Option<(u64, u64, Duration)>,
}

impl<S: Storage> Drop for RoundGuard<'_, S> {
    fn drop(&mut self) {
        let log = self.log;
        let mut rounds = log.rounds.lock();
        rounds.leading = false;
        if let Some((target, batch, fsync)) = self.covered {
            log.synced.fetch_max(target, Ordering::AcqRel);
            rounds.batch = batch;
            rounds.fsync = fsync;
        }
        drop(rounds);
        log.synced_cv.notify_all();
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

/// The background thread of `EverySecond` and `Never` logs: hands the
/// buffer to the OS every `write_delay` and, for `EverySecond`, fsyncs once
/// a second. It holds a weak reference and ends with the log.
fn spawn_flusher<S: Storage>(log: std::sync::Weak<LogInner<S>>) {
    let spawned = std::thread::Builder::new()
        .name("shardcache-log".into())
        .spawn(move || {
            let mut last_sync = std::time::Instant::now();
            loop {
                let nap = match log.upgrade() {
                    Some(log) => log.write_delay().unwrap_or(SYNC_EVERY).min(SYNC_EVERY),
                    None => return,
                };
                std::thread::sleep(nap);
                let Some(log) = log.upgrade() else { return };
                // An error here resurfaces on the next explicit sync.
                if log.fsync == Fsync::EverySecond && last_sync.elapsed() >= SYNC_EVERY {
                    last_sync = std::time::Instant::now();
                    let lsn = log.appended.lock().lsn;
                    let _ = log.sync_to(lsn);
                } else {
                    let _ = log.write_out();
                }
            }
        });
    // Without the thread, records wait for the next sync; say so rather than fail.
    if let Err(e) = spawned {
        eprintln!("shardcache: could not start the log's writer thread ({e}); records are written on sync");
    }
}

/// How often an `EverySecond` log fsyncs.
const SYNC_EVERY: Duration = Duration::from_secs(1);

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
        // All zeros: a new log whose header never made it past the space
        // the storage grew the file by.
        if bytes.iter().all(|&b| b == 0) {
            if !bytes.is_empty() {
                log.storage
                    .truncate(0)
                    .map_err(|e| log.io("truncating", e))?;
            }
            log.storage
                .append(&frame::header(fingerprint))
                .map_err(|e| log.io("writing the header of", e))?;
            log.storage.sync().map_err(|e| log.io("syncing", e))?;
            log.starts_at(&mut log.writer.lock(), frame::HEADER_LEN as u64);
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
        if stop.is_none() && valid < body.len() {
            // Zeros the storage grew the file by: cut, not reported.
            log.storage
                .truncate(size)
                .map_err(|e| log.io("truncating", e))?;
        }
        log.starts_at(&mut log.writer.lock(), size);
        Ok(report)
    }

    fn append(&self, payload: &[u8]) -> Result<u64, PersistError> {
        let log = &self.inner;
        let mut appended = log.appended.lock();
        if appended.broken {
            return Err(log.broken());
        }
        if appended.failing && appended.buf.len() >= MAX_PENDING {
            // The storage has been failing for a while: drop the record, and
            // with it the log's claim to hold a complete history.
            appended.broken = true;
            return Err(log.broken());
        }
        let Appended { buf, tail, lsn, .. } = &mut *appended;
        let start = buf.len();
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
            Fsync::EverySecond | Fsync::Never => {
                buf.len() >= WRITE_AT || log.write_delay().is_none()
            }
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
        let mut writer = self.writer.lock();
        let mut appended = self.appended.lock();
        let tail = appended.tail.take().unwrap_or_default();
        written?;
        next.append(&tail).map_err(|e| self.io("rewriting", e))?;
        let size = next.len();
        self.storage
            .commit_rewrite(next)
            .map_err(|e| self.io("replacing", e))?;
        // The replacement holds every record appended so far, synced: the
        // buffer's records included (they are in the tail or the snapshot).
        appended.buf.clear();
        appended.failing = false;
        appended.broken = false;
        self.starts_at(&mut writer, size);
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
