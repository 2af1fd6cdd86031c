//! What the shard is handed and hands back: the write's environment (hasher,
//! weigher, a clock read at most once), lookups' results.
//!
//! Owns these small types only; calls the clock.

use crate::shard::expiry::deadline_after;
use crate::weigher::Weights;
use std::cell::Cell;
use std::time::Duration;

/// What a write needs from the cache around the shard.
pub(crate) struct Env<'a, K, V, S> {
    pub(crate) hasher: &'a S,
    pub(crate) weights: &'a Weights<K, V>,
    /// The clock, read at most once per write and only if needed.
    pub(crate) clock: &'a crate::clock::Millis,
    pub(crate) now_ms: Cell<Option<u64>>,
    /// How far past the start of millisecond `now_ms` the clock read, when
    /// this write read it (zero when the caller set `now_ms`).
    pub(crate) now_frac: Cell<Duration>,
    /// Time-to-idle in ms, if configured.
    pub(crate) tti: Option<u64>,
    /// How much later than their time to live entries are kept, in ms (the
    /// refresh windows; 0 without them). Kept entries are expired to every
    /// write: only the read paths that serve stale values see them.
    pub(crate) grace: u64,
    /// How many hits an entry stores (the policy's rule), for a write
    /// that counts as an access.
    pub(crate) hits: crate::policy::node::HitCount,
}

impl<K, V, S> Env<'_, K, V, S> {
    /// Monotonic milliseconds now (read on first use, then fixed for this write).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        if let Some(v) = self.now_ms.get() {
            return v;
        }
        let (v, frac) = self.clock.now_exact();
        self.now_ms.set(Some(v));
        self.now_frac.set(frac);
        v
    }

    /// The millisecond now, rounded up (see [`LazyNow::ceil`]).
    #[inline]
    pub(crate) fn now_ceil(&self) -> u64 {
        let (now, past) = self.reading();
        now.saturating_add(u64::from(past))
    }

    /// [`now`](Self::now) as a [`LazyNow`] reads it.
    #[inline]
    pub(crate) fn reading(&self) -> (u64, bool) {
        let now = self.now();
        (now, !self.now_frac.get().is_zero())
    }

    /// The deadline of an entry written now that lives `ttl`: the first
    /// millisecond by whose start at least `ttl` has passed since the
    /// clock's reading, so the entry never expires early (and at most a
    /// millisecond late). A zero `ttl`'s deadline is now: expired at once.
    #[inline]
    pub(crate) fn deadline_after(&self, ttl: Duration) -> u64 {
        let now = self.now();
        if ttl.is_zero() {
            return now;
        }
        deadline_after(now, ttl.saturating_add(self.now_frac.get()))
    }

    /// The time left from the clock's reading until `deadline`, in whole
    /// milliseconds rounded down (zero once it has passed).
    #[inline]
    pub(crate) fn left_until(&self, deadline: u64) -> Duration {
        let (now, past) = self.reading();
        left_ms(deadline, now, past)
    }
}

/// The time left from a reading of millisecond `now` (`past` its start)
/// until `deadline`, in whole milliseconds rounded down, as Redis's `PTTL`
/// counts: never more than the entry has left.
#[inline]
pub(crate) fn left_ms(deadline: u64, now: u64, past: bool) -> Duration {
    let left = deadline.saturating_sub(now);
    Duration::from_millis(left.saturating_sub(u64::from(past)))
}

/// The clock, read at most once per lookup and only if an entry needs it:
/// its millisecond, and whether the reading was past that millisecond's
/// start.
pub(crate) struct LazyNow<F: Fn() -> (u64, bool)> {
    read: F,
    value: Cell<Option<(u64, bool)>>,
}

impl<F: Fn() -> (u64, bool)> LazyNow<F> {
    pub(crate) fn new(read: F) -> Self {
        Self {
            read,
            value: Cell::new(None),
        }
    }

    #[inline]
    fn reading(&self) -> (u64, bool) {
        if let Some(v) = self.value.get() {
            return v;
        }
        let v = (self.read)();
        self.value.set(Some(v));
        v
    }

    /// The millisecond now.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.reading().0
    }

    /// The millisecond now, rounded up: the next one if the reading was
    /// past this one's start. An access is stamped with it, so that an
    /// idle time counted from the stamp is never shorter than the real one.
    #[inline]
    pub(crate) fn ceil(&self) -> u64 {
        let (ms, past) = self.reading();
        ms.saturating_add(u64::from(past))
    }
}

/// The result of a lookup.
pub(crate) enum Lookup<T> {
    Hit(T),
    Miss,
    /// Present but past its deadline (a miss to the caller).
    Expired,
}

/// A live entry's view for read-modify-write operations.
pub(crate) struct Found<'a, V> {
    pub(crate) value: &'a V,
    pub(crate) deadline: Option<u64>,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    New,
    Replaced,
}
