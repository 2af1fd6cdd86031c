//! `APPEND`'s and `SETRANGE`'s buffers: a value grows in place, as Redis's
//! sds strings do.
//!
//! A value that `APPEND` (or a `SETRANGE` past its end) grew keeps spare
//! capacity after its bytes. The next such write goes into it when the
//! store holds the only handle to the buffer (no reader kept a `Bytes` of
//! it) and the new bytes fit; otherwise it copies the value into a new
//! buffer with room to grow ([`grown_capacity`]). The bytes readers hold
//! never change: a buffer is written past its value's end only while
//! nobody else can see it.
//!
//! The spare capacity is memory the entry holds, so it is counted in
//! `used_memory` and against `max_memory`, as weight the weigher cannot see
//! in a `Bytes` (see [`Cache::compute_slot`](crate::Cache::compute_slot)).

use super::{KvError, MAX_STRING_LEN};
use crate::compute::{Slot, Splicer};
use crate::{Decision, Ttl};
use bytes::Bytes;

/// Up to this length a growing value's buffer doubles; from it on, it grows
/// by this much or by an eighth of the value, whichever is more.
///
/// 1 MiB is Redis's `SDS_MAX_PREALLOC`, so up to 8 MiB a value holds what
/// Redis's would: at most twice its length below 1 MiB, at most 1 MiB more
/// above. Redis keeps adding 1 MiB however long the string, and relies on
/// `realloc` extending large blocks in place; here every growth copies (the
/// old buffer stays whole until the write is applied), so a fixed step would
/// make building a long value quadratic. Growing by at least an eighth
/// keeps it linear (a value built to n bytes by appends has been copied at
/// most about 9n bytes in all) with the spare capacity, counted in
/// `max_memory`, within 12.5 % of the value.
pub(super) const PREALLOC_STEP: usize = 1 << 20;

/// The capacity a value of `len` bytes gets when `APPEND` has to move it to
/// a new buffer (see [`PREALLOC_STEP`]), within `room` (the most an entry
/// may hold; at least `len`). Never decreases as `len` grows, so a buffer
/// that was given it still counts as "not oversized" after later appends.
pub(super) fn grown_capacity(len: usize, room: usize) -> usize {
    let want = if len < PREALLOC_STEP {
        len.saturating_mul(2)
    } else {
        len.saturating_add((len / 8).max(PREALLOC_STEP))
    };
    want.min(room).max(len)
}

/// `APPEND` as a [`Cache::compute_slot`](crate::Cache::compute_slot)
/// closure: puts the current value followed by `extra` (the key's expiry
/// kept) and answers the new length, with the new buffer's spare capacity as
/// hidden weight. `room` caps the capacity (see [`grown_capacity`]). A new
/// key gets exactly `extra`, as Redis stores it.
pub(super) fn append(
    cur: Option<Slot<'_, Bytes>>,
    extra: &[u8],
    room: usize,
) -> (Decision<Bytes>, u64, Result<usize, KvError>) {
    write_after(cur, 0, extra, room)
}

/// `SETRANGE` as a [`Cache::compute_slot`](crate::Cache::compute_slot)
/// closure: puts the current value (zero-padded to `offset` if shorter)
/// with `bytes` written at `offset`, the key's expiry kept, and answers the
/// new length. A write that starts at or past the value's end grows it as
/// [`append`] does (in place when it can, with room to grow). One that
/// covers some of the value's bytes writes them in place when the slot is
/// [`patchable`](Slot::patchable) and no reader holds the value's buffer (a
/// reader's bytes never change); otherwise it builds a new buffer, since
/// the bytes the slot holds must stay as they are (see [`Slot`]), with room
/// to grow only if the value gets longer (as Redis's `sdsgrowzero`). A new
/// key gets exactly `offset` zeros and `bytes`.
pub(super) fn set_range(
    cur: Option<Slot<'_, Bytes>>,
    offset: usize,
    bytes: &[u8],
    room: usize,
) -> (Decision<Bytes>, u64, Result<usize, KvError>) {
    match cur {
        Some(slot) if offset < slot.value.len() => {
            let patched = slot
                .patchable
                .and_then(|hidden| overwrite_in_place(slot.value, offset, bytes, room, hidden));
            match patched {
                Some((new, spare)) => {
                    let len = new.len();
                    (Decision::Put(new, Ttl::Keep), spare, Ok(len))
                }
                None => overwrite(slot, offset, bytes, room),
            }
        }
        cur => {
            let old_len = cur.as_ref().map_or(0, |s| s.value.len());
            write_after(cur, offset - old_len, bytes, room)
        }
    }
}

/// How recovery redoes a logged `APPEND`, `SETRANGE` or `SETBIT` (a splice
/// record) on a store whose `max_memory` is `max_memory` (0: unbounded): as
/// [`set_range`] does it live, with the same room to grow, so that a value
/// the log built by appends is rebuilt in linear time and weighs what it
/// did. A write over the value's own bytes is made in place when the
/// buffer is not shared and holds no more than `room` (recovery's values
/// have no readers; see [`Splicer`]), so replaying many small writes to a
/// long value costs the bytes written, not a copy of the value each. A
/// write past [`MAX_STRING_LEN`] is one no store could have made.
pub(super) struct BytesSplicer {
    pub(super) max_memory: u64,
}

impl Splicer<String, Bytes> for BytesSplicer {
    fn room(&self, key: &String) -> usize {
        super::partial::room_for(self.max_memory, key.len())
    }

    fn splice(
        &self,
        cur: Option<Slot<'_, Bytes>>,
        offset: u64,
        bytes: &[u8],
        room: usize,
    ) -> Option<(Bytes, u64)> {
        let offset = usize::try_from(offset).ok()?;
        if offset.checked_add(bytes.len())? > MAX_STRING_LEN {
            return None;
        }
        let mut cur = cur;
        if let Some(slot) = cur.as_mut() {
            if let Some(done) = overwrite_in_place(slot.value, offset, bytes, room, u64::MAX) {
                return Some(done);
            }
        }
        match set_range(cur, offset, bytes, room) {
            (Decision::Put(value, _), hidden, Ok(_)) => Some((value, hidden)),
            _ => None,
        }
    }
}

/// `bytes` written at `offset` of `value`'s own bytes in its buffer, when
/// nothing else holds the buffer (no reader has a handle on it), it keeps
/// no more than `room` bytes, and its spare capacity is at most `hidden`;
/// the value (taken, `value` left empty) and its spare capacity. `None`,
/// with `value` as it was, otherwise. For recovery (see [`BytesSplicer`])
/// and for a live write whose slot is
/// [`patchable`](crate::compute::Slot::patchable), with the entry's hidden
/// weight: the write then weighs no more than the entry did.
fn overwrite_in_place(
    value: &mut Bytes,
    offset: usize,
    bytes: &[u8],
    room: usize,
    hidden: u64,
) -> Option<(Bytes, u64)> {
    let end = offset.checked_add(bytes.len())?;
    if end > value.len() {
        return None;
    }
    let fits = |buf: &bytes::BytesMut| {
        buf.capacity() <= room.max(buf.len())
            && u64::try_from(buf.capacity() - buf.len()).is_ok_and(|spare| spare <= hidden)
    };
    match std::mem::take(value).try_into_mut() {
        Ok(mut buf) if fits(&buf) => {
            buf[offset..end].copy_from_slice(bytes);
            let spare = u64::try_from(buf.capacity() - buf.len()).unwrap_or(u64::MAX);
            Some((buf.freeze(), spare))
        }
        Ok(buf) => {
            *value = buf.freeze();
            None
        }
        Err(shared) => {
            *value = shared;
            None
        }
    }
}

/// [`set_range`] over some of the value's own bytes: the new value in a new
/// buffer, the slot left as it is.
fn overwrite(
    slot: Slot<'_, Bytes>,
    offset: usize,
    bytes: &[u8],
    room: usize,
) -> (Decision<Bytes>, u64, Result<usize, KvError>) {
    let old = &*slot.value;
    let end = offset.saturating_add(bytes.len());
    let len = end.max(old.len());
    if len > MAX_STRING_LEN {
        return (Decision::Nothing, 0, Err(KvError::StringTooLong));
    }
    let cap = if len > old.len() {
        grown_capacity(len, room)
    } else {
        len
    };
    let mut buf = Vec::with_capacity(cap);
    buf.extend_from_slice(&old[..offset]);
    buf.extend_from_slice(bytes);
    buf.extend_from_slice(old.get(end..).unwrap_or_default());
    let spare = u64::try_from(buf.capacity() - len).unwrap_or(u64::MAX);
    (Decision::Put(Bytes::from(buf), Ttl::Keep), spare, Ok(len))
}

/// Puts the current value followed by `gap` zero bytes and `extra`: the
/// growth shared by [`append`] and [`set_range`].
fn write_after(
    cur: Option<Slot<'_, Bytes>>,
    gap: usize,
    extra: &[u8],
    room: usize,
) -> (Decision<Bytes>, u64, Result<usize, KvError>) {
    let old_len = cur.as_ref().map_or(0, |s| s.value.len());
    let len = match old_len
        .checked_add(gap)
        .and_then(|n| n.checked_add(extra.len()))
    {
        Some(len) if len <= MAX_STRING_LEN => len,
        _ => return (Decision::Nothing, 0, Err(KvError::StringTooLong)),
    };
    let Some(slot) = cur else {
        // Zeroed by the allocator, so a long gap is not written byte by byte.
        let mut value = vec![0; len];
        value[gap..].copy_from_slice(extra);
        return (Decision::Put(Bytes::from(value), Ttl::Keep), 0, Ok(len));
    };
    let cap = grown_capacity(len, room);
    let (kept, new, capacity) = match std::mem::take(slot.value).try_into_mut() {
        // The store holds the only handle and the bytes fit: write after
        // the value. The slot keeps the old length of the same buffer.
        Ok(mut buf) if (len..=cap).contains(&buf.capacity()) => {
            let capacity = buf.capacity();
            buf.resize(old_len + gap, 0);
            buf.extend_from_slice(extra);
            let new = buf.freeze();
            (new.slice(..old_len), new, capacity)
        }
        Ok(buf) => copied(buf.freeze(), gap, extra, cap),
        Err(shared) => copied(shared, gap, extra, cap),
    };
    *slot.value = kept;
    let spare = u64::try_from(capacity - len).unwrap_or(u64::MAX);
    (Decision::Put(new, Ttl::Keep), spare, Ok(len))
}

/// `old`, `gap` zero bytes and `extra` in a new buffer of `cap` bytes, and
/// that buffer's capacity; `old` is handed back unchanged.
fn copied(old: Bytes, gap: usize, extra: &[u8], cap: usize) -> (Bytes, Bytes, usize) {
    let mut buf = Vec::with_capacity(cap);
    buf.extend_from_slice(&old);
    buf.resize(old.len() + gap, 0);
    buf.extend_from_slice(extra);
    let capacity = buf.capacity();
    (old, Bytes::from(buf), capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_doubles_then_grows_by_a_step_or_an_eighth() {
        let room = MAX_STRING_LEN;
        assert_eq!(grown_capacity(0, room), 0);
        assert_eq!(grown_capacity(10, room), 20);
        assert_eq!(
            grown_capacity(PREALLOC_STEP - 1, room),
            2 * PREALLOC_STEP - 2
        );
        assert_eq!(grown_capacity(PREALLOC_STEP, room), 2 * PREALLOC_STEP);
        assert_eq!(grown_capacity(8 * PREALLOC_STEP, room), 9 * PREALLOC_STEP);
        assert_eq!(grown_capacity(80 * PREALLOC_STEP, room), 90 * PREALLOC_STEP);
        assert_eq!(grown_capacity(MAX_STRING_LEN, room), MAX_STRING_LEN);
        assert_eq!(grown_capacity(100, 150), 150, "within room");
        assert_eq!(grown_capacity(100, 0), 100, "never below the length");
    }

    #[test]
    fn capacity_never_decreases() {
        let mut last = 0;
        for len in (0..MAX_STRING_LEN).step_by(4093).chain([MAX_STRING_LEN]) {
            for room in [MAX_STRING_LEN, 3 << 20] {
                let cap = grown_capacity(len, room);
                assert!(cap >= len);
                if room == MAX_STRING_LEN {
                    assert!(cap >= last, "{len}: {cap} < {last}");
                    last = cap;
                }
            }
        }
    }

    /// Runs `append` on `value` as the store would, with the store's handle
    /// in a slot; returns the slot's value (as left) and the new one.
    fn run(value: &mut Bytes, extra: &[u8]) -> (Bytes, u64) {
        let slot = Slot {
            value,
            ttl: None,
            patchable: None,
        };
        match append(Some(slot), extra, MAX_STRING_LEN) {
            (Decision::Put(new, Ttl::Keep), spare, Ok(len)) => {
                assert_eq!(len, new.len());
                (new, spare)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writes_in_place_only_into_a_buffer_nobody_else_holds() {
        let mut stored = Bytes::from_static(b"ab");
        let (new, spare) = run(&mut stored, b"c");
        assert_eq!((&new[..], spare), (&b"abc"[..], 3));
        assert_eq!(&stored[..], b"ab", "the slot keeps the old value");
        drop(stored);
        let mut stored = new;
        let at = stored.as_ptr();
        let (new, spare) = run(&mut stored, b"de");
        assert_eq!((&new[..], spare, new.as_ptr()), (&b"abcde"[..], 1, at));
        assert_eq!(&stored[..], b"abc", "same buffer, old length");
        drop(stored);
        // A reader holds the value: it is copied, and the reader's bytes stay.
        let mut stored = new;
        let reader = stored.clone();
        let (new, spare) = run(&mut stored, b"f");
        assert_ne!(new.as_ptr(), at);
        assert_eq!((&new[..], spare), (&b"abcdef"[..], 6));
        assert_eq!(&reader[..], b"abcde");
        assert_eq!(stored.as_ptr(), at, "the slot keeps the reader's buffer");
    }

    #[test]
    fn an_oversized_buffer_is_not_kept() {
        let mut big = Vec::with_capacity(1 << 16);
        big.extend_from_slice(b"ab");
        let mut stored = Bytes::from(big);
        let (new, spare) = run(&mut stored, b"c");
        assert_eq!((&new[..], spare), (&b"abc"[..], 3));
    }

    /// Runs `set_range` on `value` as the store would.
    fn run_set_range(value: &mut Bytes, offset: usize, bytes: &[u8]) -> (Bytes, u64) {
        let slot = Slot {
            value,
            ttl: None,
            patchable: None,
        };
        match set_range(Some(slot), offset, bytes, MAX_STRING_LEN) {
            (Decision::Put(new, Ttl::Keep), spare, Ok(len)) => {
                assert_eq!(len, new.len());
                (new, spare)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn set_range_grows_in_place_past_the_end_and_copies_over_the_bytes() {
        let mut stored = Bytes::from_static(b"ab");
        let (new, spare) = run_set_range(&mut stored, 4, b"c");
        assert_eq!((&new[..], spare), (&b"ab\0\0c"[..], 5));
        drop(stored);
        let mut stored = new;
        let at = stored.as_ptr();
        let (new, spare) = run_set_range(&mut stored, 6, b"d");
        assert_eq!((&new[..], spare, new.as_ptr()), (&b"ab\0\0c\0d"[..], 3, at));
        assert_eq!(&stored[..], b"ab\0\0c", "same buffer, old length");
        drop(stored);
        // Over the value's bytes: a new exact buffer, the slot untouched.
        let mut stored = new;
        let (new, spare) = run_set_range(&mut stored, 1, b"XY");
        assert_eq!((&new[..], spare), (&b"aXY\0c\0d"[..], 0));
        assert_ne!(new.as_ptr(), at);
        assert_eq!((&stored[..], stored.as_ptr()), (&b"ab\0\0c\0d"[..], at));
        // Over the end and past it: grows with room.
        let (new, spare) = run_set_range(&mut stored, 5, b"0123");
        assert_eq!((&new[..], spare), (&b"ab\0\0c0123"[..], 9));
        assert_eq!(&stored[..], b"ab\0\0c\0d");
    }

    #[test]
    fn recovery_splices_in_place_only_into_an_unshared_buffer_within_room() {
        let splicer = BytesSplicer { max_memory: 0 };
        let mut stored = Bytes::from(b"abcdef".to_vec());
        let at = stored.as_ptr();
        let slot = Slot {
            value: &mut stored,
            ttl: None,
            patchable: None,
        };
        let (new, spare) = splicer.splice(Some(slot), 1, b"XY", 0).expect("spliced");
        assert_eq!((&new[..], spare, new.as_ptr()), (&b"aXYdef"[..], 0, at));
        assert!(stored.is_empty(), "taken");
        // A reader holds it: copied, the reader's bytes unchanged.
        let mut stored = new;
        let reader = stored.clone();
        let slot = Slot {
            value: &mut stored,
            ttl: None,
            patchable: None,
        };
        let (new, _) = splicer.splice(Some(slot), 0, b"Z", 0).expect("spliced");
        assert_eq!((&new[..], &reader[..]), (&b"ZXYdef"[..], &b"aXYdef"[..]));
        assert_ne!(new.as_ptr(), at);
        // Spare capacity past `room`: copied into an exact buffer.
        drop((reader, stored));
        let mut big = Vec::with_capacity(64);
        big.extend_from_slice(b"abc");
        let mut stored = Bytes::from(big);
        let slot = Slot {
            value: &mut stored,
            ttl: None,
            patchable: None,
        };
        let (new, spare) = splicer.splice(Some(slot), 0, b"Q", 8).expect("spliced");
        assert_eq!((&new[..], spare), (&b"Qbc"[..], 0));
        assert_eq!(&stored[..], b"abc", "left as it was");
        // Past the longest value: no store could have written it.
        assert!(splicer
            .splice(None, MAX_STRING_LEN as u64, b"x", MAX_STRING_LEN)
            .is_none());
    }

    #[test]
    fn past_the_limit_nothing_changes() {
        let mut stored = Bytes::from_static(b"ab");
        let slot = Slot {
            value: &mut stored,
            ttl: None,
            patchable: None,
        };
        let long = vec![0; MAX_STRING_LEN - 1];
        let (decision, _, r) = append(Some(slot), &long, MAX_STRING_LEN);
        assert_eq!(
            (decision, r),
            (Decision::Nothing, Err(KvError::StringTooLong))
        );
        assert_eq!(&stored[..], b"ab");
    }
}
