//! Keyspace commands: `DEL` (and `UNLINK`), `EXISTS`, `TOUCH`, `KEYS`,
//! `SCAN`, `DBSIZE`, `FLUSHDB`, `RANDOMKEY`, `TYPE`. In a namespace they see only the namespace's keys,
//! named without the prefix.

use super::glob::glob_match;
use super::KvStore;
use crate::cache::{BatchWrite, ReadAs};
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::HashSet;

/// The options of `SCAN`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanOptions {
    /// `MATCH pattern`: a Redis glob (see [`glob_match`]).
    pub pattern: Option<String>,
    /// `COUNT n`: about how many keys to visit per call (default 10).
    pub count: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            pattern: None,
            count: 10,
        }
    }
}

impl ScanOptions {
    /// `COUNT 10`, no pattern.
    pub fn new() -> Self {
        Self::default()
    }
    /// `MATCH pattern`.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }
    /// `COUNT n` (0 is treated as 1).
    pub fn count(mut self, count: usize) -> Self {
        self.count = count.max(1);
        self
    }
}

impl KvStore {
    /// Calls `f` on each live key of this view (prefix stripped) and
    /// whether it has an expiry, copying no key.
    pub(super) fn for_each_key(&self, mut f: impl FnMut(&str, bool)) {
        self.cache.for_each_entry(|k, _, expires| {
            if let Some(k) = k.strip_prefix(&*self.prefix) {
                f(k, expires);
            }
        });
    }

    /// The stored keys for `keys`, in order: borrowed in the root store,
    /// prefixed in a namespace.
    fn stored_keys<'k, K: AsRef<str>>(&self, keys: &'k [K]) -> Vec<Cow<'k, str>> {
        keys.iter()
            .map(|k| match self.prefix.is_empty() {
                true => Cow::Borrowed(k.as_ref()),
                false => Cow::Owned(self.full_key(k.as_ref())),
            })
            .collect()
    }

    /// `DEL key...` (and `UNLINK key...`, the same here: a removed value is
    /// freed when its last reader drops it): how many of the keys existed
    /// and were removed; a key given twice is removed once, as in Redis.
    ///
    /// Several keys are removed as one step, as Redis runs the command:
    /// every shard they live in is locked at once, and the removals are
    /// logged as one record. No reader (`GET`, `MGET`, `EXISTS`) sees some
    /// of them removed and others not, and after a crash the log holds the
    /// whole command or none of it. A removal the log refuses, or fails to
    /// keep under `Fsync::Always`, removes nothing and counts 0. Under a
    /// buffering log, the one the failure meets as it is appended stays
    /// removed and counts (as in Redis, whose command has run when its
    /// append fails); the repair writes it. Either way the failure goes to
    /// [`durably`](Self::durably) or the next [`sync`](Self::sync).
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.mset(&[("a", "1"), ("b", "2")])?;
    /// assert_eq!(store.del(&["a", "b", "c", "a"]), 2);
    /// assert_eq!(store.exists(&["a", "b"]), 0);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn del<K: AsRef<str>>(&self, keys: &[K]) -> usize {
        if let [key] = keys {
            return usize::from(self.cache.remove(&self.full_key(key.as_ref())).is_some());
        }
        let mut seen = HashSet::with_capacity(keys.len());
        let distinct: Vec<String> = keys
            .iter()
            .map(AsRef::as_ref)
            .filter(|k| seen.insert(*k))
            .map(|k| self.full_key(k))
            .collect();
        if let [key] = distinct.as_slice() {
            return usize::from(self.cache.remove(key).is_some());
        }
        if distinct.is_empty() {
            return 0;
        }
        let now = self.now();
        let removed = self
            .cache
            .write_batch_kept(&distinct, Some(now.tick), |current| {
                let found = current.iter().filter(|c| c.is_some()).count();
                let writes = current.iter().map(|_| BatchWrite::Remove).collect();
                (writes, found)
            });
        match removed {
            Ok((found, true)) => found,
            // Nothing removed: no key was there, or the log refused them.
            Ok((_, false)) | Err(_) => 0,
        }
    }

    /// `EXISTS key...`: how many of the keys exist, counting repeats.
    ///
    /// Several keys are read as one step, as Redis runs the command: every
    /// shard they live in is read-locked at once, so a multi-key write
    /// (`MSET`, `RENAME`, `DEL`...) is counted whole or not at all; during a
    /// `RENAME a b`, `EXISTS a b` is 1.
    pub fn exists<K: AsRef<str>>(&self, keys: &[K]) -> usize {
        if let [key] = keys {
            let hit = self.cache.contains_key(&self.full_key(key.as_ref()));
            self.count_lookup(hit);
            return usize::from(hit);
        }
        self.count_found(keys, ReadAs::Peek)
    }

    /// `TOUCH key...`: how many of the keys exist, counting repeats; each
    /// one found counts as an access for the eviction policy (and in
    /// `keyspace_hits`), as a `GET` would. Several keys are read as one
    /// step, as [`exists`](Self::exists) reads them.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.set("a", "1", Default::default())?;
    /// assert_eq!(store.touch(&["a", "b", "a"]), 2);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn touch<K: AsRef<str>>(&self, keys: &[K]) -> usize {
        if let [key] = keys {
            let hit = self.with_full_key(key.as_ref(), |k| self.cache.get(k).is_some());
            self.count_lookup(hit);
            return usize::from(hit);
        }
        self.count_found(keys, ReadAs::Access)
    }

    /// How many of `keys` are live, read as one step (see
    /// [`read_keys`](Self::read_keys)).
    fn count_found<K: AsRef<str>>(&self, keys: &[K], as_: ReadAs) -> usize {
        self.read_keys(keys, as_, |_| ())
            .iter()
            .filter(|found| found.is_some())
            .count()
    }

    /// `read` on the live value of each of `keys`, all read as one step
    /// (`Cache::read_batch`), counted as `as_` says in the cache's
    /// statistics and as lookups in the store's.
    pub(super) fn read_keys<K: AsRef<str>, R>(
        &self,
        keys: &[K],
        as_: ReadAs,
        read: impl FnMut(&Bytes) -> R,
    ) -> Vec<Option<R>> {
        let stored = self.stored_keys(keys);
        let refs: Vec<&str> = stored.iter().map(|k| &**k).collect();
        let found = self.cache.read_batch(&refs, as_, read);
        for f in &found {
            self.count_lookup(f.is_some());
        }
        found
    }

    /// `KEYS pattern`: every live key matching the Redis glob, unordered.
    /// Visits the whole keyspace; prefer [`scan`](Self::scan) on big stores.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.mset(&[("perm:a:1", "1"), ("perm:b:1", "1"), ("sess:x", "1")])?;
    /// let mut keys = store.keys("perm:*:1");
    /// keys.sort();
    /// assert_eq!(keys, vec!["perm:a:1", "perm:b:1"]);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.keys_glob(pattern.as_bytes())
    }

    /// [`keys`](Self::keys) with a pattern of any bytes, matched against
    /// the keys' UTF-8 bytes, as Redis matches (`KEYS "\xC3?"` finds `é`).
    pub(crate) fn keys_glob(&self, pattern: &[u8]) -> Vec<String> {
        let mut keys = Vec::new();
        self.for_each_key(|k, _| {
            if glob_match(pattern, k.as_bytes()) {
                keys.push(k.to_owned());
            }
        });
        keys
    }

    /// `SCAN cursor [MATCH pattern] [COUNT n]`: the next cursor (0 when the
    /// iteration is complete) and a batch of keys.
    ///
    /// As in Redis, a full iteration returns every key that exists from its
    /// start to its end at least once, even while the store grows or shrinks;
    /// keys added or removed meanwhile may or may not appear, and a key may
    /// appear more than once. The cursor walks the shards' hash tables in
    /// Redis's reverse-binary order; a call visits about `count` keys (at
    /// most `10 × count` table slots) whatever the store's size, and holds
    /// one shard's read lock at a time. `MATCH` filters the visited keys, so
    /// a call may return fewer than `count` of them, or none, before the end.
    ///
    /// ```
    /// use shardcache::kv::{KvStore, ScanOptions};
    /// let store = KvStore::new();
    /// for i in 0..25 { store.set(&format!("k{i}"), "v", Default::default())?; }
    /// let (mut cursor, mut seen) = (0, std::collections::HashSet::new());
    /// loop {
    ///     let (next, batch) = store.scan(cursor, &ScanOptions::new().count(10));
    ///     seen.extend(batch);
    ///     if next == 0 { break; }
    ///     cursor = next;
    /// }
    /// assert_eq!(seen.len(), 25);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn scan(&self, cursor: u64, opts: &ScanOptions) -> (u64, Vec<String>) {
        let pattern = opts.pattern.as_deref().map(str::as_bytes);
        self.scan_glob(cursor, opts.count, pattern)
    }

    /// [`scan`](Self::scan) with a `MATCH` pattern of any bytes (see
    /// [`keys_glob`](Self::keys_glob)).
    pub(crate) fn scan_glob(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<&[u8]>,
    ) -> (u64, Vec<String>) {
        let mut batch = Vec::new();
        let next = self.cache.scan_step(cursor, count.max(1), |k, _, _| {
            let Some(k) = k.strip_prefix(&*self.prefix) else {
                return;
            };
            if pattern.is_none_or(|p| glob_match(p, k.as_bytes())) {
                batch.push(k.to_owned());
            }
        });
        (next, batch)
    }

    /// `DBSIZE`: the number of live keys in this view.
    pub fn dbsize(&self) -> usize {
        let mut n = 0;
        self.for_each_key(|_, _| n += 1);
        n
    }

    /// `FLUSHDB`: removes every key of this view.
    pub fn flushdb(&self) {
        if self.prefix.is_empty() {
            self.cache.clear();
        } else {
            let prefix = self.prefix.clone();
            self.cache.invalidate_if(|k, _| k.starts_with(&*prefix));
        }
    }

    /// `RANDOMKEY`: a random live key of this view, if any.
    pub fn random_key(&self) -> Option<String> {
        // One pass, reservoir sampling: each key is kept with probability 1/n.
        let (mut seen, mut pick) = (0u64, None);
        self.for_each_key(|k, _| {
            seen += 1;
            if self.random().is_multiple_of(seen) {
                pick = Some(k.to_owned());
            }
        });
        pick
    }

    /// `TYPE key`: `"string"` for a live key, `"none"` otherwise.
    pub fn key_type(&self, key: &str) -> &'static str {
        let hit = self.cache.contains_key(&self.full_key(key));
        self.count_lookup(hit);
        if hit {
            "string"
        } else {
            "none"
        }
    }
}
