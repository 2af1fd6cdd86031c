//! The entry API: [`Cache::entry`] selects one key, then `or_insert_with`,
//! `or_try_insert_with` or `and_compute_with` act on it, with the names moka
//! users know.
//!
//! Everything here is built on [`Cache::get_or_insert_with`] (one loader per
//! key at a time) and [`Cache::compute`] (read-decide-write under the shard's
//! write lock); the entry API adds no state of its own.

use crate::cache::{Cache, Iter};
use crate::compute::{Decision, Ttl};
use crate::error::CapacityError;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// One key of a cache, selected by [`Cache::entry`].
///
/// ```
/// use shardcache::Cache;
/// let cache: Cache<String, u32> = Cache::new(100);
/// let e = cache.entry("a".to_string()).or_insert_with(|| 1);
/// assert!(e.is_fresh());
/// let e = cache.entry("a".to_string()).or_insert_with(|| 2);
/// assert!(!e.is_fresh());
/// assert_eq!(e.into_value(), 1);
/// ```
#[must_use = "an entry selector does nothing until one of its methods is called"]
pub struct EntrySelector<'c, K, V, S> {
    cache: &'c Cache<K, V, S>,
    key: K,
}

/// A key and the value it had or was given, as returned by the entry API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<K, V> {
    key: K,
    value: V,
    fresh: bool,
}

impl<K, V> Entry<K, V> {
    fn new(key: K, value: V, fresh: bool) -> Self {
        Self { key, value, fresh }
    }

    /// The entry's key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The entry's value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, consuming the entry.
    pub fn into_value(self) -> V {
        self.value
    }

    /// Whether this call produced the value (its `init` ran), as moka's
    /// `Entry::is_fresh`; `false`: the value was already there, or another
    /// caller's load of the key produced it.
    ///
    /// A value produced here is returned even when the cache does not keep
    /// it: too heavy for the cache (counted in `rejections`), written over
    /// or removed while it loaded, or evicted or expired at once.
    ///
    /// ```
    /// use shardcache::Cache;
    /// let cache: Cache<u32, u64> = Cache::builder()
    ///     .max_capacity(10)
    ///     .weigher(|_, v: &u64| *v as u32)
    ///     .build()?;
    /// let e = cache.entry(1).or_insert_with(|| 50); // heavier than the cache
    /// assert!(e.is_fresh());
    /// assert!(!cache.contains_key(&1));
    /// # Ok::<(), shardcache::BuildError>(())
    /// ```
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }
}

/// What [`EntrySelector::and_compute_with`]'s closure decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<V> {
    /// Leave the entry as it is.
    Nop,
    /// Store this value (a new entry gets the cache's time to live; a
    /// replaced one keeps its deadline).
    Put(V),
    /// Remove the entry.
    Remove,
}

/// What [`EntrySelector::and_compute_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompResult<K, V> {
    /// There was no entry; one was stored.
    Inserted(Entry<K, V>),
    /// The entry's value was replaced.
    Updated(Entry<K, V>),
    /// The entry was removed; this is the value it had.
    Removed(Entry<K, V>),
    /// The entry was left as it was.
    Unchanged(Entry<K, V>),
    /// There was no entry, and none was stored.
    StillNone(K),
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Selects `key` for the entry API.
    ///
    /// ```
    /// use shardcache::Cache;
    /// use shardcache::entry::Op;
    /// let cache: Cache<String, u64> = Cache::new(100);
    /// for _ in 0..2 {
    ///     cache.entry("hits".to_string()).and_compute_with(|n| Op::Put(n.map_or(1, |n| n + 1)))?;
    /// }
    /// assert_eq!(cache.get("hits"), Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entry(&self, key: K) -> EntrySelector<'_, K, V, S> {
        EntrySelector { cache: self, key }
    }

    /// Removes every entry; the same as [`clear`](Self::clear).
    pub fn invalidate_all(&self) {
        self.clear();
    }

    /// Removes every entry for which `predicate` returns true, now, one
    /// shard at a time; the same as [`invalidate_if`](Self::invalidate_if).
    pub fn invalidate_entries_if(&self, predicate: impl FnMut(&K, &V) -> bool) {
        self.invalidate_if(predicate);
    }
}

impl<K, V, S> EntrySelector<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// The live value, or `init()`'s, stored. Of concurrent callers that
    /// miss the same key, one runs its `init`, and the others wait for it
    /// (see [`Cache::get_or_insert_with`]). With
    /// [`serve_stale_for`](crate::CacheBuilder::serve_stale_for), a value
    /// inside that window is returned as `get` returns it (stale, a reload
    /// started), without running `init`.
    pub fn or_insert_with(self, init: impl FnOnce() -> V) -> Entry<K, V> {
        let mut fresh = false;
        let value = self.cache.get_or_insert_with(self.key.clone(), || {
            fresh = true;
            init()
        });
        Entry {
            key: self.key,
            value,
            fresh,
        }
    }

    /// The live value, or `value`, stored (a value inside a
    /// [`serve_stale_for`](crate::CacheBuilder::serve_stale_for) window is
    /// returned as `get` returns it).
    pub fn or_insert(self, value: V) -> Entry<K, V> {
        self.or_insert_with(|| value)
    }

    /// The live value, or `V::default()`, stored.
    pub fn or_default(self) -> Entry<K, V>
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// The live value, or `init()`'s when it succeeds. An error is handed to
    /// every caller waiting on the same load and nothing is stored (see
    /// [`Cache::try_get_or_insert_with`]).
    ///
    /// # Errors
    ///
    /// The error `init` returned (shared by the callers that waited for it).
    pub fn or_try_insert_with<E>(
        self,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<Entry<K, V>, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let mut fresh = false;
        let value = self.cache.try_get_or_insert_with(self.key.clone(), || {
            fresh = true;
            init()
        })?;
        Ok(Entry {
            key: self.key,
            value,
            fresh,
        })
    }

    /// Reads the live value (if any), decides with `f`, and applies the
    /// decision atomically with respect to other writes to the key (it runs
    /// under the shard's write lock, like [`Cache::compute`]: keep it short).
    ///
    /// # Errors
    ///
    /// [`CapacityError`] when `f` chose [`Op::Put`] and the value does not fit
    /// (the policy never evicts and the cache is full); nothing changed.
    pub fn and_compute_with(
        self,
        f: impl FnOnce(Option<&V>) -> Op<V>,
    ) -> Result<CompResult<K, V>, CapacityError<K, V>> {
        let key = self.key;
        let cache = self.cache;
        let outcome = cache.compute(key.clone(), |current| {
            let old = current.map(|c| c.value.clone());
            match f(old.as_ref()) {
                Op::Nop => (Decision::Nothing, Outcome::Unchanged(old)),
                Op::Put(v) => {
                    let ttl = match old {
                        Some(_) => Ttl::Keep,
                        None => cache.write_ttl(&key, &v).map_or(Ttl::Never, Ttl::After),
                    };
                    let outcome = match old {
                        Some(_) => Outcome::Updated(v.clone()),
                        None => Outcome::Inserted(v.clone()),
                    };
                    (Decision::Put(v, ttl), outcome)
                }
                Op::Remove => match old {
                    Some(old) => (Decision::Remove, Outcome::Removed(old)),
                    None => (Decision::Nothing, Outcome::Unchanged(None)),
                },
            }
        })?;
        Ok(match outcome {
            Outcome::Inserted(value) => CompResult::Inserted(Entry::new(key, value, true)),
            Outcome::Updated(value) => CompResult::Updated(Entry::new(key, value, true)),
            Outcome::Removed(value) => CompResult::Removed(Entry::new(key, value, false)),
            Outcome::Unchanged(Some(value)) => CompResult::Unchanged(Entry::new(key, value, false)),
            Outcome::Unchanged(None) => CompResult::StillNone(key),
        })
    }
}

/// What the compute closure saw and did, before the key is put back.
enum Outcome<V> {
    Inserted(V),
    Updated(V),
    Removed(V),
    Unchanged(Option<V>),
}

impl<K, V, S> fmt::Debug for EntrySelector<'_, K, V, S>
where
    K: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntrySelector")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<K, V, S> IntoIterator for &Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    type Item = (K, V);
    type IntoIter = Iter<K, V>;

    /// The live entries, cloned, as [`Cache::iter`] gives them.
    fn into_iter(self) -> Iter<K, V> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockClock;
    use std::time::Duration;

    #[test]
    fn or_insert_with_is_fresh_once() {
        let cache: Cache<u32, u32> = Cache::new(10);
        assert!(cache.entry(1).or_insert_with(|| 10).is_fresh());
        let again = cache.entry(1).or_insert_with(|| 20);
        assert!(!again.is_fresh());
        assert_eq!((*again.key(), *again.value()), (1, 10));
        assert_eq!(cache.entry(2).or_default().into_value(), 0);
        assert_eq!(cache.entry(2).or_insert(5).into_value(), 0);
    }

    #[test]
    fn or_try_insert_with_stores_nothing_on_error() {
        let cache: Cache<u32, u32> = Cache::new(10);
        let err = cache
            .entry(1)
            .or_try_insert_with(|| Err::<u32, _>("db down"));
        assert_eq!(err.err().as_deref(), Some(&"db down"));
        assert!(!cache.contains_key(&1));
        let ok = cache.entry(1).or_try_insert_with(|| Ok::<_, ()>(7));
        assert_eq!(ok.ok().map(Entry::into_value), Some(7));
    }

    #[test]
    fn and_compute_with_reports_each_outcome() -> Result<(), CapacityError<u32, u32>> {
        let cache: Cache<u32, u32> = Cache::new(10);
        let put = |n| move |_: Option<&u32>| Op::Put(n);
        assert!(matches!(
            cache.entry(1).and_compute_with(|_| Op::Nop)?,
            CompResult::StillNone(1)
        ));
        assert!(matches!(
            cache.entry(1).and_compute_with(|_| Op::Remove)?,
            CompResult::StillNone(1)
        ));
        let inserted = cache.entry(1).and_compute_with(put(5))?;
        assert_eq!(
            inserted,
            CompResult::Inserted(Entry {
                key: 1,
                value: 5,
                fresh: true
            })
        );
        let updated = cache
            .entry(1)
            .and_compute_with(|v| Op::Put(v.map_or(0, |v| v + 1)))?;
        assert_eq!(
            updated,
            CompResult::Updated(Entry {
                key: 1,
                value: 6,
                fresh: true
            })
        );
        let same = cache.entry(1).and_compute_with(|_| Op::Nop)?;
        assert_eq!(
            same,
            CompResult::Unchanged(Entry {
                key: 1,
                value: 6,
                fresh: false
            })
        );
        let removed = cache.entry(1).and_compute_with(|_| Op::Remove)?;
        assert_eq!(
            removed,
            CompResult::Removed(Entry {
                key: 1,
                value: 6,
                fresh: false
            })
        );
        assert!(!cache.contains_key(&1));
        Ok(())
    }

    #[test]
    fn a_computed_entry_gets_the_default_ttl_and_an_update_keeps_its_deadline(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let clock = MockClock::new();
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(10)
            .time_to_live(Duration::from_secs(60))
            .clock(clock.clone())
            .build()?;
        cache.entry(1).and_compute_with(|_| Op::Put(1))?;
        assert_eq!(cache.ttl(&1), Some(Some(Duration::from_secs(60))));
        clock.advance(Duration::from_secs(30));
        cache.entry(1).and_compute_with(|_| Op::Put(2))?;
        assert_eq!(cache.ttl(&1), Some(Some(Duration::from_secs(30))));
        Ok(())
    }

    #[test]
    fn a_per_entry_ttl_applies_to_inserts_loads_and_new_computed_entries(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let clock = MockClock::new();
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(10)
            .time_to_live(Duration::from_secs(60))
            .expire_after(|k, _| (k % 2 == 0).then_some(Duration::from_secs(5)))
            .clock(clock.clone())
            .build()?;
        cache.insert(2, 0);
        cache.insert(3, 0);
        cache.get_or_insert_with(4, || 0);
        cache.entry(6).and_compute_with(|_| Op::Put(0))?;
        cache.insert_with_ttl(8, 0, Duration::from_secs(100));
        let ttl = |k| cache.ttl(&k).flatten().map(|d| d.as_secs());
        assert_eq!(
            [ttl(2), ttl(3), ttl(4), ttl(6), ttl(8)],
            [5, 60, 5, 5, 100].map(Some)
        );
        clock.advance(Duration::from_secs(5));
        assert_eq!((cache.get(&2), cache.get(&3)), (None, Some(0)));
        Ok(())
    }

    #[test]
    fn moka_names_and_iteration() {
        let cache: Cache<u32, u32> = Cache::new(100);
        for i in 0..10 {
            cache.insert(i, i);
        }
        cache.invalidate_entries_if(|k, _| k % 2 == 0);
        let mut left: Vec<u32> = (&cache).into_iter().map(|(k, _)| k).collect();
        left.sort_unstable();
        assert_eq!(left, vec![1, 3, 5, 7, 9]);
        let mut n = 0;
        for (k, v) in &cache {
            assert_eq!(k, v);
            n += 1;
        }
        assert_eq!(n, 5);
        cache.invalidate_all();
        assert!(cache.is_empty());
    }
}
