//! The admission summary: the TinyLFU policy's state saved beside the log
//! with each rewrite, so a reopened cache does not start from a cold policy.
//!
//! The sketch itself cannot be saved: it is indexed by the cache's hasher,
//! which is randomly keyed per process. The summary holds instead one byte
//! per record of the rewrite's snapshot, in the snapshot's order (the
//! snapshot is the first part of the rewritten log): the segment the
//! entry was in, its key's frequency estimate and its hits not yet counted;
//! and the share of the cache the adaptive window had reached. On open,
//! each entry goes back to its segment, ordered by its estimate, with its
//! hits, whatever the new cache's capacity or shard count: the summary
//! carries no sketch geometry. (The estimates are not written into the new
//! sketch; see `TinyLfu::restore`.)
//!
//! # Format (version 1, little-endian)
//!
//! | bytes | field |
//! |-------|-------|
//! | 4 | magic `SCAS` |
//! | 4 | version |
//! | 8 | key/value type fingerprint (as the log's header) |
//! | 8 | `records`: snapshot records described |
//! | 4 | CRC-32C over those records (each as its length, `u32`, then its bytes) |
//! | 8 | the adaptive window's share (`f64` bits; NaN when the policy does not adapt) |
//! | `records` | one byte per record: its key's sketch estimate (bits 0-3), the policy segment its entry was in (bits 4-5: 0 window, 1 probation, 2 protected) and its hits not yet counted in the sketch (bits 6-7, at most 3) |
//! | 4 | CRC-32C of everything before |
//!
//! A summary is used only if every check passes and the log's first
//! `records` records are exactly the ones it describes (same count, same
//! checksum); otherwise it is reported ([`AdmissionRestore::Ignored`]) and
//! the cache starts cold. A summary never causes a log to be refused, and
//! no record is dropped over it.

use crate::policy::Saved;

/// The magic bytes a summary starts with.
const MAGIC: [u8; 4] = *b"SCAS";
/// The format version this build writes and reads.
pub const SUMMARY_VERSION: u32 = 1;
/// Bytes before the estimates.
const HEADER: usize = 36;
/// The largest summary read (half a billion keys): a longer file is
/// refused before anything is allocated for it.
pub const SUMMARY_MAX_BYTES: u64 = 256 << 20;

/// Why an admission summary was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SummaryError {
    /// It could not be read.
    #[error("the admission summary could not be read: {0}")]
    Io(String),
    /// It is longer than [`SUMMARY_MAX_BYTES`].
    #[error("the admission summary is {0} bytes, more than the {SUMMARY_MAX_BYTES} accepted")]
    TooLarge(u64),
    /// It does not start with the summary's magic bytes, or is shorter than a header.
    #[error("not an admission summary (bad magic bytes or shorter than a header)")]
    NotASummary,
    /// Another format version.
    #[error("admission summary format version {0}; this build reads version {SUMMARY_VERSION}")]
    Version(u32),
    /// Its checksum does not match its bytes.
    #[error("the admission summary is damaged (checksum mismatch)")]
    Checksum,
    /// Written for other key/value types.
    #[error("the admission summary was written for other key/value types")]
    Fingerprint,
    /// Its record count does not match its length.
    #[error("the admission summary's record count ({0}) does not match its length")]
    Length(u64),
    /// The log does not start with the records it describes: it belongs to
    /// another rewrite (a crash between the log's rewrite and the summary's),
    /// or the log was cut.
    #[error("the admission summary does not describe this log's records (another rewrite's, or the log was cut)")]
    Mismatch,
    /// The cache's policy keeps no frequency sketch.
    #[error("the cache's policy keeps no frequency sketch")]
    NoSketch,
}

/// What became of the admission summary when a log was opened (in
/// [`RecoveryReport::admission`](super::RecoveryReport::admission)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdmissionRestore {
    /// There was none (the log was never rewritten, or its storage keeps
    /// no summary): the cache started cold.
    #[default]
    Missing,
    /// Estimates were restored for `keys` keys.
    Restored {
        /// Keys whose estimate was restored.
        keys: u64,
    },
    /// One was found and not used: the cache started cold.
    Ignored(SummaryError),
}

/// Folds one record into a running records checksum.
fn chain(crc: u32, record: &[u8]) -> u32 {
    let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
    crc32c::crc32c_append(crc32c::crc32c_append(crc, &len.to_le_bytes()), record)
}

/// Collects a summary while a rewrite's snapshot is emitted.
#[derive(Debug, Default)]
pub(crate) struct SummaryWriter {
    estimates: Vec<u8>,
    crc: u32,
    /// The adaptive window's share, if the policy adapts.
    pub(crate) window: Option<f64>,
}

impl SummaryWriter {
    /// Notes the next snapshot record and what is saved of its entry.
    pub(crate) fn record(&mut self, record: &[u8], saved: Saved) {
        self.crc = chain(self.crc, record);
        self.estimates.push(saved.pack());
    }

    /// The summary's bytes.
    pub(crate) fn finish(&self, fingerprint: u64) -> Vec<u8> {
        let n = self.estimates.len();
        let mut out = Vec::with_capacity(HEADER + n + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SUMMARY_VERSION.to_le_bytes());
        out.extend_from_slice(&fingerprint.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.extend_from_slice(&self.window.unwrap_or(f64::NAN).to_bits().to_le_bytes());
        out.extend_from_slice(&self.estimates);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// A decoded summary, matched against the log's records as they replay.
#[derive(Debug)]
pub(crate) struct SummaryReader {
    records: u64,
    expected_crc: u32,
    /// The adaptive window's share saved, if any.
    pub(crate) window: Option<f64>,
    packed: Vec<u8>,
    seen: u64,
    crc: u32,
}

/// `summary` with fingerprint `to` in place of `from` (its checksum
/// updated), or `None` if it is not an intact summary carrying `from`.
pub(crate) fn refingerprint(summary: &[u8], from: u64, to: u64) -> Option<Vec<u8>> {
    let body = summary.len().checked_sub(4)?;
    let intact = body >= HEADER
        && summary[..4] == MAGIC
        && crc32c::crc32c(&summary[..body]) == le_u32(summary, body);
    if !intact || le_u64(summary, 8) != from {
        return None;
    }
    let mut out = summary[..body].to_vec();
    out[8..16].copy_from_slice(&to.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(b.get(at..at + 4).unwrap_or(&[0; 4]));
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(b.get(at..at + 8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(a)
}

impl SummaryReader {
    /// Checks and decodes a summary for a log of one of `fingerprints`.
    pub(crate) fn decode(bytes: Vec<u8>, fingerprints: &[u64]) -> Result<Self, SummaryError> {
        if bytes.len() as u64 > SUMMARY_MAX_BYTES {
            return Err(SummaryError::TooLarge(bytes.len() as u64));
        }
        if bytes.len() < HEADER + 4 || bytes[..4] != MAGIC {
            return Err(SummaryError::NotASummary);
        }
        let body = bytes.len() - 4;
        if crc32c::crc32c(&bytes[..body]) != le_u32(&bytes, body) {
            return Err(SummaryError::Checksum);
        }
        let version = le_u32(&bytes, 4);
        if version != SUMMARY_VERSION {
            return Err(SummaryError::Version(version));
        }
        if !fingerprints.contains(&le_u64(&bytes, 8)) {
            return Err(SummaryError::Fingerprint);
        }
        let records = le_u64(&bytes, 16);
        if records != (body - HEADER) as u64 {
            return Err(SummaryError::Length(records));
        }
        let expected_crc = le_u32(&bytes, 24);
        let window = Some(f64::from_bits(le_u64(&bytes, 28))).filter(|w| w.is_finite());
        let mut packed = bytes;
        packed.truncate(body);
        packed.drain(..HEADER);
        Ok(Self {
            records,
            expected_crc,
            window,
            packed,
            seen: 0,
            crc: 0,
        })
    }

    /// Notes the next replayed record; returns what the summary holds for
    /// it (packed: see [`Saved::unpack`]), if it is one of the records
    /// described.
    pub(crate) fn next(&mut self, record: &[u8]) -> Option<u8> {
        if self.seen >= self.records {
            return None;
        }
        let i = self.seen;
        self.seen += 1;
        self.crc = chain(self.crc, record);
        self.packed.get(usize::try_from(i).ok()?).copied()
    }

    /// Whether the replayed log started with exactly the records described.
    pub(crate) fn matched(&self) -> Result<(), SummaryError> {
        if self.seen == self.records && self.crc == self.expected_crc {
            Ok(())
        } else {
            Err(SummaryError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u8) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut w = SummaryWriter::default();
        let records: Vec<Vec<u8>> = (0..n).map(|i| vec![i; usize::from(i) + 1]).collect();
        for (i, r) in records.iter().enumerate() {
            let saved = Saved {
                estimate: (i % 16) as u8,
                segment: (i % 3) as u8,
                hits: (i % 4) as u8,
            };
            w.record(r, saved);
        }
        w.window = Some(0.25);
        (records, w.finish(7))
    }

    #[test]
    fn round_trip_gives_each_record_its_estimate() {
        for n in [0, 1, 2, 5, 40] {
            let (records, bytes) = sample(n);
            let mut r = SummaryReader::decode(bytes, &[7]).expect("decodes");
            assert_eq!(r.window, Some(0.25));
            for (i, rec) in records.iter().enumerate() {
                let got = r.next(rec).map(Saved::unpack);
                let want = Saved {
                    estimate: (i % 16) as u8,
                    segment: (i % 3) as u8,
                    hits: (i % 4) as u8,
                };
                assert_eq!(got, Some(want));
            }
            assert_eq!(r.next(b"tail"), None);
            assert_eq!(r.matched(), Ok(()));
        }
    }

    #[test]
    fn other_records_or_a_short_log_do_not_match() {
        let (records, bytes) = sample(5);
        let mut r = SummaryReader::decode(bytes.clone(), &[7]).expect("decodes");
        for rec in &records[..4] {
            r.next(rec);
        }
        assert_eq!(r.matched(), Err(SummaryError::Mismatch));
        let mut r = SummaryReader::decode(bytes, &[7]).expect("decodes");
        for rec in &records {
            r.next(&rec[1..]);
        }
        assert_eq!(r.matched(), Err(SummaryError::Mismatch));
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_refused() {
        let (_, bytes) = sample(9);
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(SummaryReader::decode(b, &[7]).is_err(), "bit {i}");
        }
        for len in 0..bytes.len() {
            assert!(SummaryReader::decode(bytes[..len].to_vec(), &[7]).is_err());
        }
        assert_eq!(
            SummaryReader::decode(bytes, &[8]).err(),
            Some(SummaryError::Fingerprint)
        );
    }

    #[test]
    fn a_summary_takes_a_new_fingerprint_and_nothing_else_changes() {
        let (records, bytes) = sample(5);
        let renamed = refingerprint(&bytes, 7, 9).expect("renamed");
        assert_eq!(renamed.len(), bytes.len());
        assert_eq!(
            SummaryReader::decode(renamed.clone(), &[7]).err(),
            Some(SummaryError::Fingerprint)
        );
        let mut r = SummaryReader::decode(renamed.clone(), &[9, 7]).expect("decodes");
        for rec in &records {
            assert!(r.next(rec).is_some());
        }
        assert_eq!(r.matched(), Ok(()));
        // Only an intact summary carrying the old fingerprint is renamed.
        assert_eq!(refingerprint(&renamed, 7, 11), None);
        let mut damaged = bytes.clone();
        damaged[20] ^= 1;
        assert_eq!(refingerprint(&damaged, 7, 9), None);
        assert_eq!(refingerprint(&bytes[..10], 7, 9), None);
    }

    #[test]
    fn hostile_headers_are_refused_without_allocating() {
        // A valid checksum around an absurd record count or version.
        for (records, version) in [(u64::MAX, 1), (1 << 40, 1), (3, 99)] {
            let mut b = Vec::new();
            b.extend_from_slice(b"SCAS");
            b.extend_from_slice(&u32::to_le_bytes(version));
            b.extend_from_slice(&7u64.to_le_bytes());
            b.extend_from_slice(&u64::to_le_bytes(records));
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes());
            b.extend_from_slice(&[0x11, 0x22, 0x33]);
            let crc = crc32c::crc32c(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            let err = SummaryReader::decode(b, &[7]).err();
            assert!(
                matches!(
                    err,
                    Some(SummaryError::Length(_) | SummaryError::Version(99))
                ),
                "{err:?}"
            );
        }
    }
}
