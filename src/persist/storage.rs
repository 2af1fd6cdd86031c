//! The byte-level seam under [`FileLog`](super::FileLog): a file in
//! production ([`FileStorage`](super::FileStorage), `storage_file.rs`),
//! memory with injected faults or simulated power loss in tests
//! ([`MemStorage`](super::MemStorage), `storage_mem.rs`).

use std::io;

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
