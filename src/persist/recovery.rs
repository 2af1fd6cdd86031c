//! Loading a log: the header, then every record, streamed from the storage
//! in bounded chunks (memory on open is the cache's live data plus a chunk,
//! or one record if a record is larger), never the whole file.
//!
//! Where the records stop early, the rest of the file is examined before
//! anything is cut:
//!
//! - zeros to the end: the space the storage grew the file by; cut quietly
//!   (counted in [`RecoveryReport::zero_fill`]);
//! - damage with no valid record after it (a torn last write, or a few stray
//!   bits in the zero fill): a torn tail, cut and reported (or refused, under
//!   [`OnCorruptTail::Refuse`]);
//! - damage followed by a valid record, or by more than can be checked:
//!   damage inside the log. Loading it would silently drop the records after
//!   the damage, so by default the log is refused
//!   ([`PersistError::Corrupt`]); under [`OnCorruption::SetAside`] the whole
//!   file is first copied aside, untouched, then the records before the
//!   damage are loaded and the rest is cut.

use super::frame::{self, HeaderError, StopReason, FRAME_OVERHEAD, HEADER_LEN, MAX_PAYLOAD};
use super::scan::{self, Found};
use super::storage::Storage;
use super::{OnCorruptTail, OnCorruption, PersistError, RecoveryReport};
use std::io;

/// Bytes read from the storage at a time.
const CHUNK: usize = 1 << 20;
/// How far past damage a valid record is searched for, byte by byte (at
/// least: the search also covers the whole of a bad frame whose length is
/// plausible, so the torn last write of a large record is found to be a
/// tail). See `scan.rs`.
const SCAN_WINDOW: u64 = 1 << 20;
/// A tail with at most this many non-zero bytes among zeros is zero fill
/// with stray bits, not a record.
const STRAY_BYTES: u64 = 8;

/// What to do on damage; the caller's settings.
pub(crate) struct Policy {
    pub(crate) tail: OnCorruptTail,
    pub(crate) inside: OnCorruption,
}

/// Reads a storage through a window of at most [`CHUNK`] bytes (or one
/// record, if larger).
pub(super) struct Reader<'a, S: Storage> {
    storage: &'a S,
    len: u64,
    window: Vec<u8>,
    start: u64,
}

impl<'a, S: Storage> Reader<'a, S> {
    fn new(storage: &'a S, len: u64) -> Self {
        Self {
            storage,
            len,
            window: Vec::new(),
            start: 0,
        }
    }

    /// The storage's length.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `at`; returns how many bytes (fewer at the end).
    fn fill(&self, at: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let got = self
                .storage
                .read_at(at + filled as u64, &mut buf[filled..])?;
            if got == 0 {
                break;
            }
            filled += got;
        }
        Ok(filled)
    }

    /// The bytes in `[from, to)`, in a buffer of their own (the window is
    /// let go first).
    pub(super) fn read(&mut self, from: u64, to: u64) -> io::Result<Vec<u8>> {
        self.window = Vec::new();
        self.start = 0;
        let mut bytes = vec![0; to.min(self.len).saturating_sub(from) as usize];
        let filled = self.fill(from, &mut bytes)?;
        bytes.truncate(filled);
        Ok(bytes)
    }

    /// `crc` (of the bytes before `from`) extended over `[from, to)`, read
    /// a chunk at a time.
    pub(super) fn crc_append(&mut self, mut crc: u32, from: u64, to: u64) -> io::Result<u32> {
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(CHUNK);
            let bytes = self.get(at, n)?;
            if bytes.is_empty() {
                break;
            }
            crc = crc32c::crc32c_append(crc, bytes);
            at += bytes.len() as u64;
        }
        Ok(crc)
    }

    /// The bytes at `[at, at + n)` (fewer at the end of the storage).
    fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.len.saturating_sub(at) as usize);
        if n == 0 {
            return Ok(&[]);
        }
        let end = self.start + self.window.len() as u64;
        if at < self.start || at + n as u64 > end {
            let want = n.max(CHUNK).min((self.len - at) as usize);
            self.window.clear();
            self.window.resize(want, 0);
            let mut window = std::mem::take(&mut self.window);
            let filled = self.fill(at, &mut window);
            self.window = window;
            self.window.truncate(filled?);
            self.start = at;
            if self.window.capacity() > 2 * CHUNK.max(want) {
                self.window.shrink_to(CHUNK.max(want));
            }
        }
        let from = (at - self.start) as usize;
        let to = (from + n).min(self.window.len());
        Ok(&self.window[from..to])
    }

    /// The valid frame at `at`, if one is there: its total length.
    fn frame_at(&mut self, at: u64) -> io::Result<Option<u64>> {
        let head = self.get(at, FRAME_OVERHEAD)?;
        if head.len() < FRAME_OVERHEAD {
            return Ok(None);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_PAYLOAD || at + (FRAME_OVERHEAD + len) as u64 > self.len {
            return Ok(None);
        }
        let payload = self.get(at + FRAME_OVERHEAD as u64, len)?;
        Ok((crc32c::crc32c(payload) == crc).then_some((FRAME_OVERHEAD + len) as u64))
    }

    /// The non-zero bytes in `[from, to)`.
    fn non_zero(&mut self, from: u64, to: u64) -> io::Result<u64> {
        let mut count = 0;
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(CHUNK);
            let bytes = self.get(at, n)?;
            count += bytes.iter().filter(|&&b| b != 0).count() as u64;
            at += n as u64;
        }
        Ok(count)
    }
}

/// What follows the point where the records stopped.
enum After {
    /// Zeros to the end.
    Zeros,
    /// No valid record: a torn tail (`stray`: only a few non-zero bytes
    /// among zeros, and the first of them not a record's header).
    Tail { stray: bool },
    /// A valid record at this offset (or, with `None`, more bytes than the
    /// search could check): damage inside the log.
    Records(Option<u64>),
}

fn examine<S: Storage>(r: &mut Reader<'_, S>, stop: &Stop) -> io::Result<After> {
    let (at, hint) = (stop.at, stop.hint);
    let end = r.len;
    let frame_end = stop.claimed_end.unwrap_or(at);
    let window_end = end.min(at.saturating_add(SCAN_WINDOW).max(frame_end));
    // The search holds the window and the headers of the frames starting
    // in it; past them, it needs to know whether all is zeros.
    let held_end = end.min(window_end + FRAME_OVERHEAD as u64);
    let past = r.non_zero(held_end, end)?;
    let non_zero = r.non_zero(at, held_end)? + past;
    if non_zero == 0 {
        return Ok(After::Zeros);
    }
    // The frame after the damaged one, if its length field was right.
    if let Some(next) = hint.filter(|&n| n > at && n < end) {
        if r.frame_at(next)?.is_some() {
            return Ok(After::Records(Some(next)));
        }
    }
    match scan::search(r, at, window_end, held_end, past == 0)? {
        Found::At(q) => return Ok(After::Records(Some(q))),
        Found::Unchecked => return Ok(After::Records(None)),
        Found::Nothing => {}
    }
    if window_end < end && past + r.non_zero(window_end, held_end)? > 0 {
        // Data past what was searched: it cannot be shown to be a tail.
        return Ok(After::Records(None));
    }
    Ok(After::Tail {
        stray: non_zero <= STRAY_BYTES && end - at > 2 * FRAME_OVERHEAD as u64 && !stop.framed,
    })
}

/// Where the records of the body stopped early, and why.
struct Stop {
    at: u64,
    reason: StopReason,
    /// The end of the bad frame, if its length field was plausible.
    hint: Option<u64>,
    /// Whether the bad frame has a record's shape: a plausible length that
    /// fits in the file and a checksum field that is not zero. A record
    /// whose payload is mostly zeros has only a few non-zero bytes, as
    /// stray bits in zero fill do; this tells the two apart (a stray bit
    /// sets the checksum field and the length together with odds about
    /// 2^-32), so such a record's loss is reported, not taken for noise.
    framed: bool,
    /// Where the bad frame would end, if its length is plausible (at most
    /// [`MAX_PAYLOAD`]), whether or not the file reaches that far.
    claimed_end: Option<u64>,
}

/// Applies every valid record from `HEADER_LEN` on; returns where they end
/// and why, if early.
fn records<S: Storage>(
    r: &mut Reader<'_, S>,
    apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
    report: &mut RecoveryReport,
    io_err: &dyn Fn(io::Error) -> PersistError,
) -> Result<(u64, Option<Stop>), PersistError> {
    let mut at = HEADER_LEN as u64;
    while at < r.len {
        let head = r.get(at, FRAME_OVERHEAD).map_err(io_err)?;
        let stop = |reason, hint, framed, claimed_end| {
            Ok((
                at,
                Some(Stop {
                    at,
                    reason,
                    hint,
                    framed,
                    claimed_end,
                }),
            ))
        };
        if head.iter().all(|&b| b == 0) {
            return stop(StopReason::Torn, None, false, None);
        }
        if head.len() < FRAME_OVERHEAD {
            return stop(StopReason::Torn, None, false, None);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_PAYLOAD {
            return stop(StopReason::BadLength, None, false, None);
        }
        let next = at + (FRAME_OVERHEAD + len) as u64;
        if next > r.len {
            return stop(StopReason::Torn, None, false, Some(next));
        }
        let payload = r.get(at + FRAME_OVERHEAD as u64, len).map_err(io_err)?;
        if crc32c::crc32c(payload) != crc {
            return stop(StopReason::Checksum, Some(next), crc != 0, Some(next));
        }
        apply(payload)?;
        report.records += 1;
        at = next;
    }
    Ok((at, None))
}

/// Loads a log whose header has been checked; returns the report and the
/// length of the valid log. The storage is cut to it, unless `keep`: a log
/// about to be migrated is replaced by a copy of its valid part, so until
/// that replacement is in place the log keeps its damage, and an open that
/// fails before then finds (and reports) the damage again.
fn load<S: Storage>(
    storage: &S,
    name: &str,
    policy: &Policy,
    keep: bool,
    apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
) -> Result<(RecoveryReport, u64), PersistError> {
    let io_err = |e| PersistError::io("reading", name.to_owned(), e);
    let len = storage.size().map_err(io_err)?;
    let mut r = Reader::new(storage, len);
    let mut report = RecoveryReport::default();
    let (valid, stop) = records(&mut r, apply, &mut report, &io_err)?;
    let Some(stop) = stop else {
        return Ok((report, valid));
    };
    let cut = |report: RecoveryReport| -> Result<(RecoveryReport, u64), PersistError> {
        if !keep {
            storage
                .truncate(valid)
                .map_err(|e| PersistError::io("truncating", name.to_owned(), e))?;
        }
        Ok((report, valid))
    };
    match examine(&mut r, &stop).map_err(io_err)? {
        After::Zeros => {
            report.zero_fill = len - valid;
            cut(report)
        }
        After::Tail { stray } => {
            let reason = if stray {
                StopReason::StrayBits
            } else {
                stop.reason
            };
            if policy.tail == OnCorruptTail::Refuse {
                return Err(PersistError::CorruptTail {
                    path: name.to_owned(),
                    offset: valid,
                    reason,
                });
            }
            if stray {
                report.zero_fill = len - valid;
            } else {
                report.bytes_discarded = len - valid;
            }
            report.stopped_at = Some((valid, reason));
            cut(report)
        }
        After::Records(resumes_at) => {
            if policy.inside == OnCorruption::Refuse {
                return Err(PersistError::Corrupt {
                    path: name.to_owned(),
                    offset: valid,
                    reason: stop.reason,
                    resumes_at,
                    bytes_after: len - valid,
                });
            }
            let aside = storage
                .preserve()
                .map_err(|e| PersistError::io("setting aside", name.to_owned(), e))?;
            report.set_aside = Some(aside);
            report.bytes_discarded = len - valid;
            report.stopped_at = Some((valid, stop.reason));
            cut(report)
        }
    }
}

/// Opens a log: checks its header (starting a new one if the file is
/// empty, all zeros, or a header torn during creation), then loads its
/// records. Returns the report and the length of the valid log. A header
/// carrying one of `previous` is accepted too, and reported in
/// [`RecoveryReport::migrated_from`]; the storage is then not cut, and the
/// caller replaces it with the header it expects and the valid log's
/// records.
pub(crate) fn open<S: Storage>(
    storage: &S,
    name: &str,
    fingerprint: u64,
    previous: &[u64],
    policy: &Policy,
    apply: &mut dyn FnMut(&[u8]) -> Result<(), PersistError>,
) -> Result<(RecoveryReport, u64), PersistError> {
    let io_err = |op| move |e| PersistError::io(op, name.to_owned(), e);
    let len = storage.size().map_err(io_err("reading"))?;
    let mut r = Reader::new(storage, len);
    let head = r.get(0, HEADER_LEN).map_err(io_err("reading"))?.to_vec();
    // The start of the header this log would have written, and nothing
    // else: a crash while the log was being created.
    let torn = len < HEADER_LEN as u64
        && std::iter::once(&fingerprint)
            .chain(previous)
            .any(|&f| frame::header(f).starts_with(&head));
    let zeros = head.iter().all(|&b| b == 0)
        && r.non_zero(HEADER_LEN as u64, len)
            .map_err(io_err("reading"))?
            == 0;
    if len == 0 || torn || zeros {
        storage.truncate(0).map_err(io_err("truncating"))?;
        storage
            .append(&frame::header(fingerprint))
            .map_err(io_err("writing the header of"))?;
        storage.sync().map_err(io_err("syncing"))?;
        let report = RecoveryReport {
            torn_header: len > 0,
            ..RecoveryReport::default()
        };
        return Ok((report, HEADER_LEN as u64));
    }
    let path = || name.to_owned();
    let migrated_from = match frame::check_header(&head, fingerprint) {
        Err(HeaderError::Fingerprint { found }) if previous.contains(&found) => Ok(Some(found)),
        checked => checked.map(|()| None),
    }
    .map_err(|e| match e {
        HeaderError::NotALog => PersistError::NotALog { path: path() },
        HeaderError::Version(found) => PersistError::Version {
            path: path(),
            found,
        },
        HeaderError::Fingerprint { found } => PersistError::Fingerprint {
            path: path(),
            found,
            expected: fingerprint,
        },
    })?;
    let (mut report, size) = load(storage, name, policy, migrated_from.is_some(), apply)?;
    report.migrated_from = migrated_from;
    Ok((report, size))
}
