//! Refresh-ahead and stale-while-revalidate.
//!
//! With [`CacheBuilder::refresh_after`] and a refresh loader, a read of an
//! entry older than `refresh_after` returns the current value at once and
//! starts one background reload of that key. With
//! [`CacheBuilder::serve_stale_for`], a read past the entry's time to live
//! but within that window returns the stale value and starts a reload.
//!
//! **How an entry's age is known.** Entries carry no write time (that would
//! cost every entry 8 bytes). An entry written with the cache's
//! `time_to_live` was written exactly `time_to_live` before its deadline, so
//! its age is `time_to_live - remaining`; refresh is due once it has at most
//! `time_to_live - refresh_after` left to live. An entry written with its
//! own TTL is judged by the same rule (it is due when it has that little
//! left), and an entry with no deadline is never refreshed. Refresh-ahead
//! therefore requires a `time_to_live`, and `refresh_after` must be shorter.
//!
//! **Stale-if-error.** With [`CacheBuilder::stale_if_error_for`], a
//! read-through load ([`Cache::try_get_or_insert_with`] and its async form)
//! whose loader fails within that long past the entry's time to live
//! returns the expired value instead of the error (counted as stale
//! served). Plain reads treat the entry as expired.
//!
//! **The stale windows** are kept by giving each entry a deadline the
//! largest of the two windows and `time_to_live - refresh_after` later than
//! its time to live (the last so that a reload that lands just after its
//! entry expired still stores its value, and a read that misses meanwhile
//! waits for that reload instead of loading again); reads subtract it again, so
//! `get`, `contains_key`, `ttl` and `get_with_ttl` see the entry expire at its
//! time to live ([`Cache::get`] returns it within the window, marked stale by
//! [`Cache::get_with_freshness`](crate::Cache::get_with_freshness)). `len` counts entries in their stale window,
//! as it counts expired entries not yet reclaimed; iteration does not.
//!
//! **Expired, though kept.** Past its time to live an entry is expired to
//! every call but the stale reads its window promises: [`Cache::compute`]
//! sees no entry (and, for a live one, the time to live `ttl` reports),
//! `set_ttl` cannot revive it, `remove` returns nothing, and a write over it
//! or a removal of it tells the eviction listener
//! [`RemovalCause::Expired`](crate::RemovalCause::Expired), not `Replaced`
//! or `Removed`. Until a write replaces or removes it, a read within
//! `serve_stale_for` and a failed read-through load within
//! `stale_if_error_for` still get its value. [`Cache::retain`] asks about it
//! as about a live entry (so an invalidation also stops it being served
//! stale); one it refuses leaves as expired.
//!
//! **Single flight.** A reload registers in the same table as foreground
//! loads ([`Cache::get_or_insert_with`]): while it runs, a foreground load of
//! the key waits for it instead of running its own loader, and no second
//! reload starts. A failed reload leaves the value in place, is counted,
//! reported to the error listener, and is not retried for `refresh_after`, so
//! a key is loaded at most once per refresh period even while its source
//! fails.
//!
//! The parts: `config` checks the builder's settings and builds the
//! `Refresher`; `refresher` is what the cache asks of it (is this entry
//! fresh, due or stale; run a reload; note its outcome); `stats` counts
//! reloads; `pool` runs sync reloads. The cache's read path and the landing
//! of a reload's value are the cache's own (`cache/freshness.rs`,
//! `cache/reload.rs`); this module knows nothing of the cache.

mod config;
mod pool;
mod refresher;
mod stats;
#[cfg(test)]
mod tests;

pub(crate) use config::RefreshConfig;
pub use stats::RefreshStats;

use crate::sync::{Arc, Mutex};
use pool::Pool;
use stats::Counters;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The error a refresh loader returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, as handed to a refresh spawner.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

type SyncLoad<K, V> = Arc<dyn Fn(&K) -> Result<V, BoxError> + Send + Sync>;
type AsyncLoad<K, V> =
    Arc<dyn Fn(K) -> Pin<Box<dyn Future<Output = Result<V, BoxError>> + Send>> + Send + Sync>;
type Spawn = Arc<dyn Fn(BoxFuture) + Send + Sync>;
type ErrorListener<K> = Arc<dyn Fn(&K, &BoxError) + Send + Sync>;

/// Default number of threads a sync refresh loader runs on.
const DEFAULT_THREADS: usize = 2;
/// Keys remembered as failed (so not retried within their refresh period)
/// that a cache of fewer entries may still hold; see
/// `Refresher::note_failure`.
const FAILED_BOUND: usize = 4096;

/// How reloads run.
pub(crate) enum RefreshLoader<K, V> {
    Sync(SyncLoad<K, V>),
    Async(AsyncLoad<K, V>, Spawn),
}

/// How fresh a value returned by [`Cache::get_with_freshness`](crate::Cache::get_with_freshness) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// Within its refresh period (or refresh is not configured).
    Fresh,
    /// Older than `refresh_after`, within its time to live; a reload runs or
    /// ran.
    Refreshing,
    /// Past its time to live, within `serve_stale_for`; a reload runs or ran.
    Stale,
}

/// A cache's refresh machinery.
pub(crate) struct Refresher<K, V> {
    /// Refresh is due once an entry has at most this long to live.
    due_within_ms: u64,
    after_ms: u64,
    /// How much later than their time to live entries are kept.
    stale_ms: u64,
    /// The stale-while-revalidate window.
    serve_ms: u64,
    /// The stale-if-error window.
    if_error_ms: u64,
    loader: RefreshLoader<K, V>,
    clone_key: fn(&K) -> K,
    pool: Option<Pool>,
    on_error: Option<ErrorListener<K>>,
    /// Keys whose last reload failed, with the time before which they are
    /// not tried again.
    failed: Mutex<hashbrown::HashMap<K, u64, ahash::RandomState>>,
    counters: Counters,
}

impl<K, V> fmt::Debug for Refresher<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refresher")
            .field("after_ms", &self.after_ms)
            .field("stale_ms", &self.stale_ms)
            .finish_non_exhaustive()
    }
}
