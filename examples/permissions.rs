//! A permission cache in front of a (simulated, 20 ms) database: what a hit
//! costs, how many queries the cache saves, and what a revoke drops.
//!
//! ```sh
//! cargo run --release --example permissions
//! ```

use shardcache::adapters::{PermissionCache, PermissionKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The "database": every query takes 20 ms.
struct Db {
    queries: AtomicU64,
}

impl Db {
    fn can(&self, key: &PermissionKey) -> bool {
        self.queries.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(20));
        key.action() == "read" || key.subject() == "admin"
    }
}

fn main() {
    let db = Arc::new(Db {
        queries: AtomicU64::new(0),
    });
    let perms: PermissionCache<bool> = PermissionCache::new();
    let users = ["admin", "user1", "user2", "user3"];
    let keys: Vec<PermissionKey> = users
        .iter()
        .flat_map(|u| {
            (0..5).flat_map(move |b| {
                ["read", "edit"].map(|a| PermissionKey::new(*u, "boxer", format!("boxer{b}"), a))
            })
        })
        .collect();

    // 100 concurrent requests for one cold key: one query.
    let cold = PermissionKey::new("user9", "boxer", "boxer0", "read");
    let start = Instant::now();
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (perms, db, cold) = (perms.clone(), db.clone(), cold.clone());
            thread::spawn(move || perms.check(&cold, || db.can(&cold)))
        })
        .collect();
    handles.into_iter().for_each(|h| {
        let _ = h.join();
    });
    println!(
        "100 concurrent checks of one cold key: {} DB query, {:.1} ms",
        db.queries.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64() * 1e3
    );

    // Warm every key, then serve 1 000 000 checks.
    let start = Instant::now();
    for k in &keys {
        perms.check(k, || db.can(k));
    }
    println!(
        "warming {} keys: {} ms (each a 20 ms query)",
        keys.len(),
        start.elapsed().as_millis()
    );
    let n = 1_000_000;
    let start = Instant::now();
    let mut allowed = 0u32;
    for i in 0..n {
        let k = &keys[i % keys.len()];
        allowed += u32::from(perms.check(k, || db.can(k)));
    }
    let per_hit = start.elapsed().as_nanos() as f64 / n as f64;
    let stats = perms.stats();
    let queries = db.queries.load(Ordering::Relaxed);
    let checks = stats.hits + stats.misses;
    println!("{n} checks, {allowed} allowed: {per_hit:.0} ns per check (hit), vs 20 ms per query");
    println!(
        "DB queries: {queries} for {checks} checks ({} saved, hit ratio {:.4}); mean load {:.1} ms",
        checks - queries,
        stats.hit_ratio(),
        stats.mean_load_time().as_secs_f64() * 1e3
    );

    // Revocations: one call each, touching only the matching entries.
    println!("cached before revokes: {}", perms.len());
    let dropped = perms.invalidate_subject("user1");
    println!("invalidate_subject(\"user1\") dropped {dropped} entries (10: 5 boxers × read/edit)");
    let dropped = perms.invalidate_resource("boxer", "boxer3");
    println!(
        "invalidate_resource(\"boxer\", \"boxer3\") dropped {dropped} entries (the other 3 users × read/edit)"
    );
    println!("cached after revokes: {}", perms.len());
    let k = PermissionKey::new("user1", "boxer", "boxer0", "read");
    let before = db.queries.load(Ordering::Relaxed);
    perms.check(&k, || db.can(&k));
    println!(
        "next check of a revoked key queries the DB again: {} query",
        db.queries.load(Ordering::Relaxed) - before
    );
}
