//! [`PersistentCache`]: a handle on a persistent cache whose every write
//! returns whether the log kept it.

use crate::builder::CacheBuilder;
use crate::cache::{Cache, Iter};
use crate::compute::{Current, Decision};
use crate::error::{CapacityError, WriteError};
use crate::hash::DefaultHashBuilder;
use crate::persist::{PersistError, RecoveryReport, WriteAheadLog};
use crate::stats::CacheStats;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

/// A cache on a write-ahead log whose write methods return the log's
/// failure: a write that returned `Ok` is as durable as the log's mode
/// promises (on disk, under `Fsync::Always`), and one that returned `Err`
/// changed nothing. Reads never fail; while the log is failed they go on and
/// writes are refused ([`PersistError::Refused`]) until it is repaired (see
/// [`sync`](Self::sync)).
///
/// Build one with [`CacheBuilder::open_persistent`]. Cheap to clone.
///
/// ```
/// use shardcache::persist::{FaultOn, FileLog, Fsync, MemStorage};
/// use shardcache::{Cache, WriteError};
/// let storage = MemStorage::new();
/// let log = FileLog::with_storage(storage.clone(), Fsync::Always);
/// let (cache, _report) = Cache::<String, u32>::builder().max_capacity(100).open_persistent(log)?;
/// cache.insert("a".into(), 1)?;
///
/// // The disk fills up: the write is refused and not applied.
/// storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::StorageFull, true);
/// assert!(matches!(cache.insert("b".into(), 2), Err(WriteError::Log(_))));
/// assert_eq!(cache.get("b"), None);
/// assert!(cache.remove("a").is_err());
/// assert_eq!(cache.get("a"), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PersistentCache<K, V, S = DefaultHashBuilder> {
    cache: Cache<K, V, S>,
}

impl<K, V, S> Clone for PersistentCache<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl<K, V, S> fmt::Debug for PersistentCache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PersistentCache").field(&self.cache).finish()
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// Builds the cache, replays `log` into it, and returns a
    /// [`PersistentCache`], whose writes report the log's failures. As
    /// [`build_persistent`](Self::build_persistent) otherwise.
    ///
    /// # Errors
    ///
    /// As [`build_persistent`](Self::build_persistent).
    pub fn open_persistent<L: WriteAheadLog>(
        self,
        log: L,
    ) -> Result<(PersistentCache<K, V, S>, RecoveryReport), PersistError>
    where
        K: Serialize + DeserializeOwned + Hash + Eq + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        S: BuildHasher + Clone + Send + Sync + 'static,
    {
        let (cache, report) = self.build_persistent(log)?;
        Ok((PersistentCache { cache }, report))
    }
}

impl<K, V, S> PersistentCache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// The value for `key`, if present and live; see [`Cache::get`].
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.get(key)
    }

    /// The value and its remaining time to live; see [`Cache::get_with_ttl`].
    pub fn get_with_ttl<Q>(&self, key: &Q) -> Option<(V, Option<Duration>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.get_with_ttl(key)
    }

    /// Whether a live entry for `key` exists; see [`Cache::contains_key`].
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.contains_key(key)
    }

    /// The number of entries; see [`Cache::len`].
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The counters; see [`Cache::stats`].
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The live entries, cloned; see [`Cache::iter`].
    pub fn iter(&self) -> Iter<K, V>
    where
        K: Clone,
    {
        self.cache.iter()
    }

    /// Inserts or replaces `key` with the cache's default time to live.
    ///
    /// # Errors
    ///
    /// [`WriteError::Log`] if the log could not keep it (nothing changed);
    /// [`WriteError::Full`] (with the key and value) if it does not fit.
    #[must_use = "an Err means the write was not kept"]
    pub fn insert(&self, key: K, value: V) -> Result<(), WriteError<K, V>> {
        self.write(|c| c.try_insert(key, value))
    }

    /// Inserts or replaces `key` expiring after `ttl` (`None`: never).
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    #[must_use = "an Err means the write was not kept"]
    pub fn insert_with_expiry(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> Result<(), WriteError<K, V>> {
        self.write(|c| c.try_insert_with_expiry(key, value, ttl))
    }

    /// Removes `key`, returning its value if it was live.
    ///
    /// # Errors
    ///
    /// The log could not keep the removal: the entry is still there.
    #[must_use = "an Err means the entry was not removed"]
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>, PersistError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.durably(|| self.cache.remove(key))
    }

    /// Sets or clears the time to live of a live `key`; whether it was live.
    ///
    /// # Errors
    ///
    /// The log could not keep the change: the old deadline stands.
    #[must_use = "an Err means the change was not kept"]
    pub fn set_ttl<Q>(&self, key: &Q, ttl: Option<Duration>) -> Result<bool, PersistError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.durably(|| self.cache.set_ttl(key, ttl))
    }

    /// Reads, decides and applies atomically; see [`Cache::compute`]. The
    /// closure's answer is returned only if the decision was kept.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert) (nothing changed).
    #[must_use = "an Err means the decision was not kept"]
    pub fn compute<R>(
        &self,
        key: K,
        f: impl FnOnce(Option<Current<'_, V>>) -> (Decision<V>, R),
    ) -> Result<R, WriteError<K, V>> {
        self.write(|c| c.compute(key, f))
    }

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// The log could not keep the clear: nothing was removed.
    #[must_use = "an Err means nothing was removed"]
    pub fn clear(&self) -> Result<(), PersistError> {
        self.cache.durably(|| self.cache.clear())
    }

    /// Makes every write durable and repairs a failed log; see
    /// [`Cache::sync`].
    ///
    /// # Errors
    ///
    /// As [`Cache::sync`].
    pub fn sync(&self) -> Result<(), PersistError> {
        self.cache.sync()
    }

    /// Compacts the log now; see [`Cache::rewrite_log`].
    ///
    /// # Errors
    ///
    /// As [`Cache::rewrite_log`].
    pub fn rewrite_log(&self) -> Result<(), PersistError> {
        self.cache.rewrite_log()
    }

    /// The cache underneath, for the rest of its API. Its writes report log
    /// failures only through [`Cache::durably`] and [`Cache::sync`].
    pub fn cache(&self) -> &Cache<K, V, S> {
        &self.cache
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&Cache<K, V, S>) -> Result<R, CapacityError<K, V>>,
    ) -> Result<R, WriteError<K, V>> {
        match self.cache.durably(|| f(&self.cache)) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(full)) => Err(WriteError::Full(full)),
            Err(e) => Err(WriteError::Log(e)),
        }
    }
}
