//! A warm start: while a log replays, the admission summary saved with its
//! last rewrite is matched against its first records, and once the replay
//! is done and the match confirmed, the saved policy state is restored into
//! the new cache's shards (see `summary` for the format and its checks).

use super::Cache;
use crate::persist::{
    AdmissionRestore, SummaryError, SummaryReader, WriteAheadLog, SUMMARY_MAX_BYTES,
};
use std::hash::{BuildHasher, Hash};

/// The summary being matched during a replay, and what it saved for the
/// keys it covers, by shard.
pub(crate) struct WarmStart {
    reader: Result<SummaryReader, AdmissionRestore>,
    by_shard: Vec<Vec<(u64, u8)>>,
}

impl WarmStart {
    /// Reads and checks the summary beside `log` (written under one of
    /// `fingerprints`) for a cache with `shards` shards; `has_sketch` is
    /// whether its policy keeps a sketch.
    pub(crate) fn begin<L: WriteAheadLog>(
        log: &L,
        fingerprints: &[u64],
        shards: usize,
        has_sketch: bool,
    ) -> Self {
        let reader = match log.load_summary(SUMMARY_MAX_BYTES) {
            Ok(None) => Err(AdmissionRestore::Missing),
            Err(e) => Err(AdmissionRestore::Ignored(SummaryError::Io(e.to_string()))),
            Ok(Some(_)) if !has_sketch => Err(AdmissionRestore::Ignored(SummaryError::NoSketch)),
            Ok(Some(bytes)) => {
                SummaryReader::decode(bytes, fingerprints).map_err(AdmissionRestore::Ignored)
            }
        };
        Self {
            reader,
            by_shard: vec![Vec::new(); shards],
        }
    }

    /// Notes the next replayed record; returns what was saved for it (an
    /// estimate and a segment, packed).
    pub(crate) fn next(&mut self, record: &[u8]) -> Option<u8> {
        self.reader.as_mut().ok()?.next(record)
    }

    /// Keeps `saved` (from [`next`](Self::next)) for the key hashed `hash`,
    /// in shard `shard`.
    pub(crate) fn keep(&mut self, (hash, shard): (u64, usize), saved: u8) {
        if let Some(v) = self.by_shard.get_mut(shard) {
            v.push((hash, saved));
        }
    }

    /// Ends the replay: restores the kept policy state into `cache` if the log
    /// began with exactly the records the summary describes; says what
    /// became of the summary.
    pub(crate) fn finish<K, V, S>(self, cache: &Cache<K, V, S>) -> AdmissionRestore
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: BuildHasher + Clone + Send + Sync + 'static,
    {
        let reader = match self.reader {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if let Err(e) = reader.matched() {
            return AdmissionRestore::Ignored(e);
        }
        if let Some(w) = reader.window {
            cache.restore_window_share(w);
        }
        let hasher = cache.read_env().0;
        let mut keys = 0;
        for (s, counts) in self.by_shard.iter().enumerate() {
            keys += counts.len() as u64;
            cache.shard(s).write().restore_admission(hasher, counts);
        }
        AdmissionRestore::Restored { keys }
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// The admission estimate a log rewrite would save for `key` (0..=15:
    /// the sketch's, plus the entry's hits not yet counted in it), or
    /// `None` when the policy keeps no sketch (tests and tools).
    #[doc(hidden)]
    pub fn admission_estimate<Q>(&self, key: &Q) -> Option<u8>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, s) = self.locate_key(key);
        let saved = self.shard(s).read().admission_entry_of(hash, key)?;
        Some((saved.estimate + saved.hits).min(15))
    }
}
