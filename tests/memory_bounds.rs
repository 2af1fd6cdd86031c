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
    // A bounded capacity far above what the cache holds: a billion entries
    // for at most 100k live ones, a million keys passing through (and a
    // clear, which once touched every page of the policy's tables).
    let before = rss();
    let roomy: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000_000_000)
        .build()
        .expect("valid");
    for k in 0..1_000_000u64 {
        roomy.insert(k, k);
        if let Some(old) = k.checked_sub(100_000) {
            roomy.remove(&old);
        }
    }
    roomy.clear();
    for k in 0..100_000u64 {
        roomy.insert(k, k);
    }
    let used = rss().saturating_sub(before);
    eprintln!(
        "max_capacity(10^9), 100k live of 1M keys: {} KiB",
        used >> 10
    );
    assert!(
        used < 40 << 20,
        "max_capacity(10^9), 100k live of 1M keys: {} MiB resident",
        used >> 20
    );
    drop(roomy);
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
