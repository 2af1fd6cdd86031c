//! The bitmap commands on string values: `SETBIT`, `GETBIT`, `BITCOUNT`
//! and `BITPOS`, as Redis 7.0's `bitops.c` answers them.
//!
//! Bits are numbered from the first byte's most significant bit (bit 0)
//! on, so bit `n` is `0x80 >> (n % 8)` of byte `n / 8`. A bit offset is at
//! most 2^32 − 1 (the last bit of a 512 MiB value); a missing key, and any
//! bit past a value's end, reads as 0.

use super::command::{key, option};
use super::parse::parse_i64;
use super::{append, partial};
use super::{weigh, KvError, KvStore, Reply, MAX_STRING_LEN};
use crate::Decision;
use std::cell::Cell;

/// How [`BitRange`]'s positions count: in bytes (Redis's default) or bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BitUnit {
    /// Positions are byte indexes: `BYTE`.
    #[default]
    Byte,
    /// Positions are bit indexes: `BIT`.
    Bit,
}

/// The part of a value `BITCOUNT` and `BITPOS` look at: `start` to `end`,
/// both included, in [`BitUnit`]s; negative positions count from the end
/// (-1 is the last byte or bit). Without an `end` it runs to the value's
/// end (and `BITPOS` for a clear bit finds the first bit past the value
/// when the value has none, as Redis does when no end is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BitRange {
    /// The first position.
    pub start: i64,
    /// The last position, if given.
    pub end: Option<i64>,
    /// Whether the positions are bytes or bits.
    pub unit: BitUnit,
}

impl BitRange {
    /// The whole value (`BITCOUNT key`, `BITPOS key bit`).
    pub fn all() -> Self {
        Self::default()
    }

    /// From byte `start` to the value's end (`BITPOS key bit start`).
    pub fn from_byte(start: i64) -> Self {
        Self {
            start,
            ..Self::default()
        }
    }

    /// Bytes `start` to `end`, both included (`... start end [BYTE]`).
    pub fn bytes(start: i64, end: i64) -> Self {
        Self {
            start,
            end: Some(end),
            unit: BitUnit::Byte,
        }
    }

    /// Bits `start` to `end`, both included (`... start end BIT`).
    pub fn bits(start: i64, end: i64) -> Self {
        Self {
            start,
            end: Some(end),
            unit: BitUnit::Bit,
        }
    }

    /// The bits it covers in a value of `len` bytes, first and last
    /// included, as Redis 7.0 resolves the positions: each counted from the
    /// end when negative and then raised to 0, the end lowered to the
    /// value's last position; `None` when that leaves nothing.
    fn resolve(self, len: usize) -> Option<(u64, u64)> {
        let per = if self.unit == BitUnit::Bit { 8 } else { 1 };
        let total = i64::try_from(len).unwrap_or(i64::MAX).saturating_mul(per);
        let at = |i: i64| if i < 0 { total + i } else { i }.max(0);
        let start = at(self.start);
        let end = at(self.end.unwrap_or(-1)).min(total - 1);
        if start > end {
            return None;
        }
        let (start, end) = (start.unsigned_abs(), end.unsigned_abs());
        Some(match self.unit {
            BitUnit::Byte => (start * 8, end * 8 + 7),
            BitUnit::Bit => (start, end),
        })
    }
}

/// The byte holding bit `offset`, if the offset is within 2^32 − 1.
fn byte_of(offset: u64) -> Result<usize, KvError> {
    usize::try_from(offset >> 3)
        .ok()
        .filter(|&b| b < MAX_STRING_LEN)
        .ok_or(KvError::BitOffsetOutOfRange)
}

/// Bit `offset`'s mask within its byte.
fn mask(offset: u64) -> u8 {
    0x80 >> (offset & 7)
}

/// The number of set bits in `bytes`.
fn popcount(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let tail: u64 = words
        .remainder()
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    words.map(|w| u64::from(word(w).count_ones())).sum::<u64>() + tail
}

/// Eight bytes as one word, to test or count them at once.
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

/// The set bits of `v` from bit `first` to bit `last`, both included (both
/// within `v`).
fn count(v: &[u8], first: u64, last: u64) -> u64 {
    let (a, b) = (byte_index(first), byte_index(last));
    let before = v[a] & !(0xFF >> (first & 7));
    let after = v[b] & (0xFFu16 >> ((last & 7) + 1)) as u8;
    popcount(&v[a..=b]) - u64::from(before.count_ones()) - u64::from(after.count_ones())
}

/// The byte holding bit `bit` of a value.
fn byte_index(bit: u64) -> usize {
    usize::try_from(bit >> 3).unwrap_or(usize::MAX)
}

/// The first bit of `v` equal to `bit` from bit `first` to bit `last`,
/// both included (both within `v`).
fn position(v: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let (a, b) = (byte_index(first), byte_index(last));
    // Each byte as the bits sought (set), those outside the range cleared.
    let sought = |i: usize| {
        let mut x = if bit { v[i] } else { !v[i] };
        if i == a {
            x &= 0xFF >> (first & 7);
        }
        if i == b {
            x &= !(0xFFu16 >> ((last & 7) + 1)) as u8;
        }
        x
    };
    let found = |i: usize| Some(i as u64 * 8 + u64::from(sought(i).leading_zeros()));
    if sought(a) != 0 {
        return found(a);
    }
    if a == b {
        return None;
    }
    // Whole bytes between the two ends, a word at a time.
    let skip = if bit { 0 } else { 0xFF };
    let middle = &v[a + 1..b];
    let words = middle.chunks_exact(8);
    let word_skip = u64::from_ne_bytes([skip; 8]);
    let mut at = words
        .clone()
        .position(|w| word(w) != word_skip)
        .map_or(middle.len() - words.remainder().len(), |w| w * 8);
    while at < middle.len() {
        if middle[at] != skip {
            return found(a + 1 + at);
        }
        at += 1;
    }
    (sought(b) != 0).then(|| found(b)).flatten()
}

/// `BITPOS` on a value, missing keys aside: the first bit equal to `bit`
/// in `range`; -1 when there is none, except a clear bit sought to the
/// value's end, which is then the first bit past it.
fn bitpos_in(v: &[u8], bit: bool, range: BitRange) -> i64 {
    let Some((first, last)) = range.resolve(v.len()) else {
        return -1;
    };
    let pos = match position(v, bit, first, last) {
        Some(p) => p,
        None if !bit && range.end.is_none() => last + 1,
        None => return -1,
    };
    i64::try_from(pos).unwrap_or(i64::MAX)
}

/// `BITCOUNT` on a value: two negative positions in the wrong order count
/// nothing, as in Redis 7.0.
fn bitcount_in(v: &[u8], range: BitRange) -> u64 {
    let end = range.end.unwrap_or(-1);
    if range.start < 0 && end < 0 && range.start > end {
        return 0;
    }
    range.resolve(v.len()).map_or(0, |(a, b)| count(v, a, b))
}

impl KvStore {
    /// `SETBIT key offset 0|1`: sets or clears bit `offset` (counted from
    /// the first byte's most significant bit), zero-padding the value (or
    /// creating the key) if it is shorter, keeping the expiry; returns the
    /// bit's previous value.
    ///
    /// The value grows as [`set_range`](Self::set_range) grows it: a bit
    /// past the end grows it in place when no reader holds the value (with
    /// spare capacity), and a bit within it that changes copies the value
    /// into a new buffer (a reader's bytes never change). A bit that is
    /// already as asked writes nothing. On a persistent store a `SETBIT`
    /// that writes logs the one byte it changed and its offset, not the
    /// value.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// assert_eq!(store.setbit("flags", 7, true)?, false);
    /// assert_eq!(store.get("flags").as_deref(), Some(&b"\x01"[..]));
    /// assert_eq!(store.setbit("flags", 7, false)?, true);
    /// assert_eq!(store.getbit("flags", 7)?, false);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::BitOffsetOutOfRange`] for an offset past 2^32 − 1,
    /// [`KvError::OutOfMemory`] if the grown value does not fit (at once if
    /// it could never fit in `max_memory`); the value is unchanged either way.
    pub fn setbit(&self, key: &str, offset: u64, on: bool) -> Result<bool, KvError> {
        self.check_len(key, 0)?;
        let byte = byte_of(offset)?;
        let max = self.shared.max_memory;
        if max > 0 && u64::from(weigh(self.prefix.len() + key.len(), byte + 1)) > max {
            return Err(KvError::OutOfMemory);
        }
        let was = Cell::new(false);
        self.grow(key, |cur, room| {
            let len = cur.as_ref().map(|s| s.value.len());
            let old = cur.as_ref().and_then(|s| s.value.get(byte)).copied();
            let current = old.unwrap_or(0);
            was.set(current & mask(offset) != 0);
            if old.is_some() && was.get() == on {
                return (Decision::Nothing, 0, None, Ok(len.unwrap_or(0)));
            }
            let new = if on {
                current | mask(offset)
            } else {
                current & !mask(offset)
            };
            let written = append::set_range(cur, byte, &[new], room);
            partial::spliced(written, byte, vec![new].into())
        })?;
        Ok(was.get())
    }

    /// `GETBIT key offset`: bit `offset` of the value; 0 past its end or
    /// for a missing key. A read, counted in `keyspace_hits`/`_misses`.
    ///
    /// # Errors
    ///
    /// [`KvError::BitOffsetOutOfRange`] for an offset past 2^32 − 1.
    pub fn getbit(&self, key: &str, offset: u64) -> Result<bool, KvError> {
        let byte = byte_of(offset)?;
        Ok(self
            .get(key)
            .and_then(|v| v.get(byte).copied())
            .is_some_and(|b| b & mask(offset) != 0))
    }

    /// `BITCOUNT key [start end [BYTE|BIT]]`: the set bits in `range` of
    /// the value (0 for a missing key). Positions are resolved as
    /// [`get_range`](Self::get_range) resolves them; two negative ones in
    /// the wrong order count nothing.
    ///
    /// ```
    /// use shardcache::kv::BitRange;
    /// let store = shardcache::kv::KvStore::new();
    /// store.set("k", "foobar", Default::default())?;
    /// assert_eq!(store.bitcount("k", BitRange::all()), 26);
    /// assert_eq!(store.bitcount("k", BitRange::bytes(1, 1)), 6);
    /// assert_eq!(store.bitcount("k", BitRange::bits(5, 30)), 17);
    /// assert_eq!(store.bitpos("k", true, BitRange::all()), 1);
    /// assert_eq!(store.bitpos("k", false, BitRange::bits(1, 2)), -1);
    /// store.set("ones", &b"\x7f"[..], Default::default())?;
    /// assert_eq!(store.bitpos("ones", false, BitRange::from_byte(0)), 0);
    /// store.set("ones", &b"\xff"[..], Default::default())?;
    /// assert_eq!(store.bitpos("ones", false, BitRange::all()), 8);
    /// assert_eq!(store.bitpos("ones", false, BitRange::bytes(0, -1)), -1);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn bitcount(&self, key: &str, range: BitRange) -> u64 {
        self.get(key).map_or(0, |v| bitcount_in(&v, range))
    }

    /// `BITPOS key bit [start [end [BYTE|BIT]]]`: the position (in bits,
    /// from the value's start) of the first bit equal to `bit` in `range`,
    /// or -1. A missing key is all clear bits: 0 for a clear bit, -1 for a
    /// set one. Sought to the value's end (no `end` given), a clear bit is
    /// found past the value if it has none: the value's length in bits.
    /// Positions are resolved as [`bitcount`](Self::bitcount) resolves them
    /// (without its special case: an empty range is -1).
    pub fn bitpos(&self, key: &str, bit: bool, range: BitRange) -> i64 {
        match self.get(key) {
            Some(v) => bitpos_in(&v, bit, range),
            None if bit => -1,
            None => 0,
        }
    }
}

/// A bit offset argument: an integer from 0 to 2^32 − 1.
fn parse_offset(arg: &[u8]) -> Result<u64, KvError> {
    let n = parse_i64(arg).map_err(|_| KvError::BitOffsetOutOfRange)?;
    let n = u64::try_from(n).map_err(|_| KvError::BitOffsetOutOfRange)?;
    byte_of(n).map(|_| n)
}

/// `BYTE` or `BIT`, compared as C strings.
fn parse_unit(arg: &[u8]) -> Result<BitUnit, KvError> {
    match option(arg).as_slice() {
        b"byte" => Ok(BitUnit::Byte),
        b"bit" => Ok(BitUnit::Bit),
        _ => Err(KvError::Syntax),
    }
}

/// `SETBIT`: the offset, then the bit, then the key.
pub(super) fn setbit(s: &KvStore, a: &[&[u8]]) -> Result<Reply, KvError> {
    let offset = parse_offset(a[2])?;
    let on = match parse_i64(a[3]) {
        Ok(0) => false,
        Ok(1) => true,
        _ => return Err(KvError::BitNotInteger),
    };
    Ok(s.setbit(key(a[1])?, offset, on)?.into())
}

/// `GETBIT`: the offset, then the key.
pub(super) fn getbit(s: &KvStore, a: &[&[u8]]) -> Result<Reply, KvError> {
    let offset = parse_offset(a[2])?;
    Ok(s.getbit(key(a[1])?, offset)?.into())
}

/// `BITCOUNT`: the key first (a missing key is 0 whatever the other
/// arguments, as in Redis 7.0), then `start`, `end` and the unit.
pub(super) fn bitcount(s: &KvStore, a: &[&[u8]]) -> Result<Reply, KvError> {
    let Some(v) = s.get(key(a[1])?) else {
        return Ok(Reply::Integer(0));
    };
    let range = match a.len() {
        2 => BitRange::all(),
        4 | 5 => {
            let (start, end) = (parse_i64(a[2])?, parse_i64(a[3])?);
            let unit = a.get(4).map_or(Ok(BitUnit::Byte), |u| parse_unit(u))?;
            BitRange {
                start,
                end: Some(end),
                unit,
            }
        }
        _ => return Err(KvError::Syntax),
    };
    let n = bitcount_in(&v, range);
    Ok(Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// `BITPOS`: the bit, then the key (a missing key answers at once), then
/// `start`, the unit and `end`, in Redis 7.0's order.
pub(super) fn bitpos(s: &KvStore, a: &[&[u8]]) -> Result<Reply, KvError> {
    let bit = match parse_i64(a[2])? {
        0 => false,
        1 => true,
        _ => return Err(KvError::BitNotBinary),
    };
    let Some(v) = s.get(key(a[1])?) else {
        return Ok(Reply::Integer(if bit { -1 } else { 0 }));
    };
    let range = match a.len() {
        3 => BitRange::all(),
        4..=6 => {
            let start = parse_i64(a[3])?;
            let unit = a.get(5).map_or(Ok(BitUnit::Byte), |u| parse_unit(u))?;
            let end = a.get(4).map(|e| parse_i64(e)).transpose()?;
            BitRange { start, end, unit }
        }
        _ => return Err(KvError::Syntax),
    };
    Ok(Reply::Integer(bitpos_in(&v, bit, range)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit `i` of `v`, bit by bit.
    fn bit_at(v: &[u8], i: i64) -> bool {
        v[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Redis 7.0's positions, restated: counted from the end when
    /// negative, raised to 0, the end lowered to the last position.
    fn naive_range(len: usize, r: BitRange) -> Vec<i64> {
        let total = len as i64 * if r.unit == BitUnit::Bit { 8 } else { 1 };
        let fix = |i: i64| if i < 0 { (total + i).max(0) } else { i };
        let (s, e) = (fix(r.start), fix(r.end.unwrap_or(-1)).min(total - 1));
        let units: Vec<i64> = (s..=e).collect();
        match r.unit {
            BitUnit::Bit => units,
            BitUnit::Byte => units.iter().flat_map(|&u| u * 8..u * 8 + 8).collect(),
        }
    }

    fn naive_count(v: &[u8], r: BitRange) -> u64 {
        let end = r.end.unwrap_or(-1);
        if r.start < 0 && end < 0 && r.start > end {
            return 0;
        }
        naive_range(v.len(), r)
            .into_iter()
            .filter(|&i| bit_at(v, i))
            .count() as u64
    }

    fn naive_pos(v: &[u8], bit: bool, r: BitRange) -> i64 {
        let bits = naive_range(v.len(), r);
        match bits.iter().find(|&&i| bit_at(v, i) == bit) {
            Some(&i) => i,
            None if !bit && r.end.is_none() && !bits.is_empty() => v.len() as i64 * 8,
            None => -1,
        }
    }

    #[test]
    fn count_and_position_match_a_bit_by_bit_reading() {
        let points = [
            i64::MIN,
            -200,
            -41,
            -40,
            -39,
            -17,
            -9,
            -8,
            -1,
            0,
            1,
            3,
            7,
            8,
            9,
            23,
            39,
            40,
            100,
            i64::MAX,
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for len in [0usize, 1, 2, 3, 5, 17, 40] {
            for fill in 0..4 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        match fill {
                            0 => 0,
                            1 => 0xFF,
                            2 => x as u8,
                            _ => {
                                if x.is_multiple_of(5) {
                                    x as u8
                                } else {
                                    0
                                }
                            }
                        }
                    })
                    .collect();
                let mut ranges = vec![BitRange::all()];
                for start in points {
                    ranges.push(BitRange::from_byte(start));
                    for end in points {
                        ranges.push(BitRange::bytes(start, end));
                        ranges.push(BitRange::bits(start, end));
                    }
                }
                for r in ranges {
                    assert_eq!(bitcount_in(&v, r), naive_count(&v, r), "{v:?} {r:?}");
                    for bit in [false, true] {
                        assert_eq!(
                            bitpos_in(&v, bit, r),
                            naive_pos(&v, bit, r),
                            "{v:?} {bit} {r:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn offsets_stop_at_the_last_bit_of_512_mib() {
        assert_eq!(byte_of(0), Ok(0));
        assert_eq!(byte_of((1 << 32) - 1), Ok(MAX_STRING_LEN - 1));
        assert_eq!(byte_of(1 << 32), Err(KvError::BitOffsetOutOfRange));
        assert_eq!(byte_of(u64::MAX), Err(KvError::BitOffsetOutOfRange));
        assert_eq!(parse_offset(b"4294967295"), Ok((1 << 32) - 1));
        for bad in [&b"4294967296"[..], b"-1", b"+1", b"1\0", b"x", b"", b"01"] {
            assert_eq!(
                parse_offset(bad),
                Err(KvError::BitOffsetOutOfRange),
                "{bad:?}"
            );
        }
    }
}
