//! Background reloads: starting one (single flight with foreground loads,
//! on the pool or the user's spawner) and landing its result.

use super::pool::Job;
use super::stats::Counters;
use super::{BoxError, RefreshLoader, Refresher, FAILED_BOUND};
use crate::cache::Cache;
use crate::loader::RefreshFlight;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;

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
        {
            let mut failed = r.failed.lock();
            if let Some(&until) = failed.get(&key) {
                if now < until {
                    return;
                }
                failed.remove(&key);
            }
        }
        let Some(flight) = self.begin_refresh(&key, r.clone_key) else {
            return;
        };
        // A reload that landed between this reader's look and its flight
        // has already renewed the entry: start none (the flight is abandoned).
        if !self.still_due(r, &key) {
            return;
        }
        match &r.loader {
            RefreshLoader::Sync(load) => {
                let load = load.clone();
                let weak = self.downgrade();
                let job: Job = Box::new(move || {
                    let Some(cache) = Cache::upgrade(&weak) else {
                        return;
                    };
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&key)))
                            .unwrap_or_else(|_| Err("refresh loader panicked".into()));
                    cache.finish_refresh(flight, key, result);
                });
                Counters::bump(&r.counters.started);
                if let Some(pool) = &r.pool {
                    if let Err(job) = pool.submit(job) {
                        // Dropping the job drops its flight, which lets any
                        // waiter load for itself.
                        drop(job);
                        r.counters.started.fetch_sub(1, Ordering::Relaxed);
                        Counters::bump(&r.counters.skipped);
                    }
                }
            }
            RefreshLoader::Async(load, spawn) => {
                let fut = load(r.clone_key_of(&key));
                let cache = self.clone();
                Counters::bump(&r.counters.started);
                spawn(Box::pin(async move {
                    let result = fut.await;
                    cache.finish_refresh(flight, key, result);
                }));
            }
        }
    }

    /// Stores a reload's value, or counts and reports its failure, and lands
    /// its flight.
    fn finish_refresh(&self, flight: RefreshFlight<K, V>, key: K, result: Result<V, BoxError>) {
        let Some(r) = self.refresher() else {
            return;
        };
        match result {
            Ok(v) => {
                self.complete_refresh(flight, key, v);
                Counters::bump(&r.counters.succeeded);
            }
            Err(e) => {
                Counters::bump(&r.counters.failed);
                let until = self.clock_now().saturating_add(r.after_ms);
                if let Some(listener) = &r.on_error {
                    listener(&key, &e);
                }
                {
                    let mut failed = r.failed.lock();
                    if failed.len() >= FAILED_BOUND {
                        failed.clear();
                    }
                    failed.insert(key, until);
                }
                drop(flight);
            }
        }
    }
}
