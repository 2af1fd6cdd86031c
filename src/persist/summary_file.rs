//! The admission summary's file beside a log: `<log>.admission`, replaced
//! atomically (written to `<log>.admission.tmp`, fsynced, renamed over,
//! directory fsynced).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// `<log>.<suffix>`.
fn beside(log: &Path, suffix: &str) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The summary's path for the log at `log`.
pub(super) fn path_for(log: &Path) -> PathBuf {
    beside(log, ".admission")
}

/// Replaces the summary of the log at `log` with `bytes`.
pub(super) fn write(log: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = beside(log, ".admission.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path_for(log))?;
    let dir = match log.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The summary of the log at `log`, if there is one; longer than `limit`
/// bytes is an error (nothing is read).
pub(super) fn read(log: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let path = path_for(log);
    // Checked before opening: opening a FIFO for reading waits for a
    // writer, and reading a device may never end.
    match std::fs::metadata(&path) {
        Ok(meta) if !meta.is_file() => return Err(not_a_file()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {limit} accepted"),
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // At most `limit + 1` bytes even if the file grows meanwhile.
    file.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "grew past the limit",
        ));
    }
    Ok(Some(out))
}

/// The error for a path that exists but is not a regular file.
pub(super) fn not_a_file() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}
