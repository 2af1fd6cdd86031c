//! What the cache asks of its [`Refresher`]: how fresh an entry with a given
//! stored deadline is, whether a key may be reloaded now, running a reload
//! on the pool or the user's spawner, and noting how it ended.

use super::pool::Job;
use super::stats::{Counters, RefreshStats};
use super::{BoxError, Freshness, RefreshLoader, Refresher, FAILED_BOUND};
use crate::flight_waits::{Leader, Named};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::task::Poll;

/// The error a panicking refresh loader's reload fails with.
const PANICKED: &str = "refresh loader panicked";

impl<K, V> Refresher<K, V> {
    /// The deadline to store for an entry that should expire at `deadline`:
    /// later by the larger stale window.
    pub(crate) fn stored_deadline(&self, deadline: Option<u64>) -> Option<u64> {
        deadline.map(|d| d.saturating_add(self.stale_ms))
    }

    /// How much later than their time to live entries are kept, in ms.
    pub(crate) fn kept_past_ttl_ms(&self) -> u64 {
        self.stale_ms
    }

    /// The deadline callers see for a stored one.
    pub(crate) fn visible_deadline(&self, stored: u64) -> u64 {
        stored.saturating_sub(self.stale_ms)
    }

    /// A copy of `key` (reloads outlive the reader that started them).
    pub(crate) fn clone_key(&self, key: &K) -> K {
        (self.clone_key)(key)
    }

    /// The function that copies a key.
    pub(crate) fn key_cloner(&self) -> fn(&K) -> K {
        self.clone_key
    }

    /// How fresh a read at `now` finds an entry with this stored deadline;
    /// `None` when it is past every window a read serves (kept only for
    /// stale-if-error, so a miss to a read).
    pub(crate) fn freshness(&self, stored: Option<u64>, now: u64) -> Option<Freshness> {
        Some(match stored.map(|d| self.visible_deadline(d)) {
            None => Freshness::Fresh,
            Some(d) if now >= d.saturating_add(self.serve_ms) => return None,
            Some(d) if now >= d => Freshness::Stale,
            Some(d) if d - now <= self.due_within_ms => Freshness::Refreshing,
            Some(_) => Freshness::Fresh,
        })
    }

    /// Whether an entry with this stored deadline is due for a reload (or
    /// stale) at `now`.
    pub(crate) fn is_due(&self, stored: Option<u64>, now: u64) -> bool {
        stored
            .map(|d| self.visible_deadline(d))
            .is_some_and(|d| now >= d || d - now <= self.due_within_ms)
    }

    /// Whether an entry with this stored deadline may be served at `now` in
    /// place of a failed load's error (the stale-if-error window).
    pub(crate) fn serves_if_error(&self, stored: u64, now: u64) -> bool {
        let visible = self.visible_deadline(stored);
        self.if_error_ms > 0 && now >= visible && now < visible.saturating_add(self.if_error_ms)
    }

    /// Whether stale-if-error is configured.
    pub(crate) fn has_stale_if_error(&self) -> bool {
        self.if_error_ms > 0
    }

    /// Counts a value served past its time to live.
    pub(crate) fn count_stale_served(&self) {
        Counters::bump(&self.counters.stale_served);
    }

    /// Whether `key` may be reloaded at `now`: not if its last reload failed
    /// within the refresh period.
    pub(crate) fn may_reload(&self, key: &K, now: u64) -> bool
    where
        K: std::hash::Hash + Eq,
    {
        let mut failed = self.failed.lock();
        match failed.get(key) {
            Some(&until) if now < until => false,
            Some(_) => {
                failed.remove(key);
                true
            }
            None => true,
        }
    }

    /// Whether reloads run on the refresher's own pool (a sync loader)
    /// rather than the user's spawner.
    pub(crate) fn runs_on_pool(&self) -> bool {
        matches!(self.loader, RefreshLoader::Sync(_))
    }

    /// Runs the loader for `key` in the background and hands the result to
    /// `land`: on the pool for a sync loader, on the user's spawner for an
    /// async one. A loader that panics (an async one when called, or while
    /// its future is polled) lands as an error, so the panic reaches neither
    /// the reader that started the reload nor the spawner's runtime. A
    /// queued sync reload whose `wanted` says no by the time it runs is
    /// dropped unrun (its cache is gone). A reload the full pool queue refuses is dropped unrun, `land`
    /// with it, and counted as skipped. The thread running the loader (or
    /// polling its future) is named in `leader`, the reload flight's cell,
    /// while it does (see `flight_waits.rs`).
    pub(crate) fn run(
        &self,
        key: K,
        leader: Leader,
        wanted: impl Fn() -> bool + Send + 'static,
        land: impl FnOnce(K, Result<V, BoxError>) + Send + 'static,
    ) where
        K: Send + 'static,
        V: Send + 'static,
    {
        match &self.loader {
            RefreshLoader::Sync(load) => {
                let load = load.clone();
                let job: Job = Box::new(move || {
                    if !wanted() {
                        return;
                    }
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let _named = Named::here(&leader);
                        load(&key)
                    }))
                    .unwrap_or_else(|_| Err(PANICKED.into()));
                    land(key, result);
                });
                Counters::bump(&self.counters.started);
                if let Some(pool) = &self.pool {
                    if let Err(job) = pool.submit(job) {
                        drop(job);
                        self.counters.started.fetch_sub(1, Ordering::Relaxed);
                        Counters::bump(&self.counters.skipped);
                    }
                }
            }
            RefreshLoader::Async(load, spawn) => {
                let copy = self.clone_key(&key);
                let called = std::panic::catch_unwind(AssertUnwindSafe(|| load(copy)));
                Counters::bump(&self.counters.started);
                let Ok(mut fut) = called else {
                    return land(key, Err(PANICKED.into()));
                };
                // A panic while polled lands as a failure too: the spawner's
                // runtime would otherwise drop the reload unreported.
                let caught = std::future::poll_fn(move |cx| {
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let _named = Named::here(&leader);
                        fut.as_mut().poll(cx)
                    }))
                    .unwrap_or_else(|_| Poll::Ready(Err(PANICKED.into())))
                });
                spawn(Box::pin(async move {
                    let result = caught.await;
                    // As on the pool: a panic while the value is stored or
                    // its removals handed on reaches no caller.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| land(key, result)));
                }));
            }
        }
    }

    /// Counts a reload whose value was stored.
    pub(crate) fn note_success(&self) {
        Counters::bump(&self.counters.succeeded);
    }

    /// Counts and reports a failed reload, and remembers `key` so it is not
    /// reloaded again before `now` plus the refresh period (remembered
    /// before the error listener is called).
    ///
    /// The memory holds at most [`FAILED_BOUND`] keys or as many as the
    /// cache holds (`live`, asked only once the memory has that many),
    /// whichever is more: a key is reloaded only while it is cached, so
    /// that bound is what a source failing for every key at once needs, and
    /// it costs less than the cached keys themselves. When full, the
    /// cool-downs that have ended are dropped first; only a memory still
    /// full after that is cleared.
    pub(crate) fn note_failure(
        &self,
        key: K,
        error: &BoxError,
        now: u64,
        live: impl FnOnce() -> usize,
    ) where
        K: std::hash::Hash + Eq,
    {
        Counters::bump(&self.counters.failed);
        let until = now.saturating_add(self.after_ms);
        // The cache's length takes every shard's read lock: asked with
        // the memory's mutex released, and only once the memory is large.
        let large = self.failed.lock().len() >= FAILED_BOUND;
        let bound = if large {
            live().max(FAILED_BOUND)
        } else {
            FAILED_BOUND
        };
        let mut failed = self.failed.lock();
        if failed.len() >= bound {
            failed.retain(|_, &mut until| now < until);
            if failed.len() >= bound {
                failed.clear();
            }
        }
        // The cool-down first, then the listener: a listener that reads
        // or loads the key (or panics) finds it cooling down.
        let Some(listener) = &self.on_error else {
            failed.insert(key, until);
            return;
        };
        let copy = (self.clone_key)(&key);
        failed.insert(key, until);
        drop(failed);
        listener(&copy, error);
    }

    /// The counters as [`RefreshStats`].
    pub(crate) fn stats(&self) -> RefreshStats {
        let c = &self.counters;
        RefreshStats {
            started: c.started.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
        }
    }
}
