//! The builder's refresh-ahead and stale-window settings; the refresher
//! they configure is in `refresh/`.

use super::CacheBuilder;
use crate::refresh::{BoxError, BoxFuture};
use std::future::Future;
use std::time::Duration;

/// Refresh-ahead settings on the builder.
impl<K, V, S> CacheBuilder<K, V, S> {
    /// Reloads an entry in the background once it is this old, while reads
    /// keep returning the current value. Needs a
    /// [`time_to_live`](Self::time_to_live) longer than `after` by at least a
    /// millisecond (deadlines are whole milliseconds) and a loader
    /// ([`refresh_loader`](Self::refresh_loader) or
    /// [`refresh_loader_async`](Self::refresh_loader_async)); otherwise
    /// `build` fails with [`BuildError::InvalidRefresh`](super::BuildError::InvalidRefresh).
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
    /// one reload. Off by default; needs a refresh loader. Every other call
    /// treats the entry as expired at its time to live: `contains_key`,
    /// `ttl`, iteration and the adapters' checks through them do not see it,
    /// [`compute`](crate::Cache::compute) sees no entry, `set_ttl` cannot
    /// revive it, `remove` returns nothing, and a write over it or a removal
    /// of it reports it [`Expired`](crate::RemovalCause::Expired) to the
    /// eviction listener (after which it is no longer served stale);
    /// [`retain`](crate::Cache::retain) asks about it, and one it refuses
    /// leaves as expired.
    pub fn serve_stale_for(mut self, window: Duration) -> Self {
        self.refresh.stale_for = Some(window);
        self
    }

    /// Within `window` past an entry's time to live, a read-through load
    /// ([`Cache::try_get_or_insert_with`](crate::Cache::try_get_or_insert_with),
    /// [`Cache::try_get_or_insert_with_async`](crate::Cache::try_get_or_insert_with_async))
    /// whose loader fails returns the expired value instead of the error.
    /// To every other call the entry is expired, as under
    /// [`serve_stale_for`](Self::serve_stale_for), and a plain read misses.
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
    /// current reload is done. Callers that miss the key while its reload
    /// runs wait for it, as for a load: a wait that would close a cycle of
    /// loads through it is refused as
    /// [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with)
    /// describes (a reload given up that way fails, like a panicking one).
    pub fn refresh_loader<E>(
        mut self,
        load: impl Fn(&K) -> Result<V, E> + Send + Sync + 'static,
    ) -> Self
    where
        K: Clone,
        E: Into<BoxError>,
    {
        self.refresh.set_sync_loader(load);
        self
    }

    /// An async loader for background reloads, run by `spawn` (for example
    /// `|f| { tokio::spawn(f); }`): the cache imposes no runtime and starts
    /// no thread. A loader that panics, when called or while its future is
    /// polled, fails that reload like an error: the reader and the spawner's
    /// runtime never see the panic.
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
        self.refresh.set_async_loader(load, spawn);
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
        self.refresh.set_error_listener(listener);
        self
    }
}
