//! [`MemStorage`]: a log's bytes in memory, for tests: which bytes are
//! durable, simulated power loss, and injected faults.

use super::storage::{RewriteTarget, Storage};
use crate::sync::{Arc, Mutex};
use std::io;

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
    /// One call that fails (by its number), the others going through.
    fail_once: Option<u64>,
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

    /// The call after the next `n` fails with an I/O error; the calls
    /// after it go through again (a transient failure, such as one
    /// directory sync).
    pub fn fail_once_after(&self, n: u64) {
        let mut m = self.inner.lock();
        m.fail_once = Some(m.calls + n + 1);
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

    /// Clears injected faults (`fail_after`, `fail_once_after`,
    /// `tear_next_append`, `inject`).
    pub fn heal(&self) {
        let mut m = self.inner.lock();
        m.fail_after = None;
        m.fail_once = None;
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
        if m.fail_after.is_some_and(|n| m.calls > n) || m.fail_once == Some(m.calls) {
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
