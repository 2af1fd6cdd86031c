//! Batches racing readers, single writes, `FLUSHDB`, rewrites (foreground
//! and background) and the drop of a persistent store, under a watchdog.

#[path = "support/watchdog.rs"]
mod watchdog;

use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, MemStorage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const GROUP: [&str; 6] = ["g:a", "g:b", "g:c", "g:d", "g:e", "g:f"];

fn persistent(storage: &MemStorage) -> KvStore {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always)
        .write_delay(Duration::ZERO)
        .rewrite_policy(0, 4_096);
    KvStore::builder()
        .shards(8)
        .build_persistent(log)
        .expect("open")
        .0
}

/// `MGET` of a group that `MSET` writes as one step: Redis's `MGET` is
/// atomic, so it never answers some keys from before an `MSET` and some
/// from after it.
#[test]
fn mget_never_sees_half_an_mset() {
    let torn = watchdog::bounded(60, || {
        let kv = KvStore::builder().shards(8).build().expect("build");
        let pairs =
            |i: u64| -> Vec<(&str, String)> { GROUP.iter().map(|k| (*k, i.to_string())).collect() };
        kv.mset(&pairs(0)).expect("mset");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (kv, stop) = (kv.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 1;
                while !stop.load(Ordering::Relaxed) {
                    kv.mset(&pairs(i)).expect("mset");
                    i += 1;
                }
            })
        };
        let mut torn = None;
        for _ in 0..200_000 {
            let values = kv.mget(&GROUP);
            if values.iter().any(|v| *v != values[0]) {
                torn = Some(values);
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        torn
    });
    let torn = torn.expect("deadlock: MGET racing MSET did not finish in 60 s");
    assert_eq!(torn, None, "MGET answered half of an MSET");
}

/// What holds: `RENAME`, `APPEND`, `COPY` and `MSETNX` racing `FLUSHDB`,
/// foreground and background rewrites, single writes and readers on a
/// persistent store never deadlock, and the store reopens exactly as it
/// was at the drop.
#[test]
fn renames_racing_flushes_rewrites_and_writes_keep_one_value_and_reload() {
    let done = watchdog::bounded(120, || {
        let storage = MemStorage::new();
        let kv = persistent(&storage);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Moves one token around the ring of keys, appending to it.
        for t in 0..2 {
            let (kv, stop) = (kv.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (from, to) = (GROUP[(n as usize + t) % 6], GROUP[(n as usize + t + 1) % 6]);
                    let _ = kv.rename(from, to);
                    let _ = kv.append(to, b"+");
                    let _ = kv.copy(to, "copy", true);
                    let _ = kv.mset_nx(&[("nx:a", "1"), ("nx:b", "1")]);
                    n += 1;
                }
            }));
        }
        {
            let (kv, stop) = (kv.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match n % 4 {
                        0 => {
                            let _ = kv.rewrite_log();
                        }
                        1 => kv.flushdb(),
                        _ => {
                            let _ = kv.set(GROUP[0], "token", Default::default());
                            kv.del(&["nx:a"]);
                        }
                    }
                    n += 1;
                    std::thread::yield_now();
                }
            }));
        }
        for _ in 0..300 {
            std::thread::sleep(Duration::from_millis(2));
            let _ = kv.mget(&GROUP);
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("thread");
        }
        kv.sync().expect("sync");
        let mut keys = kv.keys("*");
        keys.sort();
        let before: Vec<_> = keys.iter().map(|k| (k.clone(), kv.get(k))).collect();
        drop(kv);
        let kv = persistent(&storage);
        let mut keys = kv.keys("*");
        keys.sort();
        let after: Vec<_> = keys.iter().map(|k| (k.clone(), kv.get(k))).collect();
        assert_eq!(after, before, "reloaded");
    });
    done.expect("deadlock: the race did not finish in 120 s");
}
