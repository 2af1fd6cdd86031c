//! Counters of background reloads and the [`RefreshStats`] read from them.

use crate::cache::Cache;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of background reloads, from [`Cache::refresh_stats`].
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

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Counters of background reloads (all zero without refresh).
    pub fn refresh_stats(&self) -> RefreshStats {
        let Some(r) = self.refresher() else {
            return RefreshStats::default();
        };
        let c = &r.counters;
        RefreshStats {
            started: c.started.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
        }
    }
}
