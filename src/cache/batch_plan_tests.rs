//! A batch asks the weigher once per value it stores: the plan weighs each
//! put, and the checks (`too_heavy`, `freeing_first`) and the insert,
//! retries included, are told the weight. A moved value is weighed under
//! its old key (for the weight the weigher cannot see, which moves with
//! it) and its new one, and no more.

use super::super::BatchWrite;
use crate::{Cache, Ttl};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A cache of `shards` shards whose weigher counts its calls in the result,
/// with one budget for all shards (`shared`) or a share each.
fn counted(capacity: u64, shards: usize, shared: bool) -> (Cache<String, u32>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let b = Cache::<String, u32>::builder()
        .max_capacity(capacity)
        .shards(shards)
        .weigher(move |_, v: &u32| {
            counter.fetch_add(1, Ordering::Relaxed);
            *v
        });
    let b = if shared { b.shared_capacity() } else { b };
    (b.build().expect("cache"), calls)
}

/// Puts `value` at every key of `keys` in one batch; the weigher calls it
/// made.
fn put_all(cache: &Cache<String, u32>, calls: &AtomicUsize, keys: &[String], value: u32) -> usize {
    calls.store(0, Ordering::Relaxed);
    let r = cache.write_batch(keys, None, |_| {
        let writes = keys
            .iter()
            .map(|_| BatchWrite::Put(value, Ttl::Never))
            .collect();
        (writes, ())
    });
    assert_eq!(r, Ok(()));
    calls.load(Ordering::Relaxed)
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn a_batch_weighs_each_put_once() {
    for shared in [true, false] {
        let (cache, calls) = counted(10_000, 4, shared);
        let new = keys("k", 16);
        assert_eq!(put_all(&cache, &calls, &new, 10), 16, "new keys, {shared}");
        assert_eq!(
            put_all(&cache, &calls, &new, 20),
            16,
            "replaced values, {shared}"
        );
        assert_eq!(
            put_all(&cache, &calls, &new[..1], 5),
            1,
            "one put, {shared}"
        );
        assert_eq!(cache.weighted_size(), 5 + 15 * 20);
        cache.validate();
    }
}

#[test]
fn a_batch_that_makes_room_in_its_own_shards_weighs_each_put_once() {
    // Full, with entries in every shard; the batch holds every shard, so
    // the room its puts need comes from its own shards (`insert_in_batch`'s
    // second try), not from shards it could try to lock.
    let (cache, calls) = counted(400, 4, true);
    for k in keys("old", 40) {
        cache.insert(k, 10);
    }
    assert_eq!(cache.weighted_size(), 400);
    let new = keys("new", 16);
    assert_eq!(put_all(&cache, &calls, &new, 20), 16);
    assert!(new.iter().all(|k| cache.peek_value(k) == Some(20)));
    assert!(cache.weighted_size() <= 400);
    cache.validate();
}

#[test]
fn a_moved_value_and_a_refused_batch_ask_the_weigher_no_more_than_needed() {
    let (cache, calls) = counted(100, 4, true);
    cache.insert("a".into(), 30);
    cache.insert("b".into(), 40);
    // `RENAME a c`: the weigher sees the key, so the value is weighed
    // under both (the hidden weight the shard keeps with "a" moves too).
    let renamed: Vec<String> = vec!["a".into(), "c".into()];
    calls.store(0, Ordering::Relaxed);
    let r = cache.write_batch(&renamed, None, |_| {
        (vec![BatchWrite::Remove, BatchWrite::Move(0)], ())
    });
    assert_eq!(r, Ok(()));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "a move weighs under both keys"
    );
    assert_eq!(cache.peek_value("c"), Some(30));
    assert_eq!(cache.weighted_size(), 70);
    // Heavier together than the cache: refused before anything changes,
    // after one call per put.
    let both: Vec<String> = vec!["b".into(), "c".into()];
    calls.store(0, Ordering::Relaxed);
    let r = cache.write_batch(&both, None, |_| {
        let put = || BatchWrite::Put(60, Ttl::Never);
        (vec![put(), put()], ())
    });
    assert_eq!(r, Err(super::super::BatchFull));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(
        (cache.peek_value("b"), cache.peek_value("c")),
        (Some(40), Some(30))
    );
    cache.validate();
}

#[test]
fn a_single_insert_under_a_shared_budget_weighs_once() {
    let (cache, calls) = counted(1_000, 4, true);
    for (n, k) in keys("k", 20).into_iter().enumerate() {
        calls.store(0, Ordering::Relaxed);
        cache.insert(k, 10 + n as u32);
        assert_eq!(calls.load(Ordering::Relaxed), 1, "insert {n}");
    }
}

#[test]
fn a_moved_value_is_weighed_under_its_new_key() {
    let cache = Cache::<String, u32>::builder()
        .max_capacity(1_000)
        .shards(4)
        .shared_capacity()
        .weigher(|k: &String, v: &u32| k.len() as u32 + *v)
        .build()
        .expect("cache");
    cache.insert("a".into(), 10);
    assert_eq!(cache.weighted_size(), 11);
    let keys: Vec<String> = vec!["a".into(), "longer".into()];
    let r = cache.write_batch(&keys, None, |_| {
        (vec![BatchWrite::Remove, BatchWrite::Move(0)], ())
    });
    assert_eq!(r, Ok(()));
    assert_eq!(cache.peek_value("longer"), Some(10));
    assert_eq!(cache.weighted_size(), 16);
    cache.validate();
}
