#![allow(clippy::unwrap_used)]
//! Writers racing on a full store: a `SET` never answers `OOM` under an
//! evicting policy because other writers held the shards with the room, or
//! took the room it made before its insert did. Redis's `maxmemory` is one
//! number for the whole store, and a write that fits is always given room.
//!
//! One thread `SET`s new keys while two `MSET` 16 new keys at a time into a
//! 16 KiB store of 64 shards: most shards are empty, each `MSET` holds a
//! quarter of them, and the room every write needs is in the others.

#[path = "support/watchdog.rs"]
mod watchdog;

use bytes::Bytes;
use shardcache::kv::{KvStore, SetOptions, ENTRY_OVERHEAD};
use shardcache::{Policy, RedisPolicy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long each policy's race runs.
const RACE: Duration = Duration::from_millis(1500);

/// Keys per `MSET`.
const WIDTH: usize = 16;

/// Refused `SET`s and `MSET`s, and the `SET`s made, in one race.
fn race(policy: Policy) -> (u64, u64, u64) {
    let kv = Arc::new(
        KvStore::builder()
            .max_memory(16 << 10)
            .shards(64)
            .policy(policy)
            .build()
            .unwrap(),
    );
    let value = Bytes::from("v".repeat(100));
    for w in 0..2_000 {
        kv.set(&format!("fill:{w}"), value.clone(), SetOptions::new())
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (kv, stop, counts, value) =
                (kv.clone(), stop.clone(), counts.clone(), value.clone());
            std::thread::spawn(move || {
                let mut w = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    w += 1;
                    if t == 0 {
                        counts[2].fetch_add(1, Ordering::Relaxed);
                        if kv
                            .set(&format!("s:{w}"), value.clone(), SetOptions::new())
                            .is_err()
                        {
                            counts[0].fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let keys: Vec<String> = (0..WIDTH).map(|j| format!("m{t}:{w}:{j}")).collect();
                    let pairs: Vec<(&str, Bytes)> =
                        keys.iter().map(|k| (k.as_str(), value.clone())).collect();
                    if kv.mset(&pairs).is_err() {
                        counts[1].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(RACE);
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|h| h.join().unwrap());
    let used = kv.stats().used_memory;
    assert!(used <= 16 << 10, "{used} bytes used");
    // No room was lost on the way (reserved for a write and not given
    // back): the store still fills to within one entry of `max_memory`.
    for w in 0..200 {
        kv.set(&format!("after:{w}"), value.clone(), SetOptions::new())
            .unwrap();
    }
    let used = kv.stats().used_memory;
    let entry = ENTRY_OVERHEAD as u64 + 9 + 100;
    assert!(
        (16 << 10) - used < entry,
        "{used} bytes used of {} after a refill",
        16 << 10
    );
    let [set, mset, sets] = &*counts;
    (
        set.load(Ordering::Relaxed),
        mset.load(Ordering::Relaxed),
        sets.load(Ordering::Relaxed),
    )
}

#[test]
fn no_write_that_fits_is_refused_while_others_hold_the_room() {
    for policy in [Policy::redis(RedisPolicy::AllKeysLru), Policy::tiny_lfu()] {
        let name = policy.to_string();
        let (set, mset, sets) = watchdog::bounded(60, move || race(policy))
            .unwrap_or_else(|()| panic!("{name}: the race did not end (a deadlock?)"));
        assert!(sets > 1_000, "{name}: only {sets} SETs ran");
        assert_eq!(
            (set, mset),
            (0, 0),
            "{name}: SETs and MSETs refused with OOM of {sets} SETs"
        );
    }
}
