//! Giving a log a new header fingerprint: the first open of a log under a
//! declared schema (see `identity`) whose header still carries its types'
//! fingerprint.
//!
//! The header is never overwritten in place. The records are copied, byte
//! for byte, behind the new header into a rewrite's replacement, which is
//! synced and renamed over the log as a rewrite is: a crash leaves the old
//! file or the new one, each complete, and the cache accepts both. The
//! admission summary beside the log is given the new fingerprint first,
//! so that whichever file a crash leaves, the summary is accepted with it.

use super::frame::{self, HEADER_LEN};
use super::storage::{RewriteTarget, Storage};
use super::summary::{refingerprint, SUMMARY_MAX_BYTES};
use super::{PersistError, RecoveryReport};
use std::io;

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;

/// Replaces the log in `storage` (whose header carries `from`) with one
/// whose header carries `to`, followed by the log's records up to byte
/// `len` (its valid part: damage after it is not copied). A failure is
/// reported with `found`, what the open found in the log
/// ([`PersistError::Migration`]): once the copy is in place the next open
/// finds it clean, so the failed open is where damage left out is told.
pub(crate) fn migrate<S: Storage>(
    storage: &S,
    name: &str,
    len: u64,
    (from, to): (u64, u64),
    found: &RecoveryReport,
) -> Result<(), PersistError> {
    copy_under(storage, name, len, from, to).map_err(|e| PersistError::Migration {
        path: name.to_owned(),
        found: Box::new(found.clone()),
        source: Box::new(e),
    })
}

/// [`migrate`]'s work.
fn copy_under<S: Storage>(
    storage: &S,
    name: &str,
    len: u64,
    from: u64,
    to: u64,
) -> Result<(), PersistError> {
    // Best effort, as summaries always are: one that keeps the old
    // fingerprint is still accepted while the types keep their names.
    if let Ok(Some(summary)) = storage.read_summary(SUMMARY_MAX_BYTES) {
        if let Some(renamed) = refingerprint(&summary, from, to) {
            let _ = storage.write_summary(&renamed);
        }
    }
    let io_err = |e| PersistError::io("replacing the header of", name.to_owned(), e);
    let mut next = storage.begin_rewrite().map_err(io_err)?;
    next.append(&frame::header(to)).map_err(io_err)?;
    let mut buf = vec![0; CHUNK];
    let mut at = HEADER_LEN as u64;
    while at < len {
        let want = usize::try_from(len - at).unwrap_or(CHUNK).min(CHUNK);
        let got = storage.read_at(at, &mut buf[..want]).map_err(io_err)?;
        if got == 0 {
            return Err(io_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the log ended at byte {at} while {len} bytes were being copied"),
            )));
        }
        next.append(&buf[..got]).map_err(io_err)?;
        at += got as u64;
    }
    // The rename counts once the directory is synced (the storage retries
    // a failed directory sync at every sync, before a later write is
    // acknowledged). If the replacement is in place when either step
    // fails, the open goes on: a crash before that sync succeeds brings
    // back the old file, which opens as well, and failing here would lose
    // the report of any damage the copy left out.
    match storage.commit_rewrite(next).and_then(|()| storage.sync()) {
        Ok(()) => Ok(()),
        Err(_) if header_is(storage, to) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// Whether the bytes in place start with the header of `fingerprint`.
fn header_is<S: Storage>(storage: &S, fingerprint: u64) -> bool {
    let mut head = [0; HEADER_LEN];
    matches!(storage.read_at(0, &mut head), Ok(HEADER_LEN)) && head == frame::header(fingerprint)
}
