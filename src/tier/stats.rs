//! The tier's counters: bumped with relaxed atomics on the operations'
//! paths, read as one [`TierStats`] snapshot.
//!
//! Owns the counters; calls nothing (the link's figures are handed in).

use super::health::DownReason;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the Redis tier (local hits are in
/// [`TieredCache::local`](super::TieredCache::local)`().stats()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Local misses answered by Redis.
    pub remote_hits: u64,
    /// Local misses that Redis did not have either.
    pub remote_misses: u64,
    /// Operations that found Redis down, or failed or timed out on it.
    pub remote_errors: u64,
    /// Other instances' invalidations applied to the local tier.
    pub invalidations_received: u64,
    /// Deletes and invalidations queued while Redis was down.
    pub invalidations_queued: u64,
    /// Queued ones sent to Redis after it came back.
    pub invalidations_replayed: u64,
    /// Writes refused (with [`TierError::Unavailable`](super::TierError::Unavailable)) because the queue
    /// was full: not applied in Redis, not kept locally, not propagated.
    pub invalidations_dropped: u64,
    /// Local entries not served because the invalidation channel had not
    /// been proven live within the liveness bound (read from Redis instead).
    pub local_hits_skipped: u64,
    /// Calls to Redis that timed out (the tier goes down only after
    /// several in a row).
    pub timeouts: u64,
    /// Transitions from `Up` to `Down`.
    pub down_transitions: u64,
    /// Why the tier last went from `Up` to `Down` (the reason is also in
    /// [`Health::Down`](super::Health::Down) while it lasts; see [`TieredCache::last_down`](super::TieredCache::last_down) for the error).
    pub last_down_reason: Option<DownReason>,
    /// Times the background task reconnected after an outage.
    pub reconnects: u64,
    /// Keys waiting in the queue now.
    pub queue_len: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) remote_hits: AtomicU64,
    pub(crate) remote_misses: AtomicU64,
    pub(crate) remote_errors: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The counters now, with the link's figures: its `Up` to `Down`
    /// transitions, why it last went down, and the queue's length.
    pub(crate) fn snapshot(
        &self,
        down_transitions: u64,
        last_down_reason: Option<DownReason>,
        queue_len: u64,
    ) -> TierStats {
        let c = self;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TierStats {
            remote_hits: get(&c.remote_hits),
            remote_misses: get(&c.remote_misses),
            remote_errors: get(&c.remote_errors),
            invalidations_received: get(&c.received),
            invalidations_queued: get(&c.queued),
            invalidations_replayed: get(&c.replayed),
            invalidations_dropped: get(&c.dropped),
            reconnects: get(&c.reconnects),
            local_hits_skipped: get(&c.skipped),
            timeouts: get(&c.timeouts),
            down_transitions,
            last_down_reason,
            queue_len,
        }
    }
}
