//! The byte-level seam under [`FileLog`](super::FileLog): a file in
//! production, memory with injected faults or simulated power loss in tests.

use crate::sync::{Arc, Mutex};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where a log's bytes live. Appends are serialized by the log; `sync` may
/// run concurrently with an append and must make durable at least every byte
/// appended before it was called.
pub trait Storage: Send + Sync + 'static {
    /// Every byte, from the start.
    fn read_all(&self) -> io::Result<Vec<u8>>;
    /// Adds `bytes` at the end (handed to the OS before returning).
    fn append(&self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Cuts the storage to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// A name for error messages (a path).
    fn describe(&self) -> String;
}

/// A file, locked against other processes while open.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
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
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "locked by another process",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }
}

impl Storage for FileStorage {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut f = &self.file;
        f.seek(SeekFrom::End(0))?;
        f.write_all(bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
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

    /// Simulates a power loss: keeps the synced bytes and `keep` of the
    /// unsynced ones (a torn write), drops the rest; clears injected faults.
    pub fn power_loss(&self, keep: usize) {
        let mut m = self.inner.lock();
        let end = (m.synced + keep).min(m.data.len());
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

impl Storage for MemStorage {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.with(|m| m.data.clone())
    }
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        self.with(|m| m.data.extend_from_slice(bytes))
    }
    fn sync(&self) -> io::Result<()> {
        self.with(|m| m.synced = m.data.len())
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
