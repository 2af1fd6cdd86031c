//! The byte-level seam under [`FileLog`](super::FileLog): a file in
//! production, memory with injected faults or simulated power loss in tests.

use crate::sync::{Arc, Mutex, RwLock};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where a log's bytes live. Appends are serialized by the log; `sync` may
/// run concurrently with an append and must make durable at least every byte
/// appended before it was called.
pub trait Storage: Send + Sync + 'static {
    /// The number of bytes held.
    fn size(&self) -> io::Result<u64>;
    /// Reads bytes from `offset` into `buf`; returns how many (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Keeps a copy of the current bytes, untouched, beside the storage (a
    /// damaged log set aside before its good part is loaded); returns where.
    fn preserve(&self) -> io::Result<String>;
    /// Every byte, from the start (in memory at once: for tests and tools;
    /// recovery reads in chunks with [`read_at`](Self::read_at)).
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut out = vec![0; usize::try_from(self.size()?).map_err(io::Error::other)?];
        let mut filled = 0;
        while filled < out.len() {
            match self.read_at(filled as u64, &mut out[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        out.truncate(filled);
        Ok(out)
    }
    /// Adds `bytes` at the end (handed to the OS before returning). On an
    /// error, part of `bytes` may have been written; the log cuts it away
    /// with [`truncate`](Self::truncate).
    fn append(&self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Cuts the storage to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// A name for error messages (a path).
    fn describe(&self) -> String;

    /// A replacement being written by a rewrite (a temporary file).
    type Rewrite: RewriteTarget;
    /// Starts a rewrite: an empty replacement beside the current bytes,
    /// which stay in use until [`commit_rewrite`](Self::commit_rewrite).
    fn begin_rewrite(&self) -> io::Result<Self::Rewrite>;
    /// Makes `next` durable and puts it in place of the current bytes, as
    /// one atomic step (for a file: fsync, rename over, fsync the directory).
    /// Later calls work on the replacement. An error means the current bytes
    /// are still in use. If the swap happened but could not be made durable
    /// (the directory sync failed), this returns `Ok` and the next
    /// [`sync`](Self::sync) must retry it before it reports success.
    fn commit_rewrite(&self, next: Self::Rewrite) -> io::Result<()>;
    /// Replaces the admission summary kept beside the bytes, atomically
    /// (a crash leaves the old one or the new one). The default keeps none.
    fn write_summary(&self, _bytes: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// The admission summary kept beside the bytes, `None` if there is none;
    /// one longer than `limit` bytes is an error. The default keeps none.
    fn read_summary(&self, _limit: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// The replacement a rewrite writes into.
pub trait RewriteTarget: Send {
    /// Adds `bytes` at the end.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Bytes written so far.
    fn len(&self) -> u64;
    /// Whether nothing has been written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file, locked against other processes while open.
///
/// A rewrite goes to `<path>.rewrite` (locked too), which is fsynced and
/// renamed over the log; the directory is fsynced before the rewrite counts
/// as done. A crash at any point leaves either the old log or the new one at
/// `path`, each complete; a stale `.rewrite` file is removed on open.
///
/// The lock is an `flock`: a child process forked while the log was open
/// holds it until the child execs, so an open that finds the lock taken
/// retries for half a second before it reports
/// [`PersistError::Locked`](super::PersistError::Locked).
///
/// The file is grown ahead of the log in zero-filled chunks, so an append
/// overwrites blocks that already exist and an fsync has only data to flush,
/// not the file's new size and block map (on ext4 here, 150 us instead of
/// 210 us per write+fdatasync). The zeros past the log's end read as the end
/// of the log (see [`FileLog`](super::FileLog)) and are cut away on open.
#[derive(Debug)]
pub struct FileStorage {
    file: RwLock<File>,
    path: PathBuf,
    /// A rename whose directory entry is not known to be durable yet.
    dir_unsynced: AtomicBool,
    /// Where the log ends and how far the file is zero-filled; the mutex
    /// also guards the file's offset.
    ends: Mutex<Ends>,
}

#[derive(Debug, Clone, Copy)]
struct Ends {
    /// The end of the log: the next append goes here.
    len: u64,
    /// The file's length (`>= len`; zeros past `len`).
    allocated: u64,
}

impl Ends {
    fn at(len: u64) -> Self {
        Self {
            len,
            allocated: len,
        }
    }
}

/// How long an open waits for a lock held elsewhere before it reports
/// `WouldBlock`. A child process forked while the log was open holds the
/// lock until it execs (at most a few milliseconds, even on a loaded
/// machine); a reopen right after a close must not fail on that. A lock held
/// by a live owner is still reported, this much later.
const LOCK_GRACE: Duration = Duration::from_millis(500);

/// Takes `file`'s exclusive lock, retrying for up to [`LOCK_GRACE`].
fn lock_within_grace(file: &File) -> io::Result<()> {
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_GRACE => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "locked: already open in this process or another",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// How far ahead of the log the file is zero-filled: an eighth of the log,
/// between 64 KiB and 8 MiB.
fn preallocation(len: u64) -> u64 {
    (len / 8).clamp(64 << 10, 8 << 20)
}

impl FileStorage {
    /// Opens (creating if needed) and exclusively locks `path`.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when another process holds the lock, or the I/O error.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        lock_within_grace(&file)?;
        // We hold the log's lock, so no one else is rewriting it: a leftover
        // replacement is from a rewrite that crashed before its rename.
        match std::fs::remove_file(rewrite_path(path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let len = file.metadata()?.len();
        Ok(Self {
            file: RwLock::new(file),
            path: path.to_owned(),
            dir_unsynced: AtomicBool::new(false),
            ends: Mutex::new(Ends::at(len)),
        })
    }

    fn sync_dir(&self) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
        self.dir_unsynced.store(false, Ordering::Release);
        Ok(())
    }
}

/// Where a rewrite of `path` writes before renaming.
fn rewrite_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rewrite");
    PathBuf::from(name)
}

/// The temporary file a [`FileStorage`] rewrite writes; removed if dropped
/// before it is committed.
#[derive(Debug)]
pub struct FileRewrite {
    out: BufWriter<File>,
    path: PathBuf,
    len: u64,
    committed: bool,
}

impl RewriteTarget for FileRewrite {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl Drop for FileRewrite {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Storage for FileStorage {
    type Rewrite = FileRewrite;

    fn size(&self) -> io::Result<u64> {
        let file = self.file.read();
        let _ends = self.ends.lock();
        Ok(file.metadata()?.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let file = self.file.read();
        let _offset = self.ends.lock();
        let mut f = &*file;
        f.seek(SeekFrom::Start(offset))?;
        f.read(buf)
    }

    fn preserve(&self) -> io::Result<String> {
        let _file = self.file.read();
        let _ends = self.ends.lock();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".damaged-{stamp}"));
        let aside = PathBuf::from(name);
        std::fs::copy(&self.path, &aside)?;
        File::open(&aside)?.sync_all()?;
        self.sync_dir()?;
        Ok(aside.display().to_string())
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.read();
        let mut ends = self.ends.lock();
        let mut f = &*file;
        let end = ends.len + bytes.len() as u64;
        if end > ends.allocated {
            let target = end + preallocation(end);
            f.seek(SeekFrom::Start(ends.allocated))?;
            let zeros = vec![0u8; (target - ends.allocated).min(1 << 20) as usize];
            let mut at = ends.allocated;
            while at < target {
                let n = (target - at).min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                at += n as u64;
                ends.allocated = at;
            }
        }
        f.seek(SeekFrom::Start(ends.len))?;
        f.write_all(bytes)?;
        ends.len = end;
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.read().sync_data()?;
        if self.dir_unsynced.load(Ordering::Acquire) {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let file = self.file.read();
        let mut ends = self.ends.lock();
        file.set_len(len)?;
        *ends = Ends::at(len);
        file.sync_all()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn write_summary(&self, bytes: &[u8]) -> io::Result<()> {
        super::summary_file::write(&self.path, bytes)
    }
    fn read_summary(&self, limit: u64) -> io::Result<Option<Vec<u8>>> {
        super::summary_file::read(&self.path, limit)
    }

    fn begin_rewrite(&self) -> io::Result<FileRewrite> {
        let path = rewrite_path(&self.path);
        // A leftover from a failed rewrite goes first.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Locked before it is renamed into place, so the log is never unlocked.
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                io::Error::new(io::ErrorKind::WouldBlock, "rewrite file locked")
            }
            std::fs::TryLockError::Error(e) => e,
        })?;
        Ok(FileRewrite {
            out: BufWriter::with_capacity(1 << 16, file),
            path,
            len: 0,
            committed: false,
        })
    }

    fn commit_rewrite(&self, mut next: FileRewrite) -> io::Result<()> {
        next.out.flush()?;
        next.out.get_ref().sync_all()?;
        let replacement = next.out.get_ref().try_clone()?;
        let mut current = self.file.write();
        let mut ends = self.ends.lock();
        std::fs::rename(&next.path, &self.path)?;
        next.committed = true;
        // The old file's handle (and its lock) go; the new one is locked
        // already.
        *current = replacement;
        *ends = Ends::at(next.len);
        drop(ends);
        drop(current);
        self.dir_unsynced.store(true, Ordering::Release);
        // The swap is done; if the directory sync fails, the next `sync`
        // retries it (and reports the failure to writers waiting on it).
        let _ = self.sync_dir();
        Ok(())
    }
}

/// In-memory storage for tests: it tracks which bytes are durable, can
/// simulate a power loss (unsynced bytes dropped, or torn at a chosen point),
/// and can fail every call after the first `n`. Clones share the same bytes.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<Mem>>,
}

#[derive(Debug, Default)]
struct Mem {
    data: Vec<u8>,
    synced: usize,
    calls: u64,
    fail_after: Option<u64>,
    /// The next append writes this many of its bytes, then fails.
    tear_next: Option<usize>,
    /// The bytes (and their synced length) a rename replaced, until the
    /// directory is synced: a power loss before then brings them back.
    before_rename: Option<(Vec<u8>, usize)>,
    /// Errors injected into appends or syncs.
    faults: Vec<Fault>,
    /// Copies kept by [`Storage::preserve`].
    preserved: Vec<Vec<u8>>,
}

/// The storage call an injected fault hits (see [`MemStorage::inject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOn {
    /// [`Storage::append`]: nothing of the call's bytes is written.
    Append,
    /// [`Storage::sync`]: nothing becomes durable.
    Sync,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    on: FaultOn,
    /// Calls of that kind still let through.
    skip: u64,
    kind: io::ErrorKind,
    sticky: bool,
}

impl Mem {
    /// Whether an injected fault fails this call.
    fn fault(&mut self, on: FaultOn) -> Option<io::Error> {
        let i = self.faults.iter().position(|f| f.on == on)?;
        let fault = &mut self.faults[i];
        if fault.skip > 0 {
            fault.skip -= 1;
            return None;
        }
        let kind = fault.kind;
        if !fault.sticky {
            self.faults.remove(i);
        }
        Some(io::Error::new(kind, format!("injected {kind} on {on:?}")))
    }
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call after the next `n` fails with an I/O error.
    pub fn fail_after(&self, n: u64) {
        let mut m = self.inner.lock();
        m.fail_after = Some(m.calls + n);
    }

    /// The next append writes only its first `keep` bytes and then fails,
    /// as a write cut short by a full disk.
    pub fn tear_next_append(&self, keep: usize) {
        self.inner.lock().tear_next = Some(keep);
    }

    /// The call of kind `on` after the next `n` such calls fails with an
    /// error of `kind` (`StorageFull` for a full disk, `Other` for EIO);
    /// with `sticky`, every later one too, until [`heal`](Self::heal).
    pub fn inject(&self, on: FaultOn, n: u64, kind: io::ErrorKind, sticky: bool) {
        self.inner.lock().faults.push(Fault {
            on,
            skip: n,
            kind,
            sticky,
        });
    }

    /// Clears injected faults (`fail_after`, `tear_next_append`, `inject`).
    pub fn heal(&self) {
        let mut m = self.inner.lock();
        m.fail_after = None;
        m.tear_next = None;
        m.faults.clear();
    }

    /// The copies of damaged logs set aside on open (see
    /// [`OnCorruption::SetAside`](super::OnCorruption::SetAside)).
    pub fn preserved(&self) -> Vec<Vec<u8>> {
        self.inner.lock().preserved.clone()
    }

    /// Simulates a power loss: keeps the synced bytes and `keep` of the
    /// unsynced ones (a torn write), drops the rest; clears injected faults.
    /// A committed rewrite whose directory sync has not happened is undone,
    /// as a file system may do to a rename.
    pub fn power_loss(&self, keep: usize) {
        let mut m = self.inner.lock();
        if let Some((data, synced)) = m.before_rename.take() {
            m.data = data;
            m.synced = synced;
        }
        let end = m.synced.saturating_add(keep).min(m.data.len());
        m.data.truncate(end);
        m.synced = end;
        m.fail_after = None;
    }

    /// Bytes held (synced or not).
    pub fn len(&self) -> usize {
        self.inner.lock().data.len()
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes made durable by `sync`.
    pub fn synced_len(&self) -> usize {
        self.inner.lock().synced
    }
}

impl MemStorage {
    fn with<R>(&self, f: impl FnOnce(&mut Mem) -> R) -> io::Result<R> {
        let mut m = self.inner.lock();
        m.calls += 1;
        if m.fail_after.is_some_and(|n| m.calls > n) {
            return Err(io::Error::other("injected I/O failure"));
        }
        Ok(f(&mut m))
    }
}

/// The replacement a [`MemStorage`] rewrite writes (its appends count as
/// calls for [`MemStorage::fail_after`]).
#[derive(Debug)]
pub struct MemRewrite {
    data: Vec<u8>,
    owner: MemStorage,
}

impl RewriteTarget for MemRewrite {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.owner
            .with(|m| m.fault(FaultOn::Append).map_or(Ok(()), Err))??;
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

impl Storage for MemStorage {
    type Rewrite = MemRewrite;

    fn begin_rewrite(&self) -> io::Result<MemRewrite> {
        self.with(|_| ())?;
        Ok(MemRewrite {
            data: Vec::new(),
            owner: self.clone(),
        })
    }

    fn commit_rewrite(&self, next: MemRewrite) -> io::Result<()> {
        // Three steps, each of which an injected fault can stop: the
        // replacement's fsync, the rename, the directory's fsync.
        self.with(|m| m.fault(FaultOn::Sync).map_or(Ok(()), Err))??;
        let len = next.data.len();
        self.with(|m| {
            let old = std::mem::replace(&mut m.data, next.data);
            m.before_rename = Some((old, m.synced));
            m.synced = len;
        })?;
        // A failed directory sync is retried by the next `sync`.
        let _ = self.with(|m| m.before_rename = None);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        self.with(|m| m.data.len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|m| {
            let from = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(m.data.len());
            let n = buf.len().min(m.data.len() - from);
            buf[..n].copy_from_slice(&m.data[from..from + n]);
            n
        })
    }
    fn preserve(&self) -> io::Result<String> {
        self.with(|m| {
            let copy = m.data.clone();
            m.preserved.push(copy);
            format!("<memory>#{}", m.preserved.len())
        })
    }
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        self.with(|m| {
            if let Some(e) = m.fault(FaultOn::Append) {
                return Err(e);
            }
            match m.tear_next.take() {
                Some(keep) => {
                    m.data.extend_from_slice(&bytes[..keep.min(bytes.len())]);
                    Err(io::Error::other("injected short write"))
                }
                None => {
                    m.data.extend_from_slice(bytes);
                    Ok(())
                }
            }
        })?
    }
    fn sync(&self) -> io::Result<()> {
        self.with(|m| {
            if let Some(e) = m.fault(FaultOn::Sync) {
                return Err(e);
            }
            m.synced = m.data.len();
            m.before_rename = None;
            Ok(())
        })?
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.with(|m| {
            m.data.truncate(len as usize);
            m.synced = m.synced.min(m.data.len());
        })
    }
    fn describe(&self) -> String {
        "<memory>".to_owned()
    }
}
