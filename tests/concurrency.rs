//! Many threads at once: invariants hold, distinct keys never lose updates,
//! the counters add up, and one loader runs per missing key.

use shardcache::{Cache, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;
#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;

#[test]
fn stress_keeps_capacity_and_counts() {
    for policy in [Policy::tiny_lfu(), Policy::lru()] {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(500)
            .shards(4)
            .policy(policy)
            .build()
            .expect("valid");
        let threads = 8;
        let ops = 20_000u64;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cache = cache.clone();
                thread::spawn(move || {
                    let mut rng = Xorshift(t + 1);
                    for i in 0..ops {
                        let x = rng.next();
                        let k = x % 2_000;
                        match i % 10 {
                            0..=6 => {
                                if let Some(v) = cache.get(&k) {
                                    assert_eq!(v, k * 3, "a value never written for this key");
                                }
                            }
                            7 | 8 => cache.insert(k, k * 3),
                            _ => {
                                cache.remove(&k);
                            }
                        }
                        assert!(cache.weighted_size() <= 500);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker panicked");
        }
        let s = cache.stats();
        assert_eq!(s.hits + s.misses, threads * ops * 7 / 10);
        assert!(cache.len() <= 500);
        // Every insert of a new key is still there, or left by eviction or removal.
        assert_eq!(
            s.inserts,
            cache.len() as u64 + s.evictions + s.removals + s.expirations
        );
    }
}

#[test]
fn distinct_keys_never_lose_updates() {
    let cache: Cache<(u32, u32), u32> = Cache::builder()
        .max_capacity(100_000)
        .build()
        .expect("valid");
    let handles: Vec<_> = (0..8u32)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                for round in 0..50u32 {
                    for k in 0..200u32 {
                        cache.insert((t, k), round);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked");
    }
    for t in 0..8 {
        for k in 0..200 {
            assert_eq!(cache.get(&(t, k)), Some(49));
        }
    }
}

#[test]
fn hundred_sync_callers_run_one_loader() {
    let cache: Cache<&'static str, u64> = Cache::new(100);
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (cache, loads, barrier) = (cache.clone(), loads.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                cache.get_or_insert_with("perm:user1", || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(50));
                    42
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("caller panicked"), 42);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[test]
fn errors_reach_every_waiter_and_are_not_cached() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (cache, loads, barrier) = (cache.clone(), loads.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                cache.try_get_or_insert_with(1, || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(50));
                    Err::<u32, String>("db down".into())
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(
            *h.join()
                .expect("caller panicked")
                .expect_err("error shared"),
            "db down"
        );
    }
    assert!(loads.load(Ordering::SeqCst) >= 1);
    assert!(!cache.contains_key(&1));
    assert_eq!(
        cache.try_get_or_insert_with(1, || Ok::<_, String>(9)),
        Ok(9)
    );
}

#[test]
fn a_panicking_loader_hands_over_to_a_waiter() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let c2 = cache.clone();
    let leader = thread::spawn(move || {
        c2.get_or_insert_with(5, || {
            thread::sleep(Duration::from_millis(50));
            panic!("loader failed");
        })
    });
    thread::sleep(Duration::from_millis(10));
    let v = cache.get_or_insert_with(5, || 77);
    assert_eq!(v, 77);
    assert!(leader.join().is_err());
}

#[test]
fn hundred_async_and_sync_callers_run_one_loader() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let cache: Cache<u32, u64> = Cache::new(100);
    let loads = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..90 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_insert_with_async(9, async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        7
                    })
                    .await
            }));
        }
        // Ten blocking callers join the same flight from plain threads.
        let sync: Vec<_> = (0..10)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                thread::spawn(move || {
                    cache.get_or_insert_with(9, || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        7
                    })
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), 7);
        }
        for s in sync {
            assert_eq!(s.join().expect("thread"), 7);
        }
    });
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

/// Readers and writers race on the same few keys (so the same shards and
/// slots), with evictions reusing slots for other keys: every value a reader
/// sees for a key was written for that key, and no newer than the newest
/// write begun for it.
#[test]
fn racing_reads_see_only_values_written_for_their_key() {
    race_on_few_keys(4, 60_000);
}

/// The same with more threads than the shard lock has rows of their own
/// (twice the CPU count, at least 4): most readers count in the shared row.
#[test]
fn racing_reads_past_the_thread_rows_see_only_values_written_for_their_key() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    race_on_few_keys((2 * cpus).clamp(4, 64) as u64 + 6, 20_000);
}

/// `threads` threads (two of them also writing) on 64 keys of a cache of 48.
fn race_on_few_keys(threads: u64, rounds: u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    const KEYS: u64 = 64;
    let cache: Arc<Cache<u64, (u64, u64)>> = Arc::new(
        Cache::builder()
            .max_capacity(48)
            .shards(4)
            .build()
            .expect("valid settings"),
    );
    // Per key: the highest sequence number a writer has started to write.
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let threads: Vec<_> = (0..threads)
        .map(|t| {
            let (cache, started) = (cache.clone(), started.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                for i in 0..rounds {
                    let key = (i * 7 + t * 13) % KEYS;
                    if t < 2 && i % 3 == 0 {
                        let seq = started[key as usize].fetch_add(1, Ordering::SeqCst) + 1;
                        cache.insert(key, (key, seq));
                        if i % 11 == 0 {
                            cache.remove(&key);
                        }
                    } else if let Some((k, seq)) = cache.get(&key) {
                        assert_eq!(k, key, "a read returned another key's value");
                        assert!(
                            seq <= started[key as usize].load(Ordering::SeqCst),
                            "a read returned a value never written"
                        );
                        seen += 1;
                    }
                }
                seen
            })
        })
        .collect();
    let hits: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("no panic"))
        .sum();
    assert!(hits > 0, "the readers never hit: the test checked nothing");
    assert!(cache.len() <= 48);
}

/// Every key hashes the same: one shard, one probe chain, one load name.
#[derive(Clone, Default)]
struct Collide;

impl std::hash::BuildHasher for Collide {
    type Hasher = CollideHasher;
    fn build_hasher(&self) -> CollideHasher {
        CollideHasher
    }
}

struct CollideHasher;

impl std::hash::Hasher for CollideHasher {
    fn finish(&self) -> u64 {
        0x9e37_79b9_7f4a_7c15
    }
    fn write(&mut self, _: &[u8]) {}
}

/// One key's history: `source` is the newest sequence written to the
/// backing source (before the cache is written), `done` the newest whose
/// cache write completed.
#[derive(Default)]
struct History {
    source: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

fn val(k: u64, seq: u64) -> u64 {
    k << 32 | seq
}

/// A linearizability oracle for loads racing writes: one writer per key
/// bumps its sequence in the source, then writes the cache (insert,
/// compute, remove, clear, retain); readers and loaders (sync, fallible,
/// panicking, async) read the source when their loader runs. A value any
/// call returns must be the key's own and no older than the last write that
/// completed before the call began; once every thread stops, a key holds
/// nothing or its last write.
fn loads_race_writes<S>(hasher: S, refresh: bool)
where
    S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
{
    use shardcache::MockClock;
    use std::sync::atomic::Ordering::SeqCst;
    const KEYS: u64 = 3;
    const WRITES: u64 = 3_000;
    let hist: Arc<Vec<History>> = Arc::new((0..KEYS).map(|_| History::default()).collect());
    let clock = MockClock::new();
    let mut b = Cache::<u64, u64>::builder()
        .max_capacity(100)
        .shards(2)
        .clock(clock.clone())
        .hasher(hasher);
    if refresh {
        let h = hist.clone();
        b = b
            .time_to_live(Duration::from_secs(60))
            .refresh_after(Duration::from_secs(1))
            .refresh_threads(1)
            .refresh_loader(move |k: &u64| {
                Ok::<_, std::io::Error>(val(*k, h[*k as usize].source.load(SeqCst)))
            });
    }
    let cache = b.build().expect("valid");
    let readers = 3;
    let start = Arc::new(Barrier::new(KEYS as usize + readers));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let check = |hist: &History, k: u64, d: u64, v: u64, what: &str| {
        assert_eq!(v >> 32, k, "{what}: another key's value");
        let seq = v & 0xffff_ffff;
        assert!(seq >= d, "{what} of {k}: {seq}, older than write {d}");
        assert!(seq <= hist.source.load(SeqCst), "{what}: never written");
    };
    let writers: Vec<_> = (0..KEYS)
        .map(|k| {
            let (cache, hist, start) = (cache.clone(), hist.clone(), start.clone());
            thread::spawn(move || {
                let h = &hist[k as usize];
                start.wait();
                for seq in 1..=WRITES {
                    h.source.store(seq, SeqCst);
                    match seq % 7 {
                        0 => drop(cache.remove(&k)),
                        1 if k == 0 && seq % 49 == 1 => cache.clear(),
                        2 if k == 1 && seq % 49 == 2 => cache.retain(|key, _| *key != k),
                        3 => {
                            let put = shardcache::Decision::Put(val(k, seq), shardcache::Ttl::Keep);
                            let _ = cache.compute(k, |_| (put, ()));
                        }
                        _ => cache.insert(k, val(k, seq)),
                    }
                    h.done.store(seq, SeqCst);
                    if let Some(v) = cache.get(&k) {
                        assert_eq!(v >> 32, k);
                        assert!(v & 0xffff_ffff >= seq, "own write {seq} lost to {v:x}");
                    }
                }
            })
        })
        .collect();
    let reader_threads: Vec<_> = (0..readers as u64)
        .map(|t| {
            let (cache, hist, start, stop, clock) = (
                cache.clone(),
                hist.clone(),
                start.clone(),
                stop.clone(),
                clock.clone(),
            );
            thread::spawn(move || {
                start.wait();
                let mut rng = Xorshift(t + 1);
                while !stop.load(SeqCst) {
                    let x = rng.next();
                    let k = x % KEYS;
                    let h = &hist[k as usize];
                    // Read the source, then give a write room to overtake.
                    let load = || {
                        let v = val(k, h.source.load(SeqCst));
                        (0..x % 8).for_each(|_| thread::yield_now());
                        v
                    };
                    let d = h.done.load(SeqCst);
                    let got = match (x >> 8) % 6 {
                        0 => cache.get(&k),
                        1 => Some(cache.get_or_insert_with(k, load)),
                        2 => cache
                            .try_get_or_insert_with(k, || {
                                if x.is_multiple_of(3) {
                                    Err("down")
                                } else {
                                    Ok(load())
                                }
                            })
                            .ok(),
                        3 => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            cache.get_or_insert_with(k, || {
                                if x.is_multiple_of(3) {
                                    panic!("loader")
                                }
                                load()
                            })
                        }))
                        .ok(),
                        4 => Some(futures::executor::block_on(
                            cache.get_or_insert_with_async(k, async { load() }),
                        )),
                        _ => {
                            if refresh && x.is_multiple_of(16) {
                                clock.advance(Duration::from_secs(1));
                            }
                            cache.get(&k)
                        }
                    };
                    if let Some(v) = got {
                        check(h, k, d, v, "read");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, SeqCst);
    for r in reader_threads {
        r.join().expect("reader");
    }
    for k in 0..KEYS {
        if let Some(v) = cache.get(&k) {
            assert_eq!(v, val(k, WRITES), "key {k} after every write");
        }
    }
}

#[test]
fn loads_racing_writes_never_store_over_a_newer_write() {
    loads_race_writes(shardcache::DefaultHashBuilder::default(), false);
}

#[test]
fn loads_racing_writes_on_colliding_hashes_never_store_over_a_newer_write() {
    loads_race_writes(Collide, false);
}

#[test]
fn reloads_and_loads_racing_writes_never_store_over_a_newer_write() {
    loads_race_writes(Collide, true);
}
