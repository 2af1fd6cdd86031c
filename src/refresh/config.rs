//! The builder's refresh settings: the [`CacheBuilder`] methods that set
//! them, and the checks that turn them into a [`Refresher`].

use super::pool::Pool;
use super::stats::Counters;
use super::{
    AsyncLoad, BoxError, BoxFuture, ErrorListener, RefreshLoader, Refresher, DEFAULT_THREADS,
};
use crate::builder::CacheBuilder;
use crate::error::BuildError;
use crate::sync::{Arc, Mutex};
use std::future::Future;
use std::time::Duration;

/// The builder's refresh settings.
pub(crate) struct RefreshConfig<K, V> {
    after: Option<Duration>,
    stale_for: Option<Duration>,
    stale_if_error: Option<Duration>,
    loader: Option<RefreshLoader<K, V>>,
    clone_key: Option<fn(&K) -> K>,
    threads: usize,
    on_error: Option<ErrorListener<K>>,
}

impl<K, V> Default for RefreshConfig<K, V> {
    fn default() -> Self {
        Self {
            after: None,
            stale_for: None,
            stale_if_error: None,
            loader: None,
            clone_key: None,
            threads: DEFAULT_THREADS,
            on_error: None,
        }
    }
}

impl<K, V> RefreshConfig<K, V> {
    /// Checks the settings against the cache's time to live and builds the
    /// refresher, or `None` when refresh is not configured.
    pub(crate) fn build(
        self,
        ttl: Option<Duration>,
    ) -> Result<Option<Refresher<K, V>>, BuildError> {
        let (Some(after), Some(loader), Some(clone_key)) =
            (self.after, self.loader, self.clone_key)
        else {
            if self.after.is_some() || self.stale_for.is_some() || self.stale_if_error.is_some() {
                return Err(BuildError::InvalidRefresh(
                    "refresh_after, serve_stale_for and stale_if_error_for need \
                     refresh_after with a refresh loader",
                ));
            }
            return Ok(None);
        };
        let ttl = ttl.ok_or(BuildError::InvalidRefresh(
            "refresh_after needs a time_to_live (an entry's age is read from its deadline)",
        ))?;
        if after.is_zero() || after >= ttl {
            return Err(BuildError::InvalidRefresh(
                "refresh_after must be greater than zero and shorter than time_to_live",
            ));
        }
        if self.threads == 0 || self.threads > 64 {
            return Err(BuildError::InvalidRefresh(
                "refresh_threads must be between 1 and 64",
            ));
        }
        if self.stale_for.is_some_and(|d| d.is_zero() || d > ttl) {
            return Err(BuildError::InvalidRefresh(
                "serve_stale_for must be greater than zero and at most time_to_live",
            ));
        }
        if self.stale_if_error.is_some_and(|d| d.is_zero() || d > ttl) {
            return Err(BuildError::InvalidRefresh(
                "stale_if_error_for must be greater than zero and at most time_to_live",
            ));
        }
        let serve_ms = self.stale_for.map_or(0, crate::shard::expiry::ttl_ms);
        let if_error_ms = self.stale_if_error.map_or(0, crate::shard::expiry::ttl_ms);
        // Entries are also kept (invisible) for the refresh window past
        // their time to live, so that a reload started just before expiry
        // still finds its entry and stores its value.
        let grace_ms = crate::shard::expiry::ttl_ms(ttl) - crate::shard::expiry::ttl_ms(after);
        let stale_ms = serve_ms.max(if_error_ms).max(grace_ms);
        let pool = match &loader {
            RefreshLoader::Sync(_) => Some(Pool::start(self.threads)),
            RefreshLoader::Async(..) => None,
        };
        Ok(Some(Refresher {
            due_within_ms: crate::shard::expiry::ttl_ms(ttl) - crate::shard::expiry::ttl_ms(after),
            after_ms: crate::shard::expiry::ttl_ms(after),
            stale_ms,
            serve_ms,
            if_error_ms,
            loader,
            clone_key,
            pool,
            on_error: self.on_error,
            failed: Mutex::new(hashbrown::HashMap::default()),
            counters: Counters::default(),
        }))
    }
}

/// Refresh-ahead settings on the builder.
impl<K, V, S> CacheBuilder<K, V, S> {
    /// Reloads an entry in the background once it is this old, while reads
    /// keep returning the current value. Needs a
    /// [`time_to_live`](Self::time_to_live) longer than `after` and a loader
    /// ([`refresh_loader`](Self::refresh_loader) or
    /// [`refresh_loader_async`](Self::refresh_loader_async)); otherwise
    /// `build` fails with [`BuildError::InvalidRefresh`].
    ///
    /// An entry's age is read from its deadline: one written with the
    /// cache's time to live is due `after` after the write; one with its own
    /// TTL is due when it has `time_to_live - after` left; one with no
    /// deadline is never refreshed.
    ///
    /// ```
    /// use shardcache::{Cache, MockClock};
    /// use std::time::Duration;
    ///
    /// let clock = MockClock::new();
    /// let cache: Cache<u32, String> = Cache::builder()
    ///     .max_capacity(1_000)
    ///     .clock(clock.clone())
    ///     .time_to_live(Duration::from_secs(300))
    ///     .refresh_after(Duration::from_secs(240))
    ///     .refresh_loader(|k: &u32| Ok::<_, std::io::Error>(format!("fresh {k}")))
    ///     .build()?;
    /// cache.insert(1, "old".to_string());
    /// clock.advance(Duration::from_secs(250));
    /// // Returns at once with the current value; a reload starts behind it.
    /// assert_eq!(cache.get(&1).as_deref(), Some("old"));
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh.after = Some(after);
        self
    }

    /// Past its time to live but within `window`, a read still returns an
    /// entry's value (stale: see [`Cache::get_with_freshness`](crate::Cache::get_with_freshness)) and starts
    /// one reload. Off by default; needs a refresh loader. Every other view
    /// of the cache (`contains_key`, `ttl`, iteration, the adapters' checks
    /// through them) treats the entry as expired at its time to live.
    pub fn serve_stale_for(mut self, window: Duration) -> Self {
        self.refresh.stale_for = Some(window);
        self
    }

    /// Within `window` past an entry's time to live, a read-through load
    /// ([`Cache::try_get_or_insert_with`](crate::Cache::try_get_or_insert_with),
    /// [`Cache::try_get_or_insert_with_async`](crate::Cache::try_get_or_insert_with_async))
    /// whose loader fails returns the expired value instead of the error.
    /// Off by default; needs `refresh_after` and a refresh loader. Unsafe for
    /// values whose source can revoke them (see
    /// [`PermissionCache`](crate::adapters::PermissionCache)): a revoked value is
    /// served for up to `window` while the source is down.
    pub fn stale_if_error_for(mut self, window: Duration) -> Self {
        self.refresh.stale_if_error = Some(window);
        self
    }

    /// The loader background reloads call, on a small pool of threads the
    /// cache owns (see [`refresh_threads`](Self::refresh_threads)); the
    /// threads end once the last handle to the cache is dropped and their
    /// current reload is done.
    pub fn refresh_loader<E>(
        mut self,
        load: impl Fn(&K) -> Result<V, E> + Send + Sync + 'static,
    ) -> Self
    where
        K: Clone,
        E: Into<BoxError>,
    {
        self.refresh.loader = Some(RefreshLoader::Sync(Arc::new(move |k: &K| {
            load(k).map_err(Into::into)
        })));
        self.refresh.clone_key = Some(K::clone);
        self
    }

    /// An async loader for background reloads, run by `spawn` (for example
    /// `|f| { tokio::spawn(f); }`): the cache imposes no runtime and starts
    /// no thread.
    ///
    /// ```
    /// use shardcache::Cache;
    /// use std::time::Duration;
    /// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// # let handle = rt.handle().clone();
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .time_to_live(Duration::from_secs(60))
    ///     .refresh_after(Duration::from_secs(50))
    ///     .refresh_loader_async(
    ///         |k: u32| async move { Ok::<_, std::io::Error>(k * 2) },
    ///         move |f| { handle.spawn(f); },
    ///     )
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh_loader_async<E, F>(
        mut self,
        load: impl Fn(K) -> F + Send + Sync + 'static,
        spawn: impl Fn(BoxFuture) + Send + Sync + 'static,
    ) -> Self
    where
        K: Clone,
        E: Into<BoxError>,
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        let load: AsyncLoad<K, V> = Arc::new(move |k: K| {
            let f = load(k);
            Box::pin(async move { f.await.map_err(Into::into) })
        });
        self.refresh.loader = Some(RefreshLoader::Async(load, Arc::new(spawn)));
        self.refresh.clone_key = Some(K::clone);
        self
    }

    /// Threads for a sync [`refresh_loader`](Self::refresh_loader): 1 to 64,
    /// default 2. Reloads beyond what they keep up with wait in a bounded
    /// queue; past it, a reload is skipped and the next read asks again.
    pub fn refresh_threads(mut self, threads: usize) -> Self {
        self.refresh.threads = threads;
        self
    }

    /// Called with the key and error of each failed reload (the value stays).
    pub fn refresh_error_listener(
        mut self,
        listener: impl Fn(&K, &BoxError) + Send + Sync + 'static,
    ) -> Self {
        self.refresh.on_error = Some(Arc::new(listener));
        self
    }
}
