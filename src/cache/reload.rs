//! Background reloads: starting one (single flight with foreground loads,
//! on the refresher's pool or the user's spawner) and landing its result.

use super::{Cache, Inner};
use crate::flight::RefreshFlight;
use crate::listener::Removed;
use crate::refresh::{BoxError, Refresher};
use crate::shard::LoadId;
use std::hash::{BuildHasher, Hash};
use std::sync::Weak;

/// The error a refresh's error listener is handed when the cache refused
/// the reloaded value.
const REFUSED: &str = "the reloaded value does not fit in the cache \
     (heavier than its share of the capacity, or the cache is full and never evicts)";

/// A background reload in flight: its flight and its load's mark in the
/// key's shard (see `load.rs`). It holds the cache weakly, so a queued
/// reload does not keep it alive; dropping it unfinished (the loader
/// failed, the pool's queue was full, the spawner dropped it) ends the mark
/// and abandons the flight.
pub(crate) struct Reload<K: Hash + Eq, V, S> {
    pub(super) flight: RefreshFlight<K, V>,
    pub(super) load: Option<LoadId>,
    pub(super) cache: Weak<Inner<K, V, S>>,
}

impl<K: Hash + Eq, V, S> Drop for Reload<K, V, S> {
    fn drop(&mut self) {
        if self.load.is_some() {
            if let Some(inner) = self.cache.upgrade() {
                Cache { inner }.end_load(self.flight.shard, &mut self.load);
            }
        }
    }
}

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
        let Some(reload) = self.begin_refresh(&key, r.key_cloner()) else {
            return;
        };
        // A reload that landed between this reader's look and its flight
        // has already renewed the entry: start none (the flight is abandoned).
        if !self.still_due(r, &key) {
            return;
        }
        // A reload holds its cache weakly, on the pool (queued reloads do
        // not keep a dropped cache alive; one whose cache is gone runs no
        // loader) as on the user's spawner (a reload in flight does not
        // keep a dropped cache, its log and the log's file lock, alive
        // until its loader ends). It holds the cache while it stores its
        // value, and calls the listener once it no longer does.
        let weak = self.downgrade();
        let alive = weak.clone();
        let on_pool = r.runs_on_pool();
        let leader = reload.flight.flight.leader().clone();
        r.run(
            key,
            leader,
            move || !on_pool || alive.strong_count() > 0,
            move |key, result| {
                let stored = Cache::upgrade(&weak).map(|cache| {
                    let mut later = Removed::new();
                    cache.finish_refresh(reload, key, result, &mut later);
                    (cache.listener(), later)
                });
                if let Some((Some(listener), later)) = stored {
                    super::notify::deliver(&listener, later);
                }
            },
        );
    }

    /// Stores a reload's value, or counts and reports its failure, and lands
    /// its flight; the store's removals, counted, are left in `later`.
    fn finish_refresh(
        &self,
        reload: Reload<K, V, S>,
        key: K,
        result: Result<V, BoxError>,
        later: &mut Removed<K, V>,
    ) {
        let Some(r) = self.refresher() else {
            return;
        };
        match result {
            Ok(v) => match self.complete_refresh(reload, key, v, later) {
                Ok(true) => r.note_success(),
                // The entry left or was written while the value loaded: it
                // replaced nothing, and nothing is due any more.
                Ok(false) => {}
                // The entry stays, due, with a value the cache will not
                // take: a failure, so that it is not reloaded on every read.
                Err(key) => {
                    let e: BoxError = REFUSED.into();
                    r.note_failure(key, &e, self.clock_now(), || self.len());
                }
            },
            Err(e) => {
                // The flight lands first: an error listener that loads the
                // key finds no load of it in flight.
                drop(reload);
                r.note_failure(key, &e, self.clock_now(), || self.len());
            }
        }
    }
}
