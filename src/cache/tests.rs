use super::*;
use crate::{MockClock, Policy};

#[test]
fn lock_word_shares_a_line_with_the_hot_shard_fields() {
    // A layout check, not a behaviour one: if a dependency update moves
    // the lock word away from the data, every operation touches one
    // more cache line. Table (32 bytes) and slab header (24) must follow
    // the word within its 64-byte line.
    assert_eq!(std::mem::size_of::<crate::shard::table::Table>(), 32);
    let cache: Cache<u64, u64> = Cache::new(100_000);
    for shard in cache.inner.shards.iter() {
        let lock = &**shard as *const crate::shard_lock::ShardLock<Shard<u64, u64>> as usize;
        let data = shard.data_ptr() as usize;
        assert_eq!(lock % 64, 0, "shard not line-aligned");
        assert!(
            data - lock + 56 <= 64,
            "hot fields at {} past the lock word",
            data - lock
        );
    }
}

/// Random operations on small caches, checking every internal invariant
/// (table, lists, expiry index, weights) after each step.
#[test]
fn invariants_hold_under_random_operations() {
    for (policy, weighted, shards) in [
        (Policy::tiny_lfu(), false, 2),
        (Policy::lru(), false, 2),
        (Policy::tiny_lfu(), true, 2),
        // Many shards, each tuning its own window.
        (Policy::tiny_lfu(), false, 16),
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
