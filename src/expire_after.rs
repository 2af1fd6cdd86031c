//! Per-entry time to live chosen when an entry is written:
//! [`CacheBuilder::expire_after`](crate::CacheBuilder::expire_after).

use crate::sync::Arc;
use std::time::Duration;

/// Chooses a written entry's time to live from its key and value.
///
/// Called for every write that does not name its own TTL: `insert`, `try_insert`, a loader's value
/// (`get_or_insert_with` and friends) and a new entry of
/// `entry(..).and_compute_with(..)` (there under the shard's lock: keep it
/// short). `Some(ttl)` expires the entry `ttl`
/// after this write; `None` leaves it to the cache's `time_to_live` (or no
/// expiry at all). Reads never change a deadline (use `time_to_idle` for
/// expiry after the last access).
///
/// Any `Fn(&K, &V) -> Option<Duration> + Send + Sync` is one.
pub(crate) trait ExpireAfter<K, V>: Send + Sync + 'static {
    /// The time to live of `key` = `value`, just written.
    fn expire_after_write(&self, key: &K, value: &V) -> Option<Duration>;
}

impl<K, V, F> ExpireAfter<K, V> for F
where
    F: Fn(&K, &V) -> Option<Duration> + Send + Sync + 'static,
{
    fn expire_after_write(&self, key: &K, value: &V) -> Option<Duration> {
        self(key, value)
    }
}

/// The cache's rule for a written entry's TTL: the user's function, then the
/// cache-wide time to live.
pub(crate) struct WriteTtl<K, V> {
    per_entry: Option<Arc<dyn ExpireAfter<K, V>>>,
    default: Option<Duration>,
}

impl<K: 'static, V: 'static> WriteTtl<K, V> {
    pub(crate) fn new(
        per_entry: Option<Arc<dyn ExpireAfter<K, V>>>,
        default: Option<Duration>,
    ) -> Self {
        Self { per_entry, default }
    }

    /// The TTL of `key` = `value`, written without a TTL of its own.
    #[inline]
    pub(crate) fn of(&self, key: &K, value: &V) -> Option<Duration> {
        match &self.per_entry {
            None => self.default,
            Some(f) => {
                crate::callback::under_lock(|| f.expire_after_write(key, value)).or(self.default)
            }
        }
    }
}
