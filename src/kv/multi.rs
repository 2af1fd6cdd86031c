//! Commands that write several keys as one step: `MSET`, `MSETNX`,
//! `RENAME`, `RENAMENX` and `COPY`.
//!
//! Each is one batch of the cache ([`Cache::write_batch`](crate::Cache)):
//! every shard its keys live in is locked at once, the condition (`NX`, the
//! source's presence) is checked under those locks, and the writes are
//! applied and logged as one record. Once a reader sees one of a command's
//! writes it sees all of them, two `MSETNX` with a key in common cannot both
//! succeed, and after a crash the log holds the whole command or none of it.

use super::command::{bytes, key, option};
use super::parse::parse_i64;
use super::{KvError, KvStore, Reply};
use crate::cache::{BatchFull, BatchWrite};
use crate::compute::{Current, Ttl};
use bytes::Bytes;

impl From<BatchFull> for KvError {
    fn from(_: BatchFull) -> Self {
        Self::OutOfMemory
    }
}

/// The expiry a copy of `current` keeps: its remaining time to live.
fn ttl_of(current: &Current<'_, Bytes>) -> Ttl {
    current.ttl.map_or(Ttl::Never, Ttl::After)
}

impl KvStore {
    /// `MSET key value...`: sets every pair, clearing their expiries, as one
    /// step: once a reader sees one of the new values, it sees all of them.
    /// A key given twice takes its last value, as in Redis.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.mset(&[("a", "1"), ("b", "2"), ("a", "3")])?;
    /// assert_eq!(store.mget(&["a", "b"]), vec![Some("3".into()), Some("2".into())]);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::StringTooLong`] if a key or value is over
    /// [`MAX_STRING_LEN`](super::MAX_STRING_LEN); [`KvError::OutOfMemory`]
    /// if a value does not fit. Either way nothing is written.
    pub fn mset<K: AsRef<str>, V: Into<Bytes> + Clone>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<(), KvError> {
        let (keys, values) = self.batch_pairs(pairs)?;
        let now = self.now();
        self.cache.write_batch(&keys, Some(now.tick), |_| {
            let writes = values
                .into_iter()
                .map(|v| BatchWrite::Put(v, Ttl::Never))
                .collect();
            (writes, ())
        })?;
        Ok(())
    }

    /// `MSETNX key value...`: sets every pair (clearing their expiries) only
    /// if none of the keys exists, as one step; true if they were set. Of
    /// two `MSETNX` racing over a common key exactly one succeeds, so it
    /// takes several locks at once.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// assert!(store.mset_nx(&[("lock:a", "me"), ("lock:b", "me")])?);
    /// assert!(!store.mset_nx(&[("lock:b", "you"), ("lock:c", "you")])?);
    /// assert_eq!(store.get("lock:c"), None);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`mset`](Self::mset).
    pub fn mset_nx<K: AsRef<str>, V: Into<Bytes> + Clone>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<bool, KvError> {
        let (keys, values) = self.batch_pairs(pairs)?;
        let now = self.now();
        Ok(self.cache.write_batch(&keys, Some(now.tick), |current| {
            if current.iter().any(Option::is_some) {
                return (Vec::new(), false);
            }
            let writes = values
                .into_iter()
                .map(|v| BatchWrite::Put(v, Ttl::Never))
                .collect();
            (writes, true)
        })?)
    }

    /// The stored keys and values of `pairs`, checked before anything is
    /// written (as Redis refuses the whole command); a repeated key keeps
    /// its first place and its last value.
    fn batch_pairs<K: AsRef<str>, V: Into<Bytes> + Clone>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<(Vec<String>, Vec<Bytes>), KvError> {
        let mut keys: Vec<String> = Vec::with_capacity(pairs.len());
        let mut values: Vec<Bytes> = Vec::with_capacity(pairs.len());
        let mut seen = std::collections::HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.clone().into());
            self.check_len(k, v.len())?;
            match seen.get(k) {
                Some(&i) => values[i] = v,
                None => {
                    seen.insert(k, keys.len());
                    keys.push(self.full_key(k));
                    values.push(v);
                }
            }
        }
        Ok((keys, values))
    }

    /// `RENAME key newkey`: moves the value of `key`, with its time to live,
    /// to `newkey` (replacing any value there), as one step.
    ///
    /// ```
    /// use shardcache::kv::{KvError, KvStore, SetOptions};
    /// let store = KvStore::new();
    /// store.set("draft", "text", SetOptions::new().ex(60))?;
    /// store.rename("draft", "final")?;
    /// assert_eq!(store.get("draft"), None);
    /// assert_eq!(store.ttl("final"), 60);
    /// assert_eq!(store.rename("draft", "other"), Err(KvError::NoSuchKey));
    /// # Ok::<(), KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::NoSuchKey`] if `key` does not exist;
    /// [`KvError::OutOfMemory`] if `newkey` (a longer key) does not fit;
    /// [`KvError::StringTooLong`] for a `newkey` over
    /// [`MAX_STRING_LEN`](super::MAX_STRING_LEN).
    pub fn rename(&self, key: &str, new_key: &str) -> Result<(), KvError> {
        self.rename_as(key, new_key, false).map(drop)
    }

    /// `RENAMENX key newkey`: as [`rename`](Self::rename) only if `newkey`
    /// does not exist; true if renamed. Renaming a key to itself renames
    /// nothing (false).
    ///
    /// # Errors
    ///
    /// As [`rename`](Self::rename).
    pub fn rename_nx(&self, key: &str, new_key: &str) -> Result<bool, KvError> {
        self.rename_as(key, new_key, true)
    }

    fn rename_as(&self, key: &str, new_key: &str, nx: bool) -> Result<bool, KvError> {
        self.check_len(new_key, 0)?;
        let now = self.now();
        if key == new_key {
            // Nothing moves; a missing key is still an error.
            let found = self.cache.contains_key(&self.full_key(key));
            return if found {
                Ok(!nx)
            } else {
                Err(KvError::NoSuchKey)
            };
        }
        let keys = [self.full_key(key), self.full_key(new_key)];
        self.cache.write_batch(&keys, Some(now.tick), |current| {
            if !matches!(current.first(), Some(Some(_))) {
                return (Vec::new(), Err(KvError::NoSuchKey));
            }
            if nx && current.get(1).is_some_and(Option::is_some) {
                return (Vec::new(), Ok(false));
            }
            // The value moves with its deadline and its spare capacity.
            (vec![BatchWrite::Remove, BatchWrite::Move(0)], Ok(true))
        })?
    }

    /// `COPY source destination [REPLACE]`: copies the value of `source`,
    /// with its time to live, to `destination`; true if copied. Without
    /// `replace`, nothing is copied over an existing `destination`.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.set("template", "v1", Default::default())?;
    /// assert!(store.copy("template", "doc", false)?);
    /// assert!(!store.copy("template", "doc", false)?);
    /// assert!(!store.copy("missing", "doc", true)?);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::SameObject`] if `source` and `destination` are the same
    /// key; [`KvError::OutOfMemory`] if the copy does not fit;
    /// [`KvError::StringTooLong`] for a `destination` over
    /// [`MAX_STRING_LEN`](super::MAX_STRING_LEN).
    pub fn copy(&self, source: &str, destination: &str, replace: bool) -> Result<bool, KvError> {
        if source == destination {
            return Err(KvError::SameObject);
        }
        self.check_len(destination, 0)?;
        let now = self.now();
        let keys = [self.full_key(source), self.full_key(destination)];
        let (copied, found) = self.cache.write_batch(&keys, Some(now.tick), |current| {
            let Some(Some(src)) = current.first() else {
                return (Vec::new(), (false, false));
            };
            if !replace && current.get(1).is_some_and(Option::is_some) {
                return (Vec::new(), (false, true));
            }
            let copy = BatchWrite::Put(src.value.clone(), ttl_of(src));
            (vec![BatchWrite::Keep, copy], (true, true))
        })?;
        // The source is read as `GET` reads it.
        self.count_lookup(found);
        Ok(copied)
    }
}

/// `MSET` and `MSETNX` from their arguments: key-value pairs.
pub(super) fn mset(s: &KvStore, a: &[&[u8]], command: &'static str) -> Result<bool, KvError> {
    if a.len().is_multiple_of(2) {
        return Err(KvError::WrongArity(command));
    }
    let pairs: Vec<(&str, Bytes)> = a[1..]
        .chunks_exact(2)
        .map(|p| Ok((key(p[0])?, bytes(p[1]))))
        .collect::<Result<_, KvError>>()?;
    if command == "msetnx" {
        return s.mset_nx(&pairs);
    }
    s.mset(&pairs).map(|()| true)
}

/// `RENAME` (`OK`) and `RENAMENX` (1 or 0).
pub(super) fn rename(s: &KvStore, a: &[&[u8]], nx: bool) -> Result<Reply, KvError> {
    let renamed = s.rename_as(key(a[1])?, key(a[2])?, nx)?;
    Ok(if nx { renamed.into() } else { Reply::ok() })
}

/// `COPY source destination [DB destination-db] [REPLACE]`: the options
/// are read in Redis's order (an unknown one is a syntax error, a database
/// that is not an integer or not 0 an error), before any key is looked at.
pub(super) fn copy(s: &KvStore, a: &[&[u8]]) -> Result<Reply, KvError> {
    let mut replace = false;
    let mut j = 3;
    while j < a.len() {
        match option(a[j]).as_slice() {
            b"replace" => replace = true,
            b"db" if j + 1 < a.len() => {
                let db = parse_i64(a[j + 1])?;
                if i32::try_from(db).is_err() {
                    return Err(KvError::NotInt32);
                }
                if db != 0 {
                    return Err(KvError::DbIndexOutOfRange);
                }
                j += 1;
            }
            _ => return Err(KvError::Syntax),
        }
        j += 1;
    }
    Ok(s.copy(key(a[1])?, key(a[2])?, replace)?.into())
}
