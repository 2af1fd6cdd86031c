//! ARC (Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead Replacement
//! Cache", FAST 2003), as a reference subject: one global cache, the
//! algorithm of the paper's figure 4, under a mutex.
//!
//! Four LRU lists of keys: `t1` (cached, seen once lately), `t2` (cached,
//! seen at least twice), and their ghosts `b1` and `b2` (keys just evicted
//! from each, no values). `p` is the target size of `t1`: a hit in `b1`
//! raises it, a hit in `b2` lowers it, each by the ratio of the two ghost
//! lists' lengths (at least one). shardcache's window share follows the
//! same rule, so ARC is the yardstick for what that rule gets without a
//! frequency sketch.

use lru::LruCache;

use crate::reference::Reference;

/// The four lists and the target, for a cache of `c` entries.
pub(crate) struct Arc {
    c: usize,
    p: f64,
    t1: LruCache<u64, ()>,
    t2: LruCache<u64, ()>,
    b1: LruCache<u64, ()>,
    b2: LruCache<u64, ()>,
}

impl Arc {
    /// An empty cache of `c` entries (at least 1).
    pub(crate) fn new(c: usize) -> Self {
        Self {
            c: c.max(1),
            p: 0.0,
            t1: LruCache::unbounded(),
            t2: LruCache::unbounded(),
            b1: LruCache::unbounded(),
            b2: LruCache::unbounded(),
        }
    }

    /// Evicts from `t1` or `t2`, whichever is over its target, into its
    /// ghost list. `in_b2`: the request that asked was a `b2` ghost.
    fn replace(&mut self, in_b2: bool) {
        let t1 = self.t1.len() as f64;
        let from_t1 = !self.t1.is_empty() && (t1 > self.p || (in_b2 && t1 == self.p.floor()));
        if from_t1 {
            if let Some((k, ())) = self.t1.pop_lru() {
                self.b1.put(k, ());
            }
        } else if let Some((k, ())) = self.t2.pop_lru() {
            self.b2.put(k, ());
        }
    }
}

impl Reference for Arc {
    /// A lookup: on a hit (case I) the key moves to the head of `t2`.
    fn get(&mut self, key: u64) -> bool {
        if self.t1.pop(&key).is_some() || self.t2.contains(&key) {
            self.t2.put(key, ());
            return true;
        }
        false
    }

    /// Admits `key` after a miss (cases II to IV); a cached key is a hit.
    fn insert(&mut self, key: u64) {
        if self.get(key) {
            return;
        }
        let (b1, b2) = (self.b1.len() as f64, self.b2.len() as f64);
        if self.b1.pop(&key).is_some() {
            // Case II: a bigger t1 would have kept it.
            self.p = (self.p + (b2 / b1).max(1.0)).min(self.c as f64);
            self.replace(false);
            self.t2.put(key, ());
            return;
        }
        if self.b2.pop(&key).is_some() {
            // Case III: a bigger t2 would have kept it.
            self.p = (self.p - (b1 / b2).max(1.0)).max(0.0);
            self.replace(true);
            self.t2.put(key, ());
            return;
        }
        // Case IV: a key in no list.
        let l1 = self.t1.len() + self.b1.len();
        let total = l1 + self.t2.len() + self.b2.len();
        if l1 == self.c {
            if self.t1.len() < self.c {
                self.b1.pop_lru();
                self.replace(false);
            } else {
                self.t1.pop_lru();
            }
        } else if total >= self.c {
            if total >= 2 * self.c {
                self.b2.pop_lru();
            }
            self.replace(false);
        }
        self.t1.put(key, ());
    }

    /// Cached keys.
    fn len(&self) -> usize {
        self.t1.len() + self.t2.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_c_and_remembers_at_most_2c() {
        let mut a = Arc::new(10);
        let mut x = 1u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 40;
            if !a.get(k) {
                a.insert(k);
            }
            assert!(a.len() <= 10);
            assert!(a.len() + a.b1.len() + a.b2.len() <= 20);
            assert!(a.t1.len() + a.b1.len() <= 10);
        }
    }

    #[test]
    fn a_key_asked_twice_moves_to_t2_and_scans_pass_through_t1() {
        let mut a = Arc::new(4);
        a.insert(1);
        assert!(a.get(1));
        assert!(a.t2.contains(&1));
        for k in 100..120 {
            a.insert(k);
        }
        // The one-off keys of the scan evicted each other, not the key
        // asked for twice.
        assert!(a.get(1));
    }

    #[test]
    fn a_key_back_from_b1_raises_the_target_and_one_from_b2_lowers_it() {
        let mut a = Arc::new(4);
        a.insert(0);
        assert!(a.get(0));
        for k in 1..5 {
            a.insert(k);
        }
        // 1 left t1 for b1 (t1 was over its target of 0); asked again, t1
        // should have been larger.
        assert!(a.b1.contains(&1));
        a.insert(1);
        assert!(a.p >= 1.0);
        assert!(a.t2.contains(&1));
        let p = a.p;
        // Fill t2 past its room so that one of its keys goes to b2.
        for k in 10..20 {
            a.insert(k);
            a.get(k);
        }
        assert_eq!(a.p, p, "new keys leave the target alone");
        let ghost = *a.b2.iter().next().expect("a b2 ghost").0;
        a.insert(ghost);
        assert!(a.p <= p - 1.0);
        assert!(a.len() <= 4);
    }
}
