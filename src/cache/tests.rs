use super::*;
use crate::{MockClock, Policy};

#[test]
fn lock_word_shares_a_line_with_the_hot_shard_fields() {
    // A layout check, not a behaviour one: if a dependency update moves
    // the lock's words away from the data, every operation touches one
    // more cache line. Table (24 bytes) and slab header (24) must follow
    // the lock's 16 bytes (its flags and the reader counts' address) within
    // its 64-byte line.
    assert_eq!(std::mem::size_of::<crate::shard::table::Table>(), 24);
    let cache: Cache<u64, u64> = Cache::new(100_000);
    for shard in cache.inner.shards.iter() {
        let lock = &**shard as *const crate::shard_lock::ShardLock<Shard<u64, u64>> as usize;
        let data = shard.data_ptr() as usize;
        assert_eq!(lock % 64, 0, "shard not line-aligned");
        assert!(
            data - lock + 48 <= 64,
            "hot fields at {} past the lock word",
            data - lock
        );
    }
}

/// Random operations on small caches, checking every internal invariant
/// (table, lists, expiry index, weights) after each step.
#[test]
fn invariants_hold_under_random_operations() {
    for (policy, weighted, shards, ordered) in [
        (Policy::tiny_lfu(), false, 2, false),
        (Policy::lru(), false, 2, false),
        (Policy::tiny_lfu(), true, 2, false),
        // Many shards, each tuning its own window.
        (Policy::tiny_lfu(), false, 16, false),
        // One budget, deadlines kept in order.
        (Policy::lru(), false, 4, true),
        (Policy::tiny_lfu(), true, 4, true),
    ] {
        let clock = MockClock::new();
        let mut b = Cache::<u32, u32>::builder()
            .max_capacity(40)
            .shards(shards)
            .policy(policy)
            .clock(clock.clone());
        if weighted {
            b = b.weigher(|_: &u32, v: &u32| v % 5);
        }
        if ordered {
            b = b.shared_capacity().expired_first();
        }
        let cache = b.build().expect("valid");
        let mut x = 0x1234_5678_u32;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let k = x % 97;
            match x % 11 {
                0..=3 => cache.insert(k, step),
                4 => cache.insert_with_ttl(k, step, Duration::from_millis(u64::from(x % 50) + 1)),
                5..=7 => {
                    cache.get(&k);
                }
                8 => {
                    cache.remove(&k);
                }
                9 => clock.advance(Duration::from_millis(7)),
                _ if step % 500 == 0 => cache.retain(|k, _| k % 3 != 0),
                _ if step % 3 == 0 => {
                    cache.set_ttl(&k, Some(Duration::from_millis(u64::from(x % 30) + 1)));
                }
                _ => {
                    cache.set_ttl(&k, None);
                }
            }
            cache.validate();
            assert!(cache.weighted_size() <= 40);
        }
    }
}

/// A full shard's slab ends at its capacity plus the one slot an insert
/// takes before its eviction frees one, also in the shards that take the
/// remainder of an uneven capacity (`validate` checks the bound).
#[test]
fn slabs_stop_at_the_shard_capacity() {
    for capacity in [1_000u64, 100_003, 40_000] {
        let cache = Cache::<u64, u64>::builder()
            .max_capacity(capacity)
            .build()
            .expect("valid");
        for k in 0..capacity * 3 {
            cache.insert(k, k);
        }
        cache.validate();
        assert!(cache.len() as u64 <= capacity);
    }
}

fn loads_in_flight<K: Hash + Eq, V, S>(cache: &Cache<K, V, S>) -> usize {
    cache
        .inner
        .shards
        .iter()
        .map(|s| s.read().loads_in_flight())
        .sum()
}

/// Every way a load can end without storing leaves no mark in its shard.
#[test]
fn loads_that_do_not_store_leave_no_mark() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100)
        .shards(2)
        .build()
        .expect("valid");
    for i in 0..50 {
        // Errors.
        let _ = cache.try_get_or_insert_with(i, || Err::<u32, _>("down"));
        // Panics.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.get_or_insert_with(i, || panic!("loader"))
        }));
        // Overtaken by a remove, an insert, a clear.
        cache.get_or_insert_with(i, || {
            cache.remove(&i);
            1
        });
        cache.get_or_insert_with(i + 1000, || {
            cache.insert(i + 1000, 2);
            1
        });
        cache.get_or_insert_with(i + 2000, || {
            cache.clear();
            1
        });
        // Cancelled async leader.
        {
            let mut fut = pin!(cache.get_or_insert_with_async(i + 3000, std::future::pending()));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        // Detached load dropped by its spawner, then the caller's future dropped.
        {
            let mut fut =
                pin!(cache.get_or_insert_with_spawned(i + 4000, std::future::pending, drop));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        // Detached load still queued when every caller has gone.
        {
            let mut queued = Vec::new();
            {
                let mut fut = pin!(cache.get_or_insert_with_spawned(
                    i + 5000,
                    || async { 5 },
                    |f| queued.push(f)
                ));
                let mut cx = Context::from_waker(Waker::noop());
                assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Pending));
            }
            assert_eq!(loads_in_flight(&cache), 1, "the queued load is in flight");
            drop(queued);
        }
        assert_eq!(loads_in_flight(&cache), 0, "round {i}");
    }
    cache.validate();
}

/// Reloads dropped by their spawner, failing, or overtaken leave no mark.
#[test]
fn reloads_that_do_not_store_leave_no_mark() {
    use std::sync::Mutex;
    use std::time::Duration;
    let clock = MockClock::new();
    let queued: std::sync::Arc<Mutex<Vec<crate::refresh::BoxFuture>>> = Default::default();
    let q = queued.clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100)
        .shards(2)
        .clock(clock.clone())
        .time_to_live(Duration::from_secs(60))
        .refresh_after(Duration::from_secs(10))
        .refresh_loader_async(
            |k: u32| async move {
                if k.is_multiple_of(2) {
                    Ok(k)
                } else {
                    Err(std::io::Error::other("down"))
                }
            },
            move |f| q.lock().expect("queue").push(f),
        )
        .build()
        .expect("valid");
    for round in 0..20u32 {
        for k in 0..10 {
            cache.insert(k, 100);
        }
        clock.advance(Duration::from_secs(11));
        for k in 0..10 {
            assert!(cache.get(&k).is_some());
        }
        assert_eq!(loads_in_flight(&cache), 10);
        let jobs: Vec<_> = std::mem::take(&mut *queued.lock().expect("queue"));
        match round % 3 {
            0 => drop(jobs),
            1 => {
                for k in (0..10).step_by(3) {
                    cache.insert(k, 7);
                }
                jobs.into_iter().for_each(futures::executor::block_on);
            }
            _ => jobs.into_iter().for_each(futures::executor::block_on),
        }
        assert_eq!(loads_in_flight(&cache), 0, "round {round}");
    }
}

/// Ordered deadlines under racing writers: four threads insert with and
/// without deadlines, set and clear them, remove, and the clock moves;
/// afterwards every shard's deadline order holds exactly its entries with
/// a deadline, and the budget is kept.
#[test]
fn ordered_deadlines_hold_under_racing_writers() {
    let clock = MockClock::new();
    let cache = Cache::<u32, u32>::builder()
        .max_capacity(200)
        .shards(8)
        .policy(Policy::lru())
        .shared_capacity()
        .expired_first()
        .clock(clock.clone())
        .build()
        .expect("valid");
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let (cache, clock) = (&cache, &clock);
            scope.spawn(move || {
                let mut x = 0x9E37_79B9_u32 ^ (t + 1);
                for step in 0..20_000u32 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let k = x % 500;
                    let ttl = Duration::from_millis(u64::from(x % 40) + 1);
                    match x % 8 {
                        0 | 1 => cache.insert_with_ttl(k, step, ttl),
                        2 => cache.insert(k, step),
                        3 => {
                            cache.set_ttl(&k, Some(ttl));
                        }
                        4 => {
                            cache.set_ttl(&k, None);
                        }
                        5 => {
                            cache.remove(&k);
                        }
                        6 if t == 0 => clock.advance(Duration::from_millis(3)),
                        _ => {
                            cache.get(&k);
                        }
                    }
                }
            });
        }
    });
    cache.validate();
    assert!(cache.weighted_size() <= 200);
}
