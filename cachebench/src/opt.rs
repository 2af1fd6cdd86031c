//! Belady's optimum (OPT) for a trace and a cache size.
//!
//! Every request's next use is found in one backward pass (a map from key to
//! the index of its next request), then the cache is simulated with a
//! max-heap of residents keyed by next use: on a miss, the new key is
//! compared with the resident used farthest in the future, and whichever is
//! needed later is left out. That is OPT for a cache that may decline to
//! admit (the bound every admission policy is judged against), in
//! O(n log n) time and O(n) memory.

use std::collections::BinaryHeap;

use hashbrown::HashMap;

/// A request that is never repeated.
const NEVER: u64 = u64::MAX;

/// For each request, the index of the next request of the same key
/// ([`NEVER`] when there is none).
pub(crate) fn next_uses(keys: &[u64]) -> Vec<u64> {
    let mut next = vec![NEVER; keys.len()];
    let mut seen: HashMap<u64, u64> = HashMap::with_capacity(keys.len() / 4);
    for (i, &k) in keys.iter().enumerate().rev() {
        if let Some(j) = seen.insert(k, i as u64) {
            next[i] = j;
        }
    }
    next
}

/// OPT's hits on `keys` with room for `capacity` entries, given
/// [`next_uses`] of the same keys.
pub(crate) fn hits(keys: &[u64], next: &[u64], capacity: usize) -> u64 {
    // Residents by the index of their next request; an entry is stale when
    // that request has been served (its key was then re-pushed with the next).
    let mut heap: BinaryHeap<(u64, u64)> = BinaryHeap::with_capacity(capacity + 1);
    // Key -> its current next-use index, for residents only.
    let mut resident: HashMap<u64, u64> = HashMap::with_capacity(capacity + 1);
    let mut hits = 0;
    for (i, (&k, &n)) in keys.iter().zip(next).enumerate() {
        if let Some(slot) = resident.get_mut(&k) {
            debug_assert_eq!(*slot, i as u64);
            hits += 1;
            *slot = n;
            heap.push((n, k));
            continue;
        }
        if n == NEVER || capacity == 0 {
            continue;
        }
        if resident.len() >= capacity {
            // The live resident needed farthest ahead.
            let (far, victim) = loop {
                let Some(top) = heap.peek().copied() else {
                    unreachable!("a full cache has residents");
                };
                if resident.get(&top.1) == Some(&top.0) {
                    break top;
                }
                heap.pop();
            };
            if far <= n {
                continue;
            }
            heap.pop();
            resident.remove(&victim);
        }
        resident.insert(k, n);
        heap.push((n, k));
        // Keep stale entries from piling up: rebuild when they dominate.
        if heap.len() > 4 * capacity + 1024 {
            heap = resident.iter().map(|(&k, &n)| (n, k)).collect();
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive OPT over every eviction choice (tiny inputs only).
    fn brute(keys: &[u64], cap: usize) -> u64 {
        fn go(keys: &[u64], cap: usize, set: &mut Vec<u64>) -> u64 {
            let Some((&k, rest)) = keys.split_first() else {
                return 0;
            };
            if set.contains(&k) {
                return 1 + go(rest, cap, set);
            }
            // Not admitting is always allowed.
            let mut best = go(rest, cap, set);
            if set.len() < cap {
                set.push(k);
                best = best.max(go(rest, cap, set));
                set.pop();
            } else {
                for i in 0..set.len() {
                    let old = std::mem::replace(&mut set[i], k);
                    best = best.max(go(rest, cap, set));
                    set[i] = old;
                }
            }
            best
        }
        go(keys, cap, &mut Vec::new())
    }

    #[test]
    fn matches_exhaustive_search() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..300 {
            let len = 4 + round % 9;
            let span = 2 + round % 5;
            let keys: Vec<u64> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % span as u64
                })
                .collect();
            let next = next_uses(&keys);
            for cap in 0..4 {
                assert_eq!(
                    hits(&keys, &next, cap),
                    brute(&keys, cap),
                    "{keys:?} @ {cap}"
                );
            }
        }
    }

    #[test]
    fn loop_larger_than_cache() {
        // A loop of 3 keys: a cache of 3 misses only the first pass, and a
        // cache of 2 (where LRU hits nothing) keeps one key through every
        // pass, so it hits at least once per pass.
        let keys: Vec<u64> = (0..300).map(|i| i % 3).collect();
        let next = next_uses(&keys);
        assert_eq!(hits(&keys, &next, 3), 297);
        let h = hits(&keys, &next, 2);
        assert!((99..297).contains(&h), "{h}");
    }
}
