//! Deadlines on the cache's own millisecond clock, for a caller that
//! converts Unix times through the cache's wall clock (`KvStore`, whose
//! `EXPIRETIME` answers the deadline it was given): the clock's reading,
//! an entry's deadline as stored, and a
//! [`compute`](Cache::compute) whose times to live count from a clock
//! reading the caller took.

use super::compute::Sees;
use super::Cache;
use crate::compute::{Current, Decision};
use crate::error::CapacityError;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// The cache's clock now (milliseconds since it was built, plus one)
    /// and its wall clock at that instant (Unix milliseconds, through the
    /// origin every conversion of the cache uses: see `wallclock.rs`).
    pub(crate) fn clock_reading(&self) -> crate::wallclock::Now {
        self.inner.clock.reading()
    }

    /// The deadline of a live `key` on the cache's clock (see
    /// [`clock_reading`](Self::clock_reading)): `None` if absent or expired,
    /// `Some(None)` if it never expires. Does not count as an access.
    pub(crate) fn deadline<Q>(&self, key: &Q) -> Option<Option<u64>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_at(key, |_, deadline| deadline.map(|(d, _, _)| d))
    }

    /// [`compute`](Self::compute) at `now`, a reading of
    /// [`clock_reading`](Self::clock_reading) taken just before: a time to live the
    /// closure sets, and the one it sees, count from `now`, so a deadline
    /// lands exactly where the caller computed it.
    pub(crate) fn compute_at<R>(
        &self,
        key: K,
        now: u64,
        f: impl FnOnce(Option<Current<'_, V>>) -> (Decision<V>, R),
    ) -> Result<R, CapacityError<K, V>> {
        self.compute_marked(key, &mut None, Sees::Live, Some(now), None, |slot, _| {
            let (decision, r) = f(slot.map(|s| Current {
                value: &*s.value,
                ttl: s.ttl,
            }));
            (decision, 0, None, r)
        })
    }
}
