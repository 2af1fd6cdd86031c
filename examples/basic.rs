//! The everyday cache: bounded, with a TTL, shared across threads, and a
//! loader that runs once per key however many requests miss at once.
//!
//! ```sh
//! cargo run --example basic
//! ```

use shardcache::Cache;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn main() -> Result<(), shardcache::BuildError> {
    let cache: Cache<String, Arc<str>> = Cache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(300))
        .build()?;

    cache.insert("user:1".to_string(), Arc::from("Ada Lovelace"));
    println!("user:1 -> {:?}", cache.get("user:1"));

    // 16 threads miss "user:2" at once: the (slow) loader runs once.
    let loads = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            thread::spawn(move || {
                cache.get_or_insert_with("user:2".to_string(), || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(20)); // a database query
                    Arc::from("Grace Hopper")
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(&*h.join().expect("thread"), "Grace Hopper");
    }
    println!(
        "16 concurrent misses, {} load(s)",
        loads.load(Ordering::SeqCst)
    );

    let s = cache.stats();
    println!(
        "entries: {}, hits: {}, misses: {}, hit ratio: {:.2}",
        cache.len(),
        s.hits,
        s.misses,
        s.hit_ratio()
    );
    Ok(())
}
