//! The search for a valid record after a bad frame: at every offset of the
//! search window, a length that fits in the file is a candidate, valid if
//! its checksum matches.
//!
//! A large record's payload can claim a plausible length at most of its
//! offsets (a run of `1u32`, small numbers, random bytes: about one offset
//! in `2^32 / (bytes left)`), so checksumming each candidate's payload
//! would cost the window's length times the payloads', and a torn large
//! record could not be shown to be a tail. Instead the search holds the
//! window's bytes and the checksums of their prefixes at every
//! [`STRIDE`](super::crc::STRIDE)th byte, and gets each candidate's checksum
//! from two prefixes (see `crc.rs`): at most `2 * STRIDE` bytes of hardware
//! CRC and at most three multiplications in GF(2)[x], whatever its
//! length. The search is linear in the window, so recovery time is bounded
//! by the largest frame. Measured in a release build (x86-64 with SSE
//! 4.2), a torn record of the largest size
//! ([`MAX_PAYLOAD`]) opens in 25-30 s when every offset claims one of a
//! few lengths (bytes all `0x01`, `01 00 00 00` repeated), in about 32 s
//! when it is random bytes (one offset in eight a candidate), and in about
//! 73 s at worst, when every offset claims a length that fits and each
//! candidate's end is a random read (bytes below 16, as in postcard's small
//! numbers). Long candidates are checked in batches so that those reads
//! overlap.
//!
//! Memory: the window's bytes (one frame of the largest size, at most, as
//! loading such a record would hold) and 1/32 of that for the prefixes.
//! Candidates that run past the window into more data (damage inside the
//! log, where the search only says where records resume) are checksummed
//! from the storage in chunks, up to a budget.

use super::crc::{Prefixes, Shift};
use super::frame::{FRAME_OVERHEAD, MAX_PAYLOAD};
use super::recovery::Reader;
use super::storage::Storage;
use std::io;

/// Payloads up to this long are checksummed directly.
const DIRECT: usize = 2 * super::crc::STRIDE;
/// The most payload bytes checksummed from the storage, for candidates
/// running past the window into data, before the search gives up (a file
/// of adversarial lengths cannot make it quadratic): one frame of the
/// largest size, so the first such candidate is always checked.
const BUDGET: u64 = MAX_PAYLOAD as u64;

/// What the search found.
pub(super) enum Found {
    /// A valid frame at this offset.
    At(u64),
    /// No valid frame in the window.
    Nothing,
    /// More candidates than the budget could check.
    Unchecked,
}

/// Long candidates checked together: each one's end is a random read
/// in the window, and a batch's reads overlap.
const BATCH: usize = 32;

/// A long candidate waiting in a batch.
struct Pending {
    q: u64,
    /// Its payload, in the held bytes.
    i: usize,
    j: usize,
    crc: u32,
}

/// The bytes from the start of the window, and what is known of the rest.
struct Held {
    data: Vec<u8>,
    /// Whether every byte after `data` is zero.
    zeros_after: bool,
    /// Made on the first long candidate.
    prefixes: Option<Prefixes>,
    shift: Option<Shift>,
    /// The last shift's length and power of x (a payload repeating one
    /// length field claims it at every offset).
    last: (u64, u32),
    batch: Vec<Pending>,
}

impl Held {
    fn new(data: Vec<u8>, zeros_after: bool) -> Self {
        Self {
            data,
            zeros_after,
            prefixes: None,
            shift: None,
            last: (0, 0),
            batch: Vec::with_capacity(BATCH),
        }
    }

    /// Queues a long candidate, first reading what its check will need.
    fn queue(&mut self, pending: Pending) {
        let data = &self.data;
        let prefixes = self.prefixes.get_or_insert_with(|| Prefixes::new(data));
        prefixes.touch(data, pending.j);
        self.batch.push(pending);
    }

    /// Checks the queued candidates, in order; the first valid one.
    fn flush(&mut self) -> Option<u64> {
        let mut batch = std::mem::take(&mut self.batch);
        let found = batch.iter().find(|p| self.crc(p.i, p.j) == p.crc);
        let found = found.map(|p| p.q);
        batch.clear();
        self.batch = batch;
        found
    }

    /// `crc` shifted by `n` bytes of zeros.
    fn apply(&mut self, crc: u32, n: u64) -> u32 {
        let shift = self.shift.get_or_insert_with(Shift::new);
        if self.last.0 != n {
            self.last = (n, shift.power(n));
        }
        shift.multiply(crc, self.last.1)
    }

    /// The checksum of `data[i..j]`.
    fn crc(&mut self, i: usize, j: usize) -> u32 {
        if j - i <= DIRECT {
            return crc32c::crc32c(&self.data[i..j]);
        }
        let data = &self.data;
        let shift = self.shift.get_or_insert_with(Shift::new);
        let prefixes = self.prefixes.get_or_insert_with(|| Prefixes::new(data));
        let (at_i, at_j) = (prefixes.running(data, i, shift), prefixes.at(data, j));
        at_j ^ self.apply(at_i, (j - i) as u64)
    }

    /// The checksum of `data[i..]` followed by `zeros` zeros.
    fn crc_then_zeros(&mut self, i: usize, zeros: u64) -> u32 {
        let held = self.crc(i, self.data.len());
        let shift = self.shift.get_or_insert_with(Shift::new);
        shift.apply(held, zeros) ^ shift.zeros(zeros)
    }
}

/// Searches every offset in `(at, window_end)` for a valid frame; returns
/// the first.
pub(super) fn search<S: Storage>(
    r: &mut Reader<'_, S>,
    at: u64,
    window_end: u64,
    held_end: u64,
    zeros_after: bool,
) -> io::Result<Found> {
    let end = r.len();
    let mut held = Held::new(r.read(at, held_end)?, zeros_after);
    let mut budget = BUDGET;
    for k in 1..(window_end - at) as usize {
        let Some(head) = held.data.get(k..k + FRAME_OVERHEAD) else {
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let q = at + k as u64;
        if len == 0 || len > MAX_PAYLOAD || q + (FRAME_OVERHEAD + len) as u64 > end {
            continue;
        }
        let (i, j) = (k + FRAME_OVERHEAD, k + FRAME_OVERHEAD + len);
        let past = j.saturating_sub(held.data.len());
        let found = if past == 0 && len > DIRECT {
            held.queue(Pending { q, i, j, crc });
            if held.batch.len() == BATCH {
                if let Some(q) = held.flush() {
                    return Ok(Found::At(q));
                }
            }
            continue;
        } else if past == 0 {
            crc32c::crc32c(&held.data[i..j])
        } else {
            // The queued candidates come first, and move the running
            // prefix only forward.
            if let Some(q) = held.flush() {
                return Ok(Found::At(q));
            }
            if held.zeros_after {
                held.crc_then_zeros(i, past as u64)
            } else {
                if len as u64 > budget {
                    return Ok(Found::Unchecked);
                }
                budget -= len as u64;
                let start = crc32c::crc32c(&held.data[i..]);
                r.crc_append(start, held_end, held_end + past as u64)?
            }
        };
        if found == crc {
            return Ok(Found::At(held.flush().unwrap_or(q)));
        }
    }
    Ok(held.flush().map_or(Found::Nothing, Found::At))
}
