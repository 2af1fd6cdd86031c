//! Finding keys that land on different shards of a cache, from outside it:
//! a `compute` closure on one key calling the cache for another panics
//! exactly when both are on one shard. For the tests of user code calling
//! across shards. Included with `#[path]`.

#![allow(dead_code)] // each includer uses a different part

use shardcache::{Cache, Decision};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Whether `a` and `b` are on the same shard of `c`.
pub(crate) fn same_shard(c: &Cache<u64, u64>, a: u64, b: u64) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let _ = c.compute(a, |_| {
            let _ = c.get(&b);
            (Decision::Nothing, ())
        });
    }))
    .is_err()
}

/// `n` keys of `c`, each on a shard of its own (its rank is its index).
pub(crate) fn keys_on_distinct_shards(c: &Cache<u64, u64>, n: usize) -> Vec<u64> {
    let mut keys: Vec<u64> = Vec::new();
    let mut k = 0;
    while keys.len() < n {
        assert!(k < 10_000, "no {n} keys on distinct shards");
        if keys.iter().all(|&o| !same_shard(c, o, k)) {
            keys.push(k);
        }
        k += 1;
    }
    keys
}
