//! Keyspace commands: `DEL`, `EXISTS`, `KEYS`, `SCAN`, `DBSIZE`, `FLUSHDB`,
//! `RANDOMKEY`, `TYPE`. In a namespace they see only the namespace's keys,
//! named without the prefix.

use super::glob::glob_match;
use super::KvStore;

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

/// The stable 64-bit position of a key in `SCAN` order (FNV-1a, never 0,
/// since cursor 0 means "start" and "done").
fn scan_position(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

impl KvStore {
    /// The live keys of this view (prefix stripped), in no particular order.
    pub(super) fn live_keys(&self) -> Vec<String> {
        self.cache
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(&*self.prefix).map(str::to_owned))
            .collect()
    }

    /// `DEL key...`: how many of the keys existed and were removed.
    pub fn del<K: AsRef<str>>(&self, keys: &[K]) -> usize {
        keys.iter()
            .filter(|k| self.cache.remove(&self.full_key(k.as_ref())).is_some())
            .count()
    }

    /// `EXISTS key...`: how many of the keys exist, counting repeats.
    pub fn exists<K: AsRef<str>>(&self, keys: &[K]) -> usize {
        keys.iter()
            .filter(|k| {
                let hit = self.cache.contains_key(&self.full_key(k.as_ref()));
                self.count_lookup(hit);
                hit
            })
            .count()
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
        let mut keys = self.live_keys();
        keys.retain(|k| glob_match(pattern.as_bytes(), k.as_bytes()));
        keys
    }

    /// `SCAN cursor [MATCH pattern] [COUNT n]`: the next cursor (0 when the
    /// iteration is complete) and a batch of keys.
    ///
    /// As in Redis, a full iteration returns every key that exists from its
    /// start to its end at least once; keys added or removed meanwhile may or
    /// may not appear. Cursors are positions in a fixed hash order; each call
    /// takes a snapshot of the keyspace (O(n log n)).
    ///
    /// ```
    /// use shardcache::kv::{KvStore, ScanOptions};
    /// let store = KvStore::new();
    /// for i in 0..25 { store.set(&format!("k{i}"), "v", Default::default())?; }
    /// let (mut cursor, mut seen) = (0, Vec::new());
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
        let mut keys: Vec<(u64, String)> = self
            .live_keys()
            .into_iter()
            .map(|k| (scan_position(&k), k))
            .filter(|(h, _)| *h >= cursor)
            .collect();
        keys.sort_unstable();
        let mut end = opts.count.max(1).min(keys.len());
        // Never split keys that share a position across two calls.
        while end < keys.len() && end > 0 && keys[end].0 == keys[end - 1].0 {
            end += 1;
        }
        let next = keys.get(end).map_or(0, |(h, _)| *h);
        keys.truncate(end);
        let batch = keys
            .into_iter()
            .map(|(_, k)| k)
            .filter(|k| {
                opts.pattern
                    .as_ref()
                    .is_none_or(|p| glob_match(p.as_bytes(), k.as_bytes()))
            })
            .collect();
        (next, batch)
    }

    /// `DBSIZE`: the number of live keys in this view.
    pub fn dbsize(&self) -> usize {
        if self.prefix.is_empty() {
            let mut n = 0;
            for _ in self.cache.iter() {
                n += 1;
            }
            return n;
        }
        self.live_keys().len()
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
        let keys = self.live_keys();
        if keys.is_empty() {
            return None;
        }
        let i = self.random() % keys.len() as u64;
        keys.into_iter().nth(usize::try_from(i).unwrap_or(0))
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
