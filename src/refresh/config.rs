//! The builder's refresh settings, and the checks that turn them into a
//! [`Refresher`]. The builder's methods that set them are the builder's.

use super::pool::Pool;
use super::stats::Counters;
use super::{
    AsyncLoad, BoxError, BoxFuture, ErrorListener, RefreshLoader, Refresher, DEFAULT_THREADS,
};
use crate::sync::{Arc, Mutex};
use std::future::Future;
use std::time::Duration;

/// The builder's refresh settings.
pub(crate) struct RefreshConfig<K, V> {
    pub(crate) after: Option<Duration>,
    pub(crate) stale_for: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    loader: Option<RefreshLoader<K, V>>,
    clone_key: Option<fn(&K) -> K>,
    pub(crate) threads: usize,
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
    /// Sets a sync loader, run on the refresher's own threads.
    pub(crate) fn set_sync_loader<E>(
        &mut self,
        load: impl Fn(&K) -> Result<V, E> + Send + Sync + 'static,
    ) where
        K: Clone,
        E: Into<BoxError>,
    {
        self.loader = Some(RefreshLoader::Sync(Arc::new(move |k: &K| {
            load(k).map_err(Into::into)
        })));
        self.clone_key = Some(K::clone);
    }

    /// Sets an async loader, run by `spawn`.
    pub(crate) fn set_async_loader<E, F>(
        &mut self,
        load: impl Fn(K) -> F + Send + Sync + 'static,
        spawn: impl Fn(BoxFuture) + Send + Sync + 'static,
    ) where
        K: Clone,
        E: Into<BoxError>,
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        let load: AsyncLoad<K, V> = Arc::new(move |k: K| {
            let f = load(k);
            Box::pin(async move { f.await.map_err(Into::into) })
        });
        self.loader = Some(RefreshLoader::Async(load, Arc::new(spawn)));
        self.clone_key = Some(K::clone);
    }

    /// Sets the listener told of each failed reload.
    pub(crate) fn set_error_listener(
        &mut self,
        listener: impl Fn(&K, &BoxError) + Send + Sync + 'static,
    ) {
        self.on_error = Some(Arc::new(listener));
    }

    /// Checks the settings against the cache's time to live and builds the
    /// refresher, or `None` when refresh is not configured.
    ///
    /// # Errors
    ///
    /// The message of the first setting that cannot work, for
    /// `BuildError::InvalidRefresh`.
    pub(crate) fn build(
        self,
        ttl: Option<Duration>,
    ) -> Result<Option<Refresher<K, V>>, &'static str> {
        let (Some(after), Some(loader), Some(clone_key)) =
            (self.after, self.loader, self.clone_key)
        else {
            if self.after.is_some() || self.stale_for.is_some() || self.stale_if_error.is_some() {
                return Err(
                    "refresh_after, serve_stale_for and stale_if_error_for need \
                     refresh_after with a refresh loader",
                );
            }
            return Ok(None);
        };
        let ttl = ttl.ok_or(
            "refresh_after needs a time_to_live (an entry's age is read from its deadline)",
        )?;
        // Deadlines are whole milliseconds: a refresh_after that rounds up
        // to the time to live would leave no time in which an entry is due.
        let ms = crate::shard::expiry::ttl_ms;
        if after.is_zero() || ms(after) >= ms(ttl) {
            return Err(
                "refresh_after must be greater than zero and shorter than time_to_live \
                 by at least a millisecond",
            );
        }
        if self.threads == 0 || self.threads > 64 {
            return Err("refresh_threads must be between 1 and 64");
        }
        if self.stale_for.is_some_and(|d| d.is_zero() || d > ttl) {
            return Err("serve_stale_for must be greater than zero and at most time_to_live");
        }
        if self.stale_if_error.is_some_and(|d| d.is_zero() || d > ttl) {
            return Err("stale_if_error_for must be greater than zero and at most time_to_live");
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
