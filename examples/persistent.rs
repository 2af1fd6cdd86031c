//! A cache that survives restarts: run it twice.
//!
//! ```sh
//! cargo run --example persistent   # writes sessions, "crashes"
//! cargo run --example persistent   # finds them again
//! ```

use shardcache::persist::{FileLog, Fsync};
use shardcache::Cache;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("shardcache-example-sessions.log");
    let log = FileLog::open(&path, Fsync::Always)?;
    let (sessions, report) = Cache::<String, String>::builder()
        .max_capacity(10_000)
        .build_persistent(log)?;
    println!(
        "{}: {} live sessions ({} records replayed, {} expired while we were down, {} bytes of torn tail discarded{})",
        path.display(),
        sessions.len(),
        report.records,
        report.expired,
        report.bytes_discarded,
        match report.stopped_at {
            Some((offset, reason)) => format!(": {reason} at byte {offset}"),
            None => String::new(),
        }
    );
    if sessions.is_empty() {
        // `durably` reports whether the log kept every write made inside it:
        // with Fsync::Always, Ok means on disk. A write the log could not
        // keep (a full disk) is not applied, and the error comes back here.
        sessions.durably(|| {
            for user in ["ada", "grace", "linus"] {
                sessions.insert_with_ttl(
                    format!("session:{user}"),
                    format!("user={user}"),
                    Duration::from_secs(86_400),
                );
            }
        })?;
        println!("first run: created 3 sessions; run me again to see them survive");
    } else {
        let mut all: Vec<_> = sessions.iter().collect();
        all.sort();
        for (k, v) in all {
            println!("{k} -> {v} (ttl {:?})", sessions.ttl(&k).flatten());
        }
        sessions.durably(|| sessions.clear())?;
        println!("cleared; the next run starts fresh");
    }
    sessions.sync()?;
    Ok(())
}
