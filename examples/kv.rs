//! KvStore tour: Redis commands in-process, namespaces, typed values,
//! `maxmemory` with a Redis policy, and INFO/Prometheus stats.
//!
//! Run with `cargo run --example kv`.

use shardcache::kv::{ExpireOptions, KvStore, Reply, SetOptions};
use shardcache::Policy;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = KvStore::builder()
        .max_memory(64 << 20)
        .policy("allkeys-lru".parse::<Policy>()?)
        .build()?;

    // Redis-style commands, with Redis's replies and error texts.
    assert_eq!(
        store.execute(&["SET", "greeting", "hello", "EX", "60"]),
        Reply::ok()
    );
    assert_eq!(store.execute(&["TTL", "greeting"]), Reply::Integer(60));
    println!("INCR on text: {:?}", store.execute(&["INCR", "greeting"]));

    // The same operations as typed methods.
    store.set("lock:report", "worker-1", SetOptions::new().nx().px(30_000))?;
    let hits = store.incr_by("counter:hits", 10)?;
    store.expire("counter:hits", 3600, ExpireOptions::new().nx())?;
    println!("hits = {hits}, ttl = {} s", store.ttl("counter:hits"));

    // A namespace: its own KEYS/SCAN/DBSIZE/FLUSHDB.
    let perms = store.namespace("perm:");
    perms.set_as("user123:doc456:read", &true, Some(Duration::from_secs(300)))?;
    perms.set_as(
        "user123:doc789:write",
        &false,
        Some(Duration::from_secs(300)),
    )?;
    println!("perm keys for user123: {:?}", perms.keys("user123:*"));
    println!(
        "allowed: {:?}",
        perms.get_as::<bool>("user123:doc456:read")?
    );
    perms.flushdb();
    assert_eq!(perms.dbsize(), 0);

    // INCRBYFLOAT in long double, as Redis: 0.1 + 0.2 is 0.3.
    store.execute(&["SET", "price", "0.1"]);
    assert_eq!(
        store.execute(&["INCRBYFLOAT", "price", "0.2"]),
        Reply::Bulk("0.3".into())
    );

    // INFO as Redis sends it, and the same counters as Prometheus text.
    if let Reply::Bulk(info) = store.execute(&["INFO", "memory", "keyspace"]) {
        print!("{}", String::from_utf8_lossy(&info));
    }
    print!("{}", store.stats().to_prometheus());
    Ok(())
}
