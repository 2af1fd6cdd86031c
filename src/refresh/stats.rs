//! Counters of background reloads and the [`RefreshStats`] read from them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of background reloads, from
/// [`Cache::refresh_stats`](crate::Cache::refresh_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshStats {
    /// Reloads started.
    pub started: u64,
    /// Reloads whose value replaced the entry's.
    pub succeeded: u64,
    /// Reloads whose loader failed or panicked (the value stayed).
    pub failed: u64,
    /// Reads that returned a value past its time to live.
    pub stale_served: u64,
    /// Reloads not started because the queue was full.
    pub skipped: u64,
}

/// The counters behind [`RefreshStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) started: AtomicU64,
    pub(super) succeeded: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) stale_served: AtomicU64,
    pub(super) skipped: AtomicU64,
}

impl Counters {
    pub(super) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
