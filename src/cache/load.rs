//! Read-through loads with single flight: when many callers miss the same
//! key at once, one runs the loader and the rest wait for its result.
//!
//! The caller that finds no load in flight becomes the *leader* and holds a
//! [`LoadGuard`]. Finishing stores the value, then wakes every waiter with it
//! (or with the loader's error, which is not cached). Dropping the guard
//! without finishing (the loader panicked, or an async leader was cancelled)
//! wakes the waiters to try again, one of them becoming the next leader; no
//! `catch_unwind` is needed. Sync waiters block on a condition variable; async
//! waiters park their task's waker, so no executor thread is blocked and any
//! runtime works.
//!
//! A load begins in its key's shard before its loader runs (see
//! `shard/loads.rs`), and its value is stored only if no write to the key
//! (an insert, a removal, a clear) came in between: such a value was read
//! before that write and is older than it. The leader's caller still gets
//! the value; the waiters, some of which may have come after the write,
//! are not handed it but look again (and load again if the key is absent).

use super::notify::Later;
use super::reload::Reload;
use super::{Cache, Expire};
use crate::compute::{Decision, Ttl};
use crate::flight::{ErrBox, Flight, Outcome, RefreshFlight, State, WaitFlight};
use crate::listener::Removed;
use crate::shard::LoadId;
use crate::sync::Arc;
use std::future::Future;
use std::hash::{BuildHasher, Hash};

/// The leader's obligation to land its flight; dropping it unfinished lets a
/// waiter take over.
pub(super) struct LoadGuard<'a, K, V, S>
where
    K: Hash + Eq,
{
    pub(super) cache: &'a Cache<K, V, S>,
    pub(super) key: Option<K>,
    pub(super) flight: Arc<Flight<V>>,
    pub(super) shard: usize,
    /// The load's mark in its shard, until a store or the end takes it.
    pub(super) load: Option<LoadId>,
}

impl<K: Hash + Eq, V, S> LoadGuard<'_, K, V, S> {
    fn unregister(&self, key: &K) {
        self.cache.inner.flights.maps[self.shard].lock().remove(key);
    }
}

impl<K: Hash + Eq, V, S> Cache<K, V, S> {
    /// A load of `key` (hashing to `hash`, in shard `s`) begins: a write to
    /// the key from now on overtakes it.
    fn begin_load(&self, s: usize, hash: u64) -> LoadId {
        self.inner.shards[s].write().begin_load(hash)
    }

    /// Ends the load `load` names in shard `s`, if a store has not.
    pub(super) fn end_load(&self, s: usize, load: &mut Option<LoadId>) {
        if let Some(id) = load.take() {
            self.inner.shards[s].write().end_load(id);
        }
    }
}

impl<K, V, S> LoadGuard<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Stores a loaded value (before unregistering, so a newcomer sees either
    /// the flight or the value) and wakes the waiters.
    ///
    /// `store` puts the value in the cache, given the load's mark to store
    /// under (see [`Cache::insert_loaded`]). When it declines (returns
    /// `None`: the key was written or invalidated while it loaded), the
    /// waiters are woken to look again rather than handed the value. The
    /// mark is ended here if `store` did not. What it returns otherwise
    /// (e.g. a lock guard) is held until the waiters have been handed the
    /// value, so that nothing ordered by it can come between.
    fn finish<G>(mut self, result: Result<V, ErrBox>, store: impl Store<K, V, G>) {
        let mut end = None;
        let mut held = None;
        // The key stays in the guard while `store` runs: if it panics, the
        // guard's drop still unregisters the flight and wakes the waiters.
        if let (Some(key), Ok(v)) = (&self.key, &result) {
            match store(key.clone(), v.clone(), &mut self.load) {
                Some(g) => held = Some(g),
                None => end = Some(State::Abandoned),
            }
        }
        self.cache.end_load(self.shard, &mut self.load);
        if let Some(key) = self.key.take() {
            self.unregister(&key);
        }
        self.flight.land(end.unwrap_or(State::Done(result)));
        drop(held);
    }
}

impl<K: Hash + Eq, V, S> Drop for LoadGuard<'_, K, V, S> {
    fn drop(&mut self) {
        self.cache.end_load(self.shard, &mut self.load);
        if let Some(key) = self.key.take() {
            self.unregister(&key);
            self.flight.land(State::Abandoned);
        }
    }
}

/// How a leader stores its value: given the key, the value and the load's
/// mark in its shard; `None` means it did not store, and the waiters look
/// again. See [`LoadGuard::finish`].
pub(crate) trait Store<K, V, G>: FnOnce(K, V, &mut Option<LoadId>) -> Option<G> {}

impl<K, V, G, F: FnOnce(K, V, &mut Option<LoadId>) -> Option<G>> Store<K, V, G> for F {}

pub(super) enum Role<'a, K: Hash + Eq, V, S> {
    Ready(V),
    Lead(LoadGuard<'a, K, V, S>),
    Wait(Arc<Flight<V>>),
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Joins or leads the flight for `key`; a cached value counts as ready
    /// only if `usable` accepts it.
    pub(super) fn join(&self, key: &K, usable: &dyn Fn(&V) -> bool) -> Role<'_, K, V, S> {
        self.join_with(key, || self.peek_value(key).filter(|v| usable(v)))
    }

    /// [`join`](Self::join), with `ready` saying whether the caller already
    /// has a value it may serve (asked with the flight map locked).
    fn join_with(&self, key: &K, ready: impl FnOnce() -> Option<V>) -> Role<'_, K, V, S> {
        let (hash, shard) = self.locate(key);
        let mut map = self.inner.flights.maps[shard].lock();
        if let Some(f) = map.get(key) {
            if f.is_loading() {
                return Role::Wait(f.clone());
            }
        }
        if let Some(v) = ready() {
            return Role::Ready(v);
        }
        let flight = Arc::new(Flight::new());
        map.insert(key.clone(), flight.clone());
        Role::Lead(LoadGuard {
            cache: self,
            key: Some(key.clone()),
            flight,
            shard,
            load: Some(self.begin_load(shard, hash)),
        })
    }

    /// Stores a loaded value with the cache's default time to live, unless
    /// a write to its key overtook the load `load` names (which this ends).
    /// Returns `None` if one did, and nothing was stored; otherwise the
    /// store's removals, for the listener once the load has landed (see
    /// [`Later`]).
    pub(super) fn insert_loaded(
        &self,
        key: K,
        value: V,
        load: &mut Option<LoadId>,
    ) -> Option<Later<K, V>> {
        let mut later = Later::new(self);
        let stored = self
            .insert_for(key, value, Expire::Default, *load, Some(later.removed()))
            .unwrap_or(true);
        *load = None;
        stored.then_some(later)
    }

    /// The value for `key`, loading it with `init` on a miss. While one
    /// caller's `init` runs, other callers for the same key wait for its value
    /// instead of running their own.
    ///
    /// If the key is written while `init` runs (inserted, computed, removed,
    /// even when absent, or cleared), the value `init` returns is older than
    /// that write: this caller gets it, but it is not stored, and the callers
    /// waiting for it look again instead.
    ///
    /// ```
    /// use shardcache::Cache;
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let v = cache.get_or_insert_with(7, || "loaded".to_string());
    /// assert_eq!(v, "loaded");
    /// // Present now: the loader does not run again.
    /// assert_eq!(cache.get_or_insert_with(7, || unreachable!()), "loaded");
    /// ```
    ///
    /// # Panics
    ///
    /// If `init` asks for the same key this way (it would wait for itself
    /// forever); the key is not left loading. Likewise if loaders on
    /// several threads ask, in a cycle, for keys the others are loading
    /// (`init` of `a` asks for `b` while another thread's loader of `b`
    /// asks for `a`): the thread whose wait would close the cycle panics,
    /// its load is given up, and the other threads go on (one of them loads
    /// the key given up). The cycle may also run through a shard that
    /// code the cache runs under its lock holds (a `compute` closure that
    /// asks for a key whose loader reads that shard), through a log's
    /// rollback or repair (a loader that calls `sync`, which then returns
    /// [`PersistError::InCallback`](crate::persist::PersistError::InCallback)
    /// if its wait is the one that closes it), and through a load led by
    /// an async task whose loader blocks in its poll (the async form's
    /// `init` calling this method). A wait by `.await` blocks no thread
    /// and may be given up at any time (a timeout), so it is not followed:
    /// a cycle through one is not detected, as with any async code that
    /// awaits itself. `init`
    /// runs with no lock of the cache held: it may read and write other
    /// keys, and call any other method of the cache (as a listener may, see
    /// [`CacheBuilder::eviction_listener`](crate::CacheBuilder::eviction_listener)).
    pub fn get_or_insert_with(&self, key: K, init: impl FnOnce() -> V) -> V {
        match self.try_get_or_insert_with(key, || Ok::<V, std::convert::Infallible>(init())) {
            Ok(v) => v,
            Err(never) => match *never {},
        }
    }

    /// Like [`get_or_insert_with`](Self::get_or_insert_with) with a loader
    /// that can fail.
    ///
    /// # Errors
    ///
    /// The loader's error, shared by every caller that waited on that load.
    /// Errors are not cached: the next call loads again. Within the
    /// [`stale_if_error_for`](crate::CacheBuilder::stale_if_error_for)
    /// window the expired value is returned instead.
    ///
    /// ```
    /// use shardcache::Cache;
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// let err = cache.try_get_or_insert_with(1, || Err("db down")).unwrap_err();
    /// assert_eq!(*err, "db down");
    /// assert_eq!(cache.try_get_or_insert_with(1, || Ok::<_, &str>(5)), Ok(5));
    /// ```
    pub fn try_get_or_insert_with<E>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let stale_key = self.fallback_key(&key);
        let result = self.load_with_store(
            key,
            |_| true,
            init,
            |k, v, load| self.insert_loaded(k, v, load),
        );
        self.or_stale(result, stale_key)
    }

    /// The miss path of [`try_get_or_insert_with`](Self::try_get_or_insert_with)
    /// (the caller has already missed with `get`), with the leader storing its
    /// value through `store`. For adapters that insert with their own TTL or
    /// bookkeeping (and may ignore the load's mark `store` is given);
    /// `store` returning `None` makes the waiters load again, and what it
    /// returns otherwise is held until they have the value. A cached value
    /// for which `usable` is false counts as absent (an adapter keeping
    /// entries past their freshness).
    pub(crate) fn load_with_store<E, G>(
        &self,
        key: K,
        usable: impl Fn(&V) -> bool,
        init: impl FnOnce() -> Result<V, E>,
        store: impl Store<K, V, G>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let (mut init, mut store) = (Some(init), Some(store));
        loop {
            match self.join(&key, &usable) {
                Role::Ready(v) => return Ok(v),
                Role::Lead(guard) => {
                    if let (Some(init), Some(store)) = (init.take(), store.take()) {
                        let _named = guard.flight.led_here();
                        return lead(guard, init(), store);
                    }
                }
                Role::Wait(flight) => {
                    if let Some(r) = settle(flight.wait()) {
                        return r;
                    }
                }
            }
            if let Some(v) = self.get(&key).filter(|v| usable(v)) {
                return Ok(v);
            }
        }
    }

    /// The async form of [`get_or_insert_with`](Self::get_or_insert_with):
    /// waiters await the leader's value without blocking a thread. Works on any
    /// executor. If the leading task is cancelled, a waiter takes over.
    pub async fn get_or_insert_with_async<F>(&self, key: K, init: F) -> V
    where
        F: Future<Output = V>,
    {
        let load = async { Ok::<V, std::convert::Infallible>(init.await) };
        match self.try_get_or_insert_with_async(key, load).await {
            Ok(v) => v,
            Err(never) => match *never {},
        }
    }

    /// The async form of [`try_get_or_insert_with`](Self::try_get_or_insert_with).
    ///
    /// # Errors
    ///
    /// The loader's error, shared by every caller that waited on that load.
    pub async fn try_get_or_insert_with_async<E, F>(&self, key: K, init: F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let stale_key = self.fallback_key(&key);
        let result = self
            .load_with_store_async(
                key,
                |_| true,
                init,
                |k, v, load| self.insert_loaded(k, v, load),
            )
            .await;
        self.or_stale(result, stale_key)
    }

    /// The async form of [`load_with_store`](Self::load_with_store).
    pub(crate) async fn load_with_store_async<E, F, G>(
        &self,
        key: K,
        usable: impl Fn(&V) -> bool,
        init: F,
        store: impl Store<K, V, G>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let (mut init, mut store) = (Some(init), Some(store));
        loop {
            match self.join(&key, &usable) {
                Role::Ready(v) => return Ok(v),
                Role::Lead(guard) => {
                    if let (Some(init), Some(store)) = (init.take(), store.take()) {
                        let result = guard.flight.polled_here(init).await;
                        return lead(guard, result, store);
                    }
                }
                Role::Wait(flight) => {
                    if let Some(r) = settle(WaitFlight { flight }.await) {
                        return r;
                    }
                }
            }
            if let Some(v) = self.get(&key).filter(|v| usable(v)) {
                return Ok(v);
            }
        }
    }
}

/// Single flight for callers that keep their own "already there" check (the
/// Redis tier, whose local copies are servable only while its invalidation
/// channel is live).
#[cfg(feature = "redis")]
impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Runs `init` as the one load of `key` in flight, or waits for the
    /// load in flight; `ready` (asked before leading, with the flight map
    /// locked, and again after a load that gave up) returns a value the
    /// caller may serve without loading. The leader's `init` stores its
    /// value itself; waiters are handed it. An error reaches the leader only:
    /// waiters get `None` and decide for themselves.
    pub(crate) async fn load_once_async<F>(
        &self,
        key: K,
        ready: impl Fn() -> Option<V>,
        init: F,
    ) -> Option<V>
    where
        F: Future<Output = Option<V>>,
    {
        let mut init = Some(init);
        loop {
            match self.join_with(&key, &ready) {
                Role::Ready(v) => return Some(v),
                Role::Lead(guard) => {
                    let init = init.take()?;
                    let result = init.await.ok_or(LoadFailed);
                    return lead(guard, result, |_, _, _| Some(())).ok();
                }
                Role::Wait(flight) => {
                    if let Some(r) = settle::<V, LoadFailed>(WaitFlight { flight }.await) {
                        return r.ok();
                    }
                }
            }
            if let Some(v) = ready() {
                return Some(v);
            }
        }
    }
}

/// The error a [`Cache::load_once_async`] leader lands: its caller keeps
/// the real one.
#[cfg(feature = "redis")]
#[derive(Debug)]
struct LoadFailed;

/// Background reloads (see `refresh`): keys are cloned through the
/// refresher's function, so these need no `K: Clone` bound.
impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Registers a background reload of `key`, unless a load of it is
    /// already in flight, and begins its load in the key's shard.
    pub(crate) fn begin_refresh(&self, key: &K, clone: fn(&K) -> K) -> Option<Reload<K, V, S>> {
        let (hash, shard) = self.locate(key);
        let mut map = self.inner.flights.maps[shard].lock();
        if map.get(key).is_some_and(|f| f.is_loading()) {
            return None;
        }
        let flight = Arc::new(Flight::new());
        map.insert(clone(key), flight.clone());
        Some(Reload {
            flight: RefreshFlight {
                key: clone(key),
                flight,
                shard,
                landed: false,
            },
            load: Some(self.begin_load(shard, hash)),
            cache: self.downgrade(),
        })
    }

    /// Stores a reloaded value if `key` still has an entry and was not
    /// written since the reload began, checked and replaced atomically under
    /// the shard's lock (a reload never brings back an entry removed while
    /// it ran, nor overwrites a newer value), then lands the flight. Returns
    /// whether the value was stored (`false`: the entry left or was written
    /// while the reload ran), or the key back when the cache refused the
    /// value (it does not fit); the write's removals, counted, are left in
    /// `later` for the listener.
    pub(crate) fn complete_refresh(
        &self,
        mut reload: Reload<K, V, S>,
        key: K,
        value: V,
        later: &mut Removed<K, V>,
    ) -> Result<bool, K> {
        let ttl = self.write_ttl(&key, &value).map_or(Ttl::Never, Ttl::After);
        let put = value.clone();
        let outcome =
            self.compute_loaded(key, &mut reload.load, later, move |current, overtaken| {
                match current {
                    Some(_) if !overtaken => (Decision::Put(put, ttl), true),
                    _ => (Decision::Nothing, false),
                }
            });
        let stored = matches!(outcome, Ok(true));
        let flight = &mut reload.flight;
        let mut map = self.inner.flights.maps[flight.shard].lock();
        if map
            .get(&flight.key)
            .is_some_and(|f| Arc::ptr_eq(f, &flight.flight))
        {
            map.remove(&flight.key);
        }
        drop(map);
        flight.landed = true;
        flight.flight.land(if stored {
            State::Done(Ok(value))
        } else {
            State::Abandoned
        });
        outcome.map_err(|refused| refused.key)
    }
}

/// Lands the leader's flight with the loader's result and returns it.
pub(super) fn lead<K, V, S, E, G>(
    guard: LoadGuard<'_, K, V, S>,
    result: Result<V, E>,
    store: impl Store<K, V, G>,
) -> Result<V, Arc<E>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    match result {
        Ok(v) => {
            guard.finish(Ok(v.clone()), store);
            Ok(v)
        }
        Err(e) => {
            let e = Arc::new(e);
            guard.finish(Err(e.clone() as ErrBox), store);
            Err(e)
        }
    }
}

/// A waiter's result, or `None` to try again (the leader gave up, or failed
/// with an error of another type).
pub(super) fn settle<V, E: Send + Sync + 'static>(
    outcome: Outcome<V>,
) -> Option<Result<V, Arc<E>>> {
    match outcome {
        Outcome::Value(v) => Some(Ok(v)),
        Outcome::Error(e) => e.downcast::<E>().ok().map(Err),
        Outcome::Retry => None,
    }
}
