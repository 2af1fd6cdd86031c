//! What a [`Cache::compute`](crate::Cache::compute) closure sees and
//! decides: [`Current`], [`Decision`] and [`Ttl`] (and, inside the crate,
//! the [`Slot`] a `compute_slot` closure may reuse). The adapters and the
//! `KvStore` speak in these too; the methods themselves belong to the cache.

use std::borrow::Cow;
use std::time::Duration;

/// The live entry a [`Cache::compute`](crate::Cache::compute) closure sees.
#[derive(Debug)]
pub struct Current<'a, V> {
    /// The current value.
    pub value: &'a V,
    /// The remaining time to live; `None` if it never expires.
    pub ttl: Option<Duration>,
}

/// The live entry as [`Cache::compute_slot`](crate::Cache::compute_slot)
/// sees it: the value itself, so the closure may take its buffer to build
/// the new value in (`KvStore`'s `APPEND` does).
///
/// The contract: whatever the closure leaves in `value` is the entry's
/// value if the decision is not applied (not `Put`, refused by the log, or
/// out of room), under the weight the entry was written with. So it must
/// leave a value that readers cannot tell from the one it found and that
/// holds the same memory, also if it panics. The one exception is a slot
/// marked [`patchable`](Self::patchable).
#[derive(Debug)]
pub(crate) struct Slot<'a, V> {
    /// The current value.
    pub(crate) value: &'a mut V,
    /// The remaining time to live; `None` if it never expires.
    pub(crate) ttl: Option<Duration>,
    /// `Some(hidden)` when a `Put` is sure to be applied if it weighs no
    /// more than the entry does now: the log admits writes and takes no
    /// undo record (none, or one that buffers), so nothing reads the old
    /// value after the closure; a `Put` no heavier needs no room; and its
    /// record (a splice of bytes within the value) is smaller than the one
    /// that stored the value, so it encodes. (An entry whose time runs out
    /// between the closure and the write is expired either way.)
    /// `hidden` is the weight the entry holds beyond the weigher's answer
    /// for its value (the spare capacity of a byte string's buffer). The
    /// closure of a `Put` of a value as long as the current one, with no
    /// more hidden weight, may then write over the current value's buffer
    /// in place and leave anything in `value`.
    pub(crate) patchable: Option<u64>,
}

/// A `Put` that wrote only part of the value, as a `compute_spliced`
/// closure reports it: `bytes` at `offset`, zero-padded first if the value
/// was shorter, the expiry kept. A persistent cache logs it as a splice
/// record (O(bytes written)) instead of the whole new value.
#[derive(Debug)]
pub(crate) struct Splice<'a> {
    /// Where the bytes start in the value.
    pub(crate) offset: u64,
    /// The bytes written.
    pub(crate) bytes: Cow<'a, [u8]>,
}

/// How recovery applies a logged [`Splice`] to a value, installed by the
/// cache's owner when its values are byte strings (the `KvStore`): the
/// generic cache knows nothing of bytes, and caches without one never log
/// splices.
///
/// Only recovery calls it, and nobody else sees the value then: no reader
/// holds it, no listener or undo record needs its old bytes, and recovery
/// drops the key when a spliced value is not stored. So, unlike a
/// [`Slot`]'s usual contract, `splice` may write in place and leave the
/// slot empty.
pub(crate) trait Splicer<K, V>: Send + Sync {
    /// The most bytes the buffer of `key`'s value may hold, spare capacity
    /// included (what the write would have had live).
    fn room(&self, key: &K) -> usize;

    /// The value `cur` (`None`: an empty one) with `bytes` written at
    /// `offset`, zero-padded first if it is shorter, in a buffer of at most
    /// `room` bytes; and that buffer's spare capacity, as hidden weight
    /// (see [`Cache::compute_slot`](crate::Cache::compute_slot)). `None`
    /// for a write no cache could have made (past the longest value).
    fn splice(
        &self,
        cur: Option<Slot<'_, V>>,
        offset: u64,
        bytes: &[u8],
        room: usize,
    ) -> Option<(V, u64)>;
}

/// A time to live to set with a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Keep the entry's current deadline (none for a new entry): Redis's `KEEPTTL`.
    Keep,
    /// Never expire.
    Never,
    /// Expire this long from now.
    After(Duration),
}

/// What [`Cache::compute`](crate::Cache::compute) does with the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<V> {
    /// Change nothing.
    Nothing,
    /// Store this value with this time to live.
    Put(V, Ttl),
    /// Keep the value; change the time to live (ignored when there is no entry).
    SetTtl(Ttl),
    /// Remove the entry.
    Remove,
}
