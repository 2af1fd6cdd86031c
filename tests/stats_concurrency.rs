//! The counters and the whole-cache operations (clear, retain, iterate)
//! under concurrency: counts stay exact once writers are quiet, and the
//! counters agree with what the cache holds.

use shardcache::Cache;
use std::sync::Barrier;

#[test]
fn hits_and_misses_add_up_to_the_lookups_across_many_threads() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10_000)
        .build()
        .expect("valid");
    for k in 0..100 {
        cache.insert(k, k);
    }
    // More threads than the counters own stripes for (at most 64), started
    // in waves so that slots are handed over.
    let threads = 150u64;
    let per = 2_000u64;
    for _wave in 0..2 {
        let barrier = Barrier::new(threads as usize);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (cache, barrier) = (&cache, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..per {
                        // Keys 0..100 hit, 100..200 miss.
                        let k = (t * 7 + i) % 200;
                        assert_eq!(cache.get(&k).is_some(), k < 100);
                    }
                });
            }
        });
    }
    let s = cache.stats();
    assert_eq!(s.lookups(), 2 * threads * per);
    assert_eq!(s.hits, 2 * threads * per / 2);
    cache.reset_stats();
    assert_eq!(cache.stats().lookups(), 0);
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&1000), None);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (1, 1));
}

#[test]
fn counters_agree_with_the_length_under_concurrent_writes_and_clears() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000_000)
        .build()
        .expect("valid");
    let barrier = Barrier::new(5);
    let (cache_ref, barrier_ref) = (&cache, &barrier);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (cache, barrier) = (cache_ref, barrier_ref);
            s.spawn(move || {
                barrier.wait();
                for i in 0..20_000u64 {
                    let k = (i * 31 + t) % 5_000;
                    match i % 4 {
                        0 | 1 => cache.insert(k, k),
                        2 => {
                            cache.remove(&k);
                        }
                        _ => {
                            cache.get_or_insert_with(k, || k);
                        }
                    }
                }
            });
        }
        let (cache, b) = (cache_ref, barrier_ref);
        s.spawn(move || {
            b.wait();
            for _ in 0..20 {
                cache.retain(|k, _| k % 3 != 0);
            }
        });
        let (cache, b) = (cache_ref, barrier_ref);
        s.spawn(move || {
            b.wait();
            for _ in 0..5 {
                cache.clear();
                cache.invalidate_if(|k, _| k % 5 == 0);
            }
        });
    });
    let s = cache.stats();
    assert_eq!(s.evictions + s.expirations + s.rejections, 0, "{s:?}");
    assert_eq!(
        s.inserts - s.removals,
        cache.len() as u64,
        "inserts of new keys less removals is what is left: {s:?}"
    );
    assert_eq!(cache.iter().count(), cache.len());
    for (k, v) in cache.iter() {
        assert_eq!(k, v);
    }
}

#[test]
fn iteration_racing_writes_yields_only_written_pairs() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100_000)
        .build()
        .expect("valid");
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            for i in 0..50_000u64 {
                cache.insert(i % 2_000, (i % 2_000) * 10);
                if i % 3 == 0 {
                    cache.remove(&(i % 1_000));
                }
            }
        });
        s.spawn(|| {
            barrier.wait();
            for _ in 0..50 {
                let mut seen = std::collections::HashSet::new();
                for (k, v) in cache.iter() {
                    assert_eq!(v, k * 10);
                    assert!(seen.insert(k), "key {k} yielded twice");
                }
            }
        });
    });
}
