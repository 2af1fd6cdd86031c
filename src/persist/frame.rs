//! The log's byte format: a header, then framed records. Pure functions, no I/O.
//!
//! ```text
//! header: b"SHRDCLOG" | version: u32 LE | fingerprint: u64 LE       (20 bytes)
//! record: len: u32 LE | crc32c(payload): u32 LE | payload: len bytes
//! ```
//!
//! Recovery (`recovery.rs`) reads records up to the first one that is torn
//! (runs past the end) or corrupt (bad checksum, absurd length), and decides
//! from what follows whether that is a torn tail or damage inside the log.

/// The file's magic bytes.
pub(crate) const MAGIC: &[u8; 8] = b"SHRDCLOG";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Bytes in the header.
pub(crate) const HEADER_LEN: usize = 20;
/// Bytes of framing before each payload.
pub(crate) const FRAME_OVERHEAD: usize = 8;
/// The largest payload a frame may carry (anything larger is corruption):
/// 1 GiB + 1 MiB, so a record of two 512 MiB strings (a Redis key and value
/// at `proto-max-bulk-len`) and its encoding fits. The format (version 1)
/// does not depend on it: logs written under a lower limit (256 MiB) open
/// as they are.
pub(crate) const MAX_PAYLOAD: usize = (1 << 30) + (1 << 20);

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

/// Appends one framed record to `out`. Records are refused above
/// [`MAX_PAYLOAD`] when they are encoded, so the length fits its field.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_PAYLOAD, "record over MAX_PAYLOAD");
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
    /// A few non-zero bytes in the zero fill after the last record (stray
    /// bits, not a record): every record was loaded.
    StrayBits,
}

/// Why a torn or corrupt tail was cut, for reports.
impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Torn => "torn record (cut short)",
            Self::Checksum => "checksum mismatch",
            Self::BadLength => "impossible record length",
            Self::StrayBits => "stray non-zero bytes in the zero fill after the last record",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
