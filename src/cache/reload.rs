//! Background reloads: starting one (single flight with foreground loads,
//! on the refresher's pool or the user's spawner) and landing its result.

use super::Cache;
use crate::flight::RefreshFlight;
use crate::refresh::{BoxError, Refresher};
use std::hash::{BuildHasher, Hash};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Starts one background reload of `key` unless one is in flight, a
    /// foreground load is running, or its last reload failed within the
    /// refresh period.
    pub(super) fn start_refresh(&self, r: &Refresher<K, V>, key: K, now: u64) {
        if !r.may_reload(&key, now) {
            return;
        }
        let Some(flight) = self.begin_refresh(&key, r.key_cloner()) else {
            return;
        };
        // A reload that landed between this reader's look and its flight
        // has already renewed the entry: start none (the flight is abandoned).
        if !self.still_due(r, &key) {
            return;
        }
        if r.runs_on_pool() {
            // The pool holds a weak handle, so queued reloads do not keep a
            // dropped cache alive; one whose cache is gone runs no loader.
            let weak = self.downgrade();
            let alive = weak.clone();
            r.run(
                key,
                move || alive.strong_count() > 0,
                move |key, result| {
                    if let Some(cache) = Cache::upgrade(&weak) {
                        cache.finish_refresh(flight, key, result);
                    }
                },
            );
        } else {
            let cache = self.clone();
            r.run(
                key,
                || true,
                move |key, result| cache.finish_refresh(flight, key, result),
            );
        }
    }

    /// Stores a reload's value, or counts and reports its failure, and lands
    /// its flight.
    fn finish_refresh(&self, flight: RefreshFlight<K, V>, key: K, result: Result<V, BoxError>) {
        let Some(r) = self.refresher() else {
            return;
        };
        match result {
            // A value whose entry left while it loaded replaced nothing:
            // not a success.
            Ok(v) => {
                if self.complete_refresh(flight, key, v) {
                    r.note_success();
                }
            }
            Err(e) => {
                r.note_failure(key, &e, self.clock_now(), || self.len());
                drop(flight);
            }
        }
    }
}
