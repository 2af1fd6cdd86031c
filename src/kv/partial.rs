//! The commands that write or read part of a string value: `APPEND`,
//! `SETRANGE` (both growing a value in place, see [`append`](super::append))
//! and `GETRANGE` (and `SUBSTR`).

use super::append;
use super::{KvError, KvStore, ENTRY_OVERHEAD, MAX_STRING_LEN};
use crate::compute::{Slot, Splice};
use crate::{CapacityError, Decision};
use bytes::Bytes;
use std::borrow::Cow;

/// What a write that [`KvStore::grow`] runs answers: the decision, the new
/// buffer's spare capacity, the part of the value it wrote (logged in place
/// of the whole value), and the reply.
pub(super) type Grown<'s> = (
    Decision<Bytes>,
    u64,
    Option<Splice<'s>>,
    Result<usize, KvError>,
);

/// Adds to a write's answer the splice it made: `bytes` at `offset`.
pub(super) fn spliced<'s>(
    (decision, hidden, r): (Decision<Bytes>, u64, Result<usize, KvError>),
    offset: usize,
    bytes: Cow<'s, [u8]>,
) -> Grown<'s> {
    let splice = Splice {
        offset: offset as u64,
        bytes,
    };
    (decision, hidden, Some(splice), r)
}

impl KvStore {
    /// `APPEND key value`: appends (creating the key if needed), keeping the
    /// expiry; returns the new length.
    ///
    /// Amortised linear, as in Redis: a value grown by `APPEND` keeps spare
    /// capacity (doubling up to 1 MiB, then at least 1 MiB or an eighth
    /// more), which later appends fill in place while no reader holds the
    /// value. The spare capacity counts in `used_memory` and `max_memory`;
    /// when the value does not fit with it, it is stored without.
    ///
    /// On a persistent store the log records the appended bytes and where
    /// they start, not the new value: the log grows by `value.len()` and
    /// about 20 bytes per append, however long the value.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// for _ in 0..1000 {
    ///     store.append("log", b"entry;")?;
    /// }
    /// assert_eq!(store.strlen("log"), 6000);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::StringTooLong`] if the value would grow past
    /// [`MAX_STRING_LEN`], [`KvError::OutOfMemory`];
    /// the value is unchanged either way.
    pub fn append(&self, key: &str, value: &[u8]) -> Result<usize, KvError> {
        self.check_len(key, value.len())?;
        self.grow(key, |cur, room| {
            let at = cur.as_ref().map_or(0, |s| s.value.len());
            spliced(append::append(cur, value, room), at, Cow::Borrowed(value))
        })
    }

    /// `SETRANGE key offset value`: overwrites the value from `offset` on,
    /// zero-padding it first if it is shorter (creating the key if needed),
    /// keeping the expiry; returns the new length. An empty `value` changes
    /// nothing (a missing key stays missing) and returns the current length.
    ///
    /// A write at or past the value's end grows it in place as
    /// [`append`](Self::append) does; a write over some of its bytes copies
    /// the value into a new buffer (a reader's bytes never change).
    /// On a persistent store the log records `value` and `offset`, not the
    /// new value.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.set("k", "Hello World", Default::default())?;
    /// assert_eq!(store.set_range("k", 6, b"Redis")?, 11);
    /// assert_eq!(store.get("k").as_deref(), Some(&b"Hello Redis"[..]));
    /// assert_eq!(store.set_range("pad", 3, b"!")?, 4);
    /// assert_eq!(store.get("pad").as_deref(), Some(&b"\0\0\0!"[..]));
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::StringTooLong`] if `offset` plus the value's length is
    /// over [`MAX_STRING_LEN`], [`KvError::OutOfMemory`] if the value does
    /// not fit (at once if `offset` plus its length is more than
    /// `max_memory` could ever hold); the value is unchanged either way.
    pub fn set_range(&self, key: &str, offset: usize, value: &[u8]) -> Result<usize, KvError> {
        self.check_len(key, 0)?;
        if value.is_empty() {
            // As Redis: the length as it is, whatever the offset.
            return Ok(self
                .cache
                .peek_value(&self.full_key(key))
                .map_or(0, |v| v.len()));
        }
        let end = offset.saturating_add(value.len());
        if end > MAX_STRING_LEN {
            return Err(KvError::StringTooLong);
        }
        // An entry that could never fit is refused before its zeros are
        // written (a long offset on a small store).
        let max = self.shared.max_memory;
        if max > 0 && u64::from(super::weigh(self.prefix.len() + key.len(), end)) > max {
            return Err(KvError::OutOfMemory);
        }
        self.grow(key, |cur, room| {
            let written = append::set_range(cur, offset, value, room);
            spliced(written, offset, Cow::Borrowed(value))
        })
    }

    /// Runs a write that may grow the value with spare capacity (`write`
    /// gets the slot and the most bytes the buffer may hold, see
    /// [`append_room`](Self::append_room)); if the value does not fit with
    /// its spare capacity, runs it again without. A persistent store logs
    /// the splice the write answers, not the whole value.
    pub(super) fn grow<'s>(
        &self,
        key: &str,
        write: impl Fn(Option<Slot<'_, Bytes>>, usize) -> Grown<'s>,
    ) -> Result<usize, KvError> {
        let key = self.full_key(key);
        let room = self.append_room(&key);
        let mut spare = 0;
        let first = self.cache.compute_spliced(key, |cur| {
            let (decision, hidden, splice, r) = write(cur, room);
            spare = hidden;
            (decision, hidden, splice, r)
        });
        match first {
            Ok(r) => r,
            // It did not fit with room to grow: store it without, freeing
            // the refused buffer before the new one is built.
            Err(CapacityError { key, value }) if spare > 0 => {
                drop(value);
                self.cache.compute_spliced(key, |cur| write(cur, 0))?
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `GETRANGE key start end` (and `SUBSTR`): the bytes from `start` to
    /// `end`, both included; negative positions count from the end (-1 is
    /// the last byte). Positions past either end are clamped, as in Redis
    /// 7.0 (so `-100, -50` on a short value is its first byte, but two
    /// negative positions in the wrong order are empty); an empty range, or
    /// a missing key, gives an empty value.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.set("k", "This is a string", Default::default())?;
    /// assert_eq!(&store.get_range("k", 0, 3)[..], b"This");
    /// assert_eq!(&store.get_range("k", -3, -1)[..], b"ing");
    /// assert_eq!(&store.get_range("k", 10, 100)[..], b"string");
    /// assert_eq!(&store.get_range("k", -100, -50)[..], b"T");
    /// assert!(store.get_range("k", -1, -5).is_empty());
    /// assert!(store.get_range("missing", 0, -1).is_empty());
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn get_range(&self, key: &str, start: i64, end: i64) -> Bytes {
        let Some(v) = self.get(key) else {
            return Bytes::new();
        };
        match range(v.len(), start, end) {
            Some((a, b)) if a == 0 && b == v.len() => v,
            // A copy, so a small range does not hold a big value's buffer.
            Some((a, b)) => Bytes::copy_from_slice(&v[a..b]),
            None => Bytes::new(),
        }
    }

    /// The most bytes an `APPEND` or `SETRANGE` may keep for a value under
    /// the stored `key`: [`MAX_STRING_LEN`] (so an entry's weight stays
    /// within `u32`), and no more than `max_memory` holds beside the key.
    fn append_room(&self, key: &str) -> usize {
        room_for(self.shared.max_memory, key.len())
    }
}

/// [`KvStore::append_room`] for a stored key of `key_len` bytes under
/// `max_memory` (0: unbounded).
pub(super) fn room_for(max_memory: u64, key_len: usize) -> usize {
    if max_memory == 0 {
        return MAX_STRING_LEN;
    }
    let beside = (key_len as u64).saturating_add(u64::from(ENTRY_OVERHEAD));
    usize::try_from(max_memory.saturating_sub(beside))
        .unwrap_or(usize::MAX)
        .min(MAX_STRING_LEN)
}

/// `GETRANGE`'s `start..=end` on a value of `len` bytes as Redis 7.0
/// resolves it, as a half-open range; `None` when it is empty.
fn range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let from_end = |i: i64| {
        if i < 0 {
            len_i.saturating_add(i).max(0)
        } else {
            i
        }
    };
    let (start, end) = (from_end(start), from_end(end).min(len_i - 1));
    if len == 0 || start > end {
        return None;
    }
    // Both are now within 0..len.
    let (a, b) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
    Some((a, b + 1))
}

#[cfg(test)]
mod tests {
    use super::range;

    /// Redis 7.0's `getrangeCommand`, restated as the set of positions
    /// between the two ends, each counted from the end when negative and
    /// then raised to 0 (so `-75 -52` on a short value is its first byte).
    fn naive(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
        if start < 0 && end < 0 && start > end {
            return None;
        }
        let at = |i: i64| {
            if i < 0 {
                (i128::from(i) + len as i128).max(0)
            } else {
                i128::from(i)
            }
        };
        let picked: Vec<usize> = (0..len)
            .filter(|&i| (at(start)..=at(end)).contains(&(i as i128)))
            .collect();
        Some((*picked.first()?, *picked.last()? + 1))
    }

    #[test]
    fn getrange_positions_match_a_naive_reading() {
        let points = [
            i64::MIN,
            i64::MIN + 1,
            -100,
            -17,
            -16,
            -15,
            -2,
            -1,
            0,
            1,
            2,
            14,
            15,
            16,
            17,
            100,
            i64::MAX,
        ];
        for len in [0, 1, 2, 15, 16] {
            for start in points {
                for end in points {
                    assert_eq!(
                        range(len, start, end),
                        naive(len, start, end),
                        "{len} {start} {end}"
                    );
                }
            }
        }
    }
}
