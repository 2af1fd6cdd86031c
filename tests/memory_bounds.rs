//! Settings the builder accepts must not cost memory out of proportion to
//! what the cache holds: a capacity meant as "unbounded" (`u64::MAX`) and
//! the largest shard count. Measured as this process's resident memory
//! (Linux), one test per process so nothing else allocates meanwhile.

use shardcache::Cache;

/// Resident memory of this process, in bytes (0 where `/proc` is absent).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn huge_capacities_and_shard_counts_cost_what_the_entries_do() {
    let before = rss();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(u64::MAX)
        .build()
        .expect("valid");
    for k in 0..100_000 {
        cache.insert(k, k);
    }
    let used = rss().saturating_sub(before);
    eprintln!("max_capacity(u64::MAX), 100k entries: {} KiB", used >> 10);
    assert!(
        used < 40 << 20,
        "max_capacity(u64::MAX), 100k entries: {} MiB resident",
        used >> 20
    );
    drop(cache);
    let before = rss();
    let many: Cache<u64, u64> = Cache::builder().shards(65_536).build().expect("valid");
    many.insert(1, 1);
    let used = rss().saturating_sub(before);
    eprintln!("65,536 shards, empty: {} KiB", used >> 10);
    assert!(
        used < 400 << 20,
        "65,536 shards, empty: {} MiB resident",
        used >> 20
    );
}
