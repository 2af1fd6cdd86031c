//! [`PersistError`]: what a persistence failure says.

use super::frame::{self, StopReason};

/// A persistence failure; each names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// An I/O operation on the log failed.
    #[error("I/O error {op} {path}: {source}")]
    Io {
        /// What was being done ("appending to", "syncing", ...).
        op: &'static str,
        /// The log.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The log is already open (by another `FileLog`, in this process or another).
    #[error("{path} is locked: it is already open, in this process or another (one FileLog per file at a time)")]
    Locked {
        /// The log.
        path: String,
    },
    /// The file does not start with a shardcache log header.
    #[error("{path} is not a shardcache log (bad magic bytes)")]
    NotALog {
        /// The file.
        path: String,
    },
    /// The log was written by another format version.
    #[error(
        "{path} has log format version {found}; this build reads version {}",
        frame::VERSION
    )]
    Version {
        /// The log.
        path: String,
        /// Its version.
        found: u32,
    },
    /// The header's fingerprint is not this cache's: the log was written
    /// for other key/value types or under another log schema, its types
    /// were renamed or moved, or its header is damaged. A log identified by
    /// its types' names (no schema declared) is stranded by a rename of the
    /// types and by a compiler that prints their names differently: declare
    /// a schema ([`CacheBuilder::log_schema`](crate::CacheBuilder::log_schema))
    /// while the log still opens, and the log is identified by that name
    /// from then on.
    #[error(
        "{path} has fingerprint {found:#018x} where this cache expects {expected:#018x}: it was \
         written for other key/value types or under another log schema, its types were renamed \
         or moved (or the compiler names them differently), or its header is damaged. A log \
         without a declared schema is identified by its key and value type names; declare one \
         with CacheBuilder::log_schema(\"name\") while the log still opens (the same types, \
         the same compiler), and it is identified by that name from then on, whatever the \
         types are called"
    )]
    Fingerprint {
        /// The log.
        path: String,
        /// The fingerprint in the file.
        found: u64,
        /// This cache's fingerprint.
        expected: u64,
    },
    /// The log ends in a bad record and the policy is [`OnCorruptTail::Refuse`](super::OnCorruptTail::Refuse).
    #[error("{path} has a {reason} at byte {offset}")]
    CorruptTail {
        /// The log.
        path: String,
        /// Where the valid prefix ends.
        offset: u64,
        /// What is wrong there.
        reason: StopReason,
    },
    /// The log is damaged inside: a bad record at `offset` is followed by
    /// valid records (or by more than could be checked), so it is not a
    /// torn tail, and loading it would drop those records. Nothing was
    /// changed. Restore the file from a backup, or open it with
    /// [`OnCorruption::SetAside`](super::OnCorruption::SetAside) to keep a copy and load what precedes the
    /// damage.
    #[error(
        "{path} is damaged inside the log: {reason} at byte {offset}, followed by {bytes_after} bytes{}; \
         refusing to load (it is not a torn tail). Open with OnCorruption::SetAside to copy \
         the file aside and load the {offset} bytes before the damage",
        resumes_at.map_or(" that could not be checked".to_owned(), |at| format!(" with valid records again from byte {at}"))
    )]
    Corrupt {
        /// The log.
        path: String,
        /// Where the valid prefix ends.
        offset: u64,
        /// What is wrong there.
        reason: StopReason,
        /// The first valid record found after the damage (`None`: more
        /// bytes follow than the search could check).
        resumes_at: Option<u64>,
        /// Bytes from the damage to the end of the file.
        bytes_after: u64,
    },
    /// A record with a valid checksum did not decode as this cache's types.
    #[error("a log record did not decode: {0}")]
    Decode(String),
    /// A key or value could not be encoded; the write was not applied.
    #[error("a key or value could not be encoded: {0}")]
    Encode(String),
    /// A write's record is larger than a log record may be; the write was
    /// not applied (a log holding it could not be loaded again).
    #[error("a record of {bytes} bytes is over the log's limit of {limit} bytes: the write was not applied")]
    TooLarge {
        /// The record's encoded size.
        bytes: usize,
        /// The largest record a log holds.
        limit: usize,
    },
    /// The log failed earlier and has not been repaired yet: the write was
    /// refused and not applied (Redis's `MISCONF`). Reads go on. The log is
    /// repaired by rewriting it from the cache's state, which a refused write
    /// tries at most once a second and `sync` tries at once; writes resume
    /// when that succeeds.
    #[error("{path}: writes are refused until the log can be written again ({cause})")]
    Refused {
        /// The log.
        path: String,
        /// The failure that stopped the log.
        cause: String,
    },
    /// `sync` or `rewrite_log` was called from user code the cache was
    /// running, where it could wait for itself: from an eviction listener
    /// told of a write being undone after the log failed (the call would
    /// wait for that undo, which waits for the listener), or from code a
    /// cache runs under a shard's lock (a `compute` closure, a `retain`
    /// predicate, a weigher, an expiry rule; the call may wait for a
    /// rollback that waits for that shard). Also `sync` from code that such
    /// a listener waits for (a loader whose load the listener asked for):
    /// the repair would wait for the rollback running the listener. Nothing
    /// was done; make the call after that code returns.
    #[error("{path}: {call} was called from {callback}, where it could wait for itself; nothing was done (call it after that code returns)")]
    InCallback {
        /// The log.
        path: String,
        /// The method called (`"sync"`, `"rewrite_log"`).
        call: &'static str,
        /// The code it was called from.
        callback: &'static str,
    },
    /// Opening a log under a declared schema
    /// ([`CacheBuilder::log_schema`](crate::CacheBuilder::log_schema)) found
    /// it written before the schema was declared, and replacing its header
    /// (a copy of its valid part renamed over it) failed. `found` is what
    /// the open had found in the log: when it was damaged, the file in
    /// place may already be the copy, which the next open finds clean, so
    /// this error is where the damage is reported (under
    /// [`OnCorruption::SetAside`](super::OnCorruption::SetAside) the whole
    /// damaged file is in the copy named by `found.set_aside`).
    #[error(
        "{path}: replacing the log's header with its schema's failed ({source}); {}",
        found_in(found)
    )]
    Migration {
        /// The log.
        path: String,
        /// What the open found in the log before the failure.
        found: Box<super::RecoveryReport>,
        /// The failure.
        #[source]
        source: Box<PersistError>,
    },
    /// The cache's settings are invalid.
    #[error(transparent)]
    Build(#[from] crate::builder::BuildError),
}

/// What an open found, for [`PersistError::Migration`]'s message.
fn found_in(report: &super::RecoveryReport) -> String {
    let mut said = match report.stopped_at {
        None => "the open had found the log undamaged".to_owned(),
        Some((offset, reason)) => match &report.set_aside {
            Some(aside) => format!(
                "the open had found the log damaged inside ({reason} at byte {offset}) and set \
                 the whole file aside at {aside}; the log in place may already hold only the \
                 {offset} bytes before the damage"
            ),
            None => format!(
                "the open had found a {reason} at byte {offset}, and the {} bytes from there \
                 are left out of the copy",
                report.bytes_discarded
            ),
        },
    };
    if report.zero_fill > 0 && report.stopped_at.is_none() {
        said.push_str(" (zero fill after the last record is left out)");
    }
    said
}

impl PersistError {
    pub(crate) fn io(op: &'static str, path: String, source: std::io::Error) -> Self {
        Self::Io { op, path, source }
    }
}
