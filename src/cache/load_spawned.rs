//! Detached loads: the leader hands its load to a spawner the caller
//! supplies, so the load runs to completion even if the caller's future is
//! dropped (a request timeout); every caller, the leader included, awaits
//! the flight like a waiter.

use super::load::{settle, Role};
use super::Cache;
use crate::flight::{ErrBox, Flight, State, WaitFlight};
use crate::refresh::BoxFuture;
use crate::shard::LoadId;
use crate::sync::Arc;
use std::future::Future;
use std::hash::{BuildHasher, Hash};

/// A load running on the caller's spawner. It owns a handle to the cache, so
/// the load can store its value after every caller has gone; dropping it
/// unfinished (the spawner discarded it, the runtime shut down, the loader
/// panicked) lands the flight as abandoned and the waiters take over.
struct DetachedLoad<K: Hash + Eq, V, S> {
    cache: Cache<K, V, S>,
    key: Option<K>,
    flight: Arc<Flight<V>>,
    shard: usize,
    /// The load's mark in its shard (see `load.rs`).
    load: Option<LoadId>,
}

impl<K: Hash + Eq, V, S> DetachedLoad<K, V, S> {
    fn unregister(&self, key: &K) {
        self.cache.inner.flights.maps[self.shard].lock().remove(key);
    }
}

impl<K, V, S> DetachedLoad<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Stores a loaded value (before unregistering, so a newcomer sees either
    /// the flight or the value), then wakes the waiters with the result. A
    /// value not stored because its key was written during the load is not
    /// handed out: the waiters look again.
    fn finish(mut self, result: Result<V, ErrBox>) {
        // The store's removals reach the listener once the flight has
        // landed (see `Later`).
        let mut later = None;
        let stored = match (&self.key, &result) {
            (Some(key), Ok(v)) => {
                later = self
                    .cache
                    .insert_loaded(key.clone(), v.clone(), &mut self.load);
                later.is_some()
            }
            _ => true,
        };
        self.cache.end_load(self.shard, &mut self.load);
        if let Some(key) = self.key.take() {
            self.unregister(&key);
        }
        self.flight.land(if stored {
            State::Done(result)
        } else {
            State::Abandoned
        });
        drop(later);
    }
}

impl<K: Hash + Eq, V, S> Drop for DetachedLoad<K, V, S> {
    fn drop(&mut self) {
        self.cache.end_load(self.shard, &mut self.load);
        if let Some(key) = self.key.take() {
            self.unregister(&key);
            self.flight.land(State::Abandoned);
        }
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Like [`try_get_or_insert_with_async`](Self::try_get_or_insert_with_async),
    /// but the load runs detached on `spawn` (for example
    /// `|f| { tokio::spawn(f); }`): when this call leads the load, the future
    /// `load()` returns is handed to `spawn`, and this call then waits for it
    /// like any other caller. Dropping this call's future (a timeout) leaves
    /// the load running; it stores its value and wakes every waiter when it
    /// completes. The cache imposes no runtime.
    ///
    /// `load` is called at most twice: once for the detached load and, only
    /// if that load is dropped unfinished (the spawner discarded it, its
    /// runtime shut down, or the loader panicked) or its value is not stored
    /// (the key was written while it loaded) and this call then leads again,
    /// once more to load in this call's own task.
    ///
    /// ```
    /// use shardcache::Cache;
    /// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// # rt.block_on(async {
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let v = cache
    ///     .try_get_or_insert_with_spawned(
    ///         7,
    ///         || async { Ok::<_, std::io::Error>("loaded".to_string()) },
    ///         |f| {
    ///             tokio::spawn(f);
    ///         },
    ///     )
    ///     .await;
    /// assert_eq!(v.ok().as_deref(), Some("loaded"));
    /// # });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The loader's error, shared by every caller that waited on that load.
    pub async fn try_get_or_insert_with_spawned<E, F>(
        &self,
        key: K,
        load: impl Fn() -> F,
        spawn: impl FnOnce(BoxFuture),
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let stale_key = self.fallback_key(&key);
        let result = self.load_spawned(key, load, spawn).await;
        self.or_stale(result, stale_key)
    }

    /// The infallible form of
    /// [`try_get_or_insert_with_spawned`](Self::try_get_or_insert_with_spawned).
    pub async fn get_or_insert_with_spawned<F>(
        &self,
        key: K,
        load: impl Fn() -> F,
        spawn: impl FnOnce(BoxFuture),
    ) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        let load = || {
            let f = load();
            async move { Ok::<V, std::convert::Infallible>(f.await) }
        };
        match self.try_get_or_insert_with_spawned(key, load, spawn).await {
            Ok(v) => v,
            Err(never) => match *never {},
        }
    }

    /// The miss path of `try_get_or_insert_with_spawned`.
    async fn load_spawned<E, F>(
        &self,
        key: K,
        load: impl Fn() -> F,
        spawn: impl FnOnce(BoxFuture),
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        let mut spawn = Some(spawn);
        loop {
            let flight = match self.join(&key, &|_| true) {
                Role::Ready(v) => return Ok(v),
                Role::Wait(flight) => flight,
                Role::Lead(mut guard) => match (spawn.take(), guard.key.take()) {
                    (Some(spawn), Some(k)) => {
                        let detached = DetachedLoad {
                            cache: self.clone(),
                            key: Some(k),
                            flight: guard.flight.clone(),
                            shard: guard.shard,
                            load: guard.load.take(),
                        };
                        let flight = guard.flight.clone();
                        let led = guard.flight.clone();
                        let f = load();
                        spawn(Box::pin(async move {
                            let result = led.polled_here(f).await;
                            detached.finish(result.map_err(|e| Arc::new(e) as ErrBox));
                        }));
                        flight
                    }
                    (spawn_left, k) => {
                        // The detached load was dropped unfinished: load here.
                        guard.key = k;
                        drop(spawn_left);
                        let result = guard.flight.polled_here(load()).await;
                        return super::load::lead(guard, result, |k, v, mark| {
                            self.insert_loaded(k, v, mark)
                        });
                    }
                },
            };
            if let Some(r) = settle(WaitFlight { flight }.await) {
                return r;
            }
            if let Some(v) = self.get(&key) {
                return Ok(v);
            }
        }
    }
}
