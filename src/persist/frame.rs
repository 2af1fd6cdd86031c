//! The log's byte format: a header, then framed records. Pure functions, no I/O.
//!
//! ```text
//! header: b"SHRDCLOG" | version: u32 LE | fingerprint: u64 LE       (20 bytes)
//! record: len: u32 LE | crc32c(payload): u32 LE | payload: len bytes
//! ```
//!
//! A reader accepts records up to the first one that is torn (runs past the
//! end) or corrupt (bad checksum, absurd length), and says where and why it
//! stopped.

/// The file's magic bytes.
pub(crate) const MAGIC: &[u8; 8] = b"SHRDCLOG";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Bytes in the header.
pub(crate) const HEADER_LEN: usize = 20;
/// Bytes of framing before each payload.
pub(crate) const FRAME_OVERHEAD: usize = 8;
/// The largest payload a frame may carry (anything larger is corruption).
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

/// The header for a log of the given type fingerprint.
pub(crate) fn header(fingerprint: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..].copy_from_slice(&fingerprint.to_le_bytes());
    h
}

/// What is wrong with a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    NotALog,
    Version(u32),
    Fingerprint { found: u64 },
}

/// Checks a header against the expected fingerprint.
pub(crate) fn check_header(bytes: &[u8], fingerprint: u64) -> Result<(), HeaderError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(HeaderError::NotALog);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[12..20]);
    let found = u64::from_le_bytes(fp);
    if found != fingerprint {
        return Err(HeaderError::Fingerprint { found });
    }
    Ok(())
}

/// Appends one framed record to `out`.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why a reader stopped before the end of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The last record runs past the end of the file (a write cut short).
    Torn,
    /// A record's checksum does not match its bytes.
    Checksum,
    /// A record claims an impossible length (zero, or over the maximum).
    BadLength,
}

/// Walks the records of `body` (the bytes after the header): calls `each`
/// with every valid payload, and returns the length of the valid prefix and
/// why it stopped, if it stopped early.
///
/// Zeros from some offset to the end are space a [`FileStorage`] grew the
/// file by ahead of the log: the log ends there, cleanly (`None` with a
/// valid prefix shorter than `body`). Logs never hold empty records (whose
/// frame would be all zeros too): a zero length is corruption.
///
/// [`FileStorage`]: super::FileStorage
pub(crate) fn decode(body: &[u8], mut each: impl FnMut(&[u8])) -> (usize, Option<StopReason>) {
    let mut pos = 0;
    while pos < body.len() {
        let rest = &body[pos..];
        if rest[0] == 0 && rest.iter().all(|&b| b == 0) {
            return (pos, None);
        }
        if rest.len() < FRAME_OVERHEAD {
            return (pos, Some(StopReason::Torn));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_PAYLOAD {
            return (pos, Some(StopReason::BadLength));
        }
        let Some(payload) = rest.get(FRAME_OVERHEAD..FRAME_OVERHEAD + len) else {
            return (pos, Some(StopReason::Torn));
        };
        if crc32c::crc32c(payload) != crc {
            return (pos, Some(StopReason::Checksum));
        }
        each(payload);
        pos += FRAME_OVERHEAD + len;
    }
    (pos, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    #[test]
    fn round_trip() {
        let body = log(&[b"a", b"b", b"hello"]);
        let mut seen = Vec::new();
        assert_eq!(decode(&body, |p| seen.push(p.to_vec())), (body.len(), None));
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec(), b"hello".to_vec()]);
    }

    #[test]
    fn trailing_zeros_are_the_clean_end_of_the_log() {
        let body = log(&[b"a", b"hello"]);
        for zeros in [1, 7, 8, 100] {
            let mut padded = body.clone();
            padded.resize(body.len() + zeros, 0);
            let mut n = 0;
            assert_eq!(decode(&padded, |_| n += 1), (body.len(), None));
            assert_eq!(n, 2);
        }
        // Zeros followed by anything else are not padding.
        let mut bad = body.clone();
        bad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(decode(&bad, |_| ()).1.is_some());
    }

    #[test]
    fn every_truncation_loads_a_prefix() {
        let body = log(&[b"first", b"second", b"third"]);
        for cut in 0..body.len() {
            let mut n = 0;
            let (valid, stop) = decode(&body[..cut], |_| n += 1);
            assert!(valid <= cut);
            assert_eq!(stop.is_some(), valid < cut, "cut at {cut}");
            assert!(n <= 3);
        }
    }

    #[test]
    fn a_flipped_bit_stops_at_its_record() {
        let body = log(&[b"first", b"second", b"third"]);
        let second = FRAME_OVERHEAD + 5;
        for i in second..body.len() {
            let mut bad = body.clone();
            bad[i] ^= 0x10;
            let mut seen = Vec::new();
            let (valid, stop) = decode(&bad, |p| seen.push(p.to_vec()));
            assert!(stop.is_some(), "flip at {i} went unnoticed");
            assert!(valid >= second || seen.is_empty());
            assert_eq!(seen.first().map(Vec::as_slice), Some(&b"first"[..]));
        }
    }

    #[test]
    fn headers_are_checked() {
        let h = header(7);
        assert_eq!(check_header(&h, 7), Ok(()));
        assert_eq!(
            check_header(&h, 8),
            Err(HeaderError::Fingerprint { found: 7 })
        );
        assert_eq!(check_header(b"nope", 7), Err(HeaderError::NotALog));
        let mut v2 = h;
        v2[8] = 2;
        assert_eq!(check_header(&v2, 7), Err(HeaderError::Version(2)));
    }
}
