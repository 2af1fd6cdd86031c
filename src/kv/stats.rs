//! [`KvStats`]: the store's counters under Redis's `INFO` names, as a struct,
//! as `INFO`-style text and as Prometheus text with redis_exporter's names.

use super::KvStore;
use std::fmt::Write as _;

/// A snapshot of a [`KvStore`]'s counters, named as in Redis's `INFO`.
///
/// `keyspace_hits`/`keyspace_misses`/`expired_keys`/`evicted_keys`/
/// `used_memory` cover the whole store (all namespaces); `keys` and
/// `expires` count the view's own keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KvStats {
    /// Lookups that found a live key (`GET`, `MGET`, `GETEX`, `GETDEL`, `STRLEN`, `EXISTS`, `TYPE`, `TTL`).
    pub keyspace_hits: u64,
    /// Lookups that found nothing.
    pub keyspace_misses: u64,
    /// Keys removed because they expired.
    pub expired_keys: u64,
    /// Keys evicted to stay under `max_memory`.
    pub evicted_keys: u64,
    /// Accounted bytes in use (key + value + overhead per entry).
    pub used_memory: u64,
    /// The `max_memory` limit (0: none).
    pub maxmemory: u64,
    /// Live keys.
    pub keys: u64,
    /// Live keys with an expiry.
    pub expires: u64,
}

impl KvStats {
    /// `INFO`-style text: `name:value` lines, with a `# Keyspace` section.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.get("missing");
    /// assert!(store.stats().to_info().contains("keyspace_misses:1\r\n"));
    /// ```
    pub fn to_info(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "# Memory\r\nused_memory:{}\r\nmaxmemory:{}\r\n\r\n# Stats\r\nexpired_keys:{}\r\nevicted_keys:{}\r\n\
             keyspace_hits:{}\r\nkeyspace_misses:{}\r\n\r\n# Keyspace\r\ndb0:keys={},expires={}\r\n",
            self.used_memory,
            self.maxmemory,
            self.expired_keys,
            self.evicted_keys,
            self.keyspace_hits,
            self.keyspace_misses,
            self.keys,
            self.expires
        );
        s
    }

    /// Prometheus text exposition with redis_exporter's metric names.
    ///
    /// ```
    /// let text = shardcache::kv::KvStore::new().stats().to_prometheus();
    /// assert!(text.contains("redis_keyspace_hits_total 0\n"));
    /// assert!(text.contains("redis_db_keys{db=\"db0\"} 0\n"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let metrics: [(&str, &str, &str, u64); 8] = [
            (
                "redis_keyspace_hits_total",
                "counter",
                "",
                self.keyspace_hits,
            ),
            (
                "redis_keyspace_misses_total",
                "counter",
                "",
                self.keyspace_misses,
            ),
            ("redis_expired_keys_total", "counter", "", self.expired_keys),
            ("redis_evicted_keys_total", "counter", "", self.evicted_keys),
            ("redis_memory_used_bytes", "gauge", "", self.used_memory),
            ("redis_memory_max_bytes", "gauge", "", self.maxmemory),
            ("redis_db_keys", "gauge", "{db=\"db0\"}", self.keys),
            (
                "redis_db_keys_expiring",
                "gauge",
                "{db=\"db0\"}",
                self.expires,
            ),
        ];
        let mut s = String::new();
        for (name, kind, labels, value) in metrics {
            let _ = write!(s, "# TYPE {name} {kind}\n{name}{labels} {value}\n");
        }
        s
    }
}

impl KvStore {
    /// The store's counters; see [`KvStats`]. Counting `keys` and `expires`
    /// visits this view's keys.
    pub fn stats(&self) -> KvStats {
        let cache = self.cache.stats();
        let (mut keys, mut expires) = (0u64, 0u64);
        self.for_each_key(|_, has_expiry| {
            keys += 1;
            expires += u64::from(has_expiry);
        });
        KvStats {
            keyspace_hits: self.shared.lookups.hits(),
            keyspace_misses: self.shared.lookups.misses(),
            expired_keys: cache.expirations,
            evicted_keys: cache.evictions,
            used_memory: self.cache.weighted_size(),
            maxmemory: self.shared.max_memory,
            keys,
            expires,
        }
    }
}
