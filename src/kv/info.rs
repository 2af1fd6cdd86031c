//! `INFO [section ...]`: the store's figures under Redis's section and field
//! names, for the sections a `KvStore` has: `server`, `memory`, `stats` and
//! `keyspace`.

use super::KvStore;
use std::fmt::Write as _;

/// The sections `INFO` with no argument (or `default`, `all`, `everything`) shows.
const SECTIONS: [&str; 4] = ["server", "memory", "stats", "keyspace"];

/// The Redis version whose replies `KvStore` matches (`INFO`'s `redis_version`).
const REDIS_VERSION: &str = "7.0.15";

impl KvStore {
    /// `INFO [section ...]`: Redis's `INFO` text (`# Section` headers,
    /// `field:value` lines, `\r\n` line ends) for the named sections, any
    /// case; all of them for none, `default`, `all` or `everything`. A
    /// section the store does not have is left out, as Redis does (so
    /// `INFO clients` is empty).
    ///
    /// Fields: `server`: `redis_version` (the Redis version whose replies
    /// are matched), `redis_mode`, `arch_bits`, `process_id`,
    /// `uptime_in_seconds`, `uptime_in_days`; `memory`: `used_memory`,
    /// `used_memory_human`, `maxmemory`, `maxmemory_human`,
    /// `maxmemory_policy`; `stats`: `expired_keys`, `evicted_keys`,
    /// `keyspace_hits`, `keyspace_misses`; `keyspace`:
    /// `db0:keys=N,expires=M` (no line for an empty view; no `avg_ttl`).
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.set_ex("session", "x", 60)?;
    /// let info = store.info(&["keyspace"]);
    /// assert_eq!(info, "# Keyspace\r\ndb0:keys=1,expires=1\r\n");
    /// assert!(store.info(&[]).contains("\r\nkeyspace_misses:0\r\n"));
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn info(&self, sections: &[&str]) -> String {
        let all = sections.is_empty()
            || sections.iter().any(|s| {
                ["default", "all", "everything"]
                    .iter()
                    .any(|a| s.eq_ignore_ascii_case(a))
            });
        let wanted = |name: &str| all || sections.iter().any(|s| s.eq_ignore_ascii_case(name));
        let stats = self.stats();
        let mut out = String::new();
        for name in SECTIONS.into_iter().filter(|n| wanted(n)) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            let body = match name {
                "server" => {
                    let up = self.cache.wall_clock_ms().saturating_sub(self.shared.started_ms) / 1000;
                    format!(
                        "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\narch_bits:{}\r\n\
                         process_id:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\n",
                        usize::BITS,
                        std::process::id(),
                        up / 86_400
                    )
                }
                "memory" => format!(
                    "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nmaxmemory:{}\r\n\
                     maxmemory_human:{}\r\nmaxmemory_policy:{}\r\n",
                    stats.used_memory,
                    human(stats.used_memory),
                    stats.maxmemory,
                    human(stats.maxmemory),
                    self.shared.policy
                ),
                "stats" => format!(
                    "# Stats\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n",
                    stats.expired_keys, stats.evicted_keys, stats.keyspace_hits, stats.keyspace_misses
                ),
                _ => {
                    let mut s = String::from("# Keyspace\r\n");
                    if stats.keys > 0 {
                        let _ = write!(s, "db0:keys={},expires={}\r\n", stats.keys, stats.expires);
                    }
                    s
                }
            };
            out.push_str(&body);
        }
        out
    }
}

/// Redis's `bytesToHuman`: `123B`, `1.50K`, `64.00M`, ...
fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes_as_redis() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(64 << 20), "64.00M");
        assert_eq!(human(3 << 30), "3.00G");
    }
}
