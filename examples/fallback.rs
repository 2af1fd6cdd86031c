//! Permission checks that use the Redis tier when Redis is there, and
//! shardcache alone when it is not. Prints which.
//!
//! ```sh
//! cargo run --example fallback                                   # shardcache alone
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --features redis --example fallback
//! ```

use std::time::{Duration, Instant};

/// The slow source of truth the cache is in front of.
async fn query_db(key: &str) -> bool {
    tokio::time::sleep(Duration::from_millis(20)).await;
    !key.ends_with(":guest")
}

const KEYS: [&str; 3] = [
    "resource:boxer:user123:boxer456",
    "resource:boxer:user7:boxer9",
    "resource:boxer:user9:guest",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        match tiered(&url).await {
            Ok(tier) => {
                println!("using the Redis tier (REDIS_URL is set and reachable)");
                return run_tiered(tier).await;
            }
            Err(e) => println!(
                "REDIS_URL is set but Redis is not usable ({e}): running on shardcache alone"
            ),
        }
    } else {
        println!("REDIS_URL is not set: running on shardcache alone");
    }
    #[cfg(not(feature = "redis"))]
    println!("built without the `redis` feature: running on shardcache alone");
    run_local().await
}

#[cfg(feature = "redis")]
async fn tiered(url: &str) -> Result<shardcache::tier::TieredCache, shardcache::tier::TierError> {
    shardcache::tier::TieredCache::builder(url)
        .prefix("perm:")
        .local_capacity(100_000)
        .local_ttl(Duration::from_secs(60))
        .remote_ttl(Duration::from_secs(300))
        .connect_timeout(Duration::from_millis(500))
        .require_redis(true)
        .build()
        .await
}

#[cfg(feature = "redis")]
async fn run_tiered(tier: shardcache::tier::TieredCache) -> Result<(), Box<dyn std::error::Error>> {
    for round in 0..2 {
        for key in KEYS {
            let t = Instant::now();
            let allowed = match tier.get_as::<bool>(key).await? {
                Some(v) => v,
                None => {
                    let v = query_db(key).await;
                    tier.set_as(key, &v, Some(Duration::from_secs(300))).await?;
                    v
                }
            };
            println!("round {round}: {key} -> {allowed} in {:?}", t.elapsed());
        }
    }
    // Revoke: every instance with the prefix drops its copy.
    tier.del(KEYS[0]).await?;
    println!("revoked {}; health: {:?}", KEYS[0], tier.health());
    Ok(())
}

async fn run_local() -> Result<(), Box<dyn std::error::Error>> {
    let store = shardcache::kv::KvStore::new().namespace("perm:");
    for round in 0..2 {
        for key in KEYS {
            let t = Instant::now();
            let allowed = match store.get_as::<bool>(key)? {
                Some(v) => v,
                None => {
                    let v = query_db(key).await;
                    store.set_as(key, &v, Some(Duration::from_secs(300)))?;
                    v
                }
            };
            println!("round {round}: {key} -> {allowed} in {:?}", t.elapsed());
        }
    }
    store.del(&[KEYS[0]]);
    println!("revoked {} (this process only)", KEYS[0]);
    Ok(())
}
