//! LIRS (Jiang and Zhang, "LIRS: An Efficient Low Inter-reference Recency
//! Set Replacement Policy to Improve Buffer Cache Performance", SIGMETRICS
//! 2002), as a reference subject: one global cache under a mutex, for hit
//! ratios beside the others. Like `arc`, it is a yardstick for comparison,
//! not part of shardcache and not a cache anyone should use (its throughput
//! is a mutex's).
//!
//! LIRS judges a key by how soon it came back the last time (how many
//! distinct keys were asked between its last two requests), not by how
//! recently it was asked. Keys that come back soon (LIR keys) get 99 % of
//! the room; every other key (HIR) passes through the remaining 1 % (at
//! least one entry). So a scan, or a loop a little larger than the cache,
//! goes through the small share and leaves the keys that matter in place,
//! where LRU would lose all of them.
//!
//! The structures are the paper's:
//!
//! - stack `S`: LIR keys, resident HIR keys and non-resident HIR keys (no
//!   value, only the memory of a recent request), most recent on top. Its
//!   bottom is always a LIR key: whenever it is not, HIR keys are pruned
//!   from the bottom until it is. A HIR key asked again while still in `S`
//!   came back sooner than the least recent LIR key, so it becomes LIR and
//!   that LIR key (the bottom of `S`) becomes a resident HIR key.
//! - queue `Q`: the resident HIR keys, evicted from the front on a miss.
//!
//! One departure, to bound memory: the paper keeps a non-resident key in
//! `S` until pruning reaches it, so on a trace of one-off keys `S` grows
//! without limit. Here at most twice the capacity of non-resident keys are
//! kept in `S`; past that, the oldest (deepest in `S`) are forgotten.
//!
//! Every key has a node in a `Vec` arena, found through a hash map and
//! threaded on intrusive doubly-linked lists for `S` and `Q`; the
//! non-resident keys in `S` are also indexed by the time they were last
//! placed on top of `S`, to find the oldest. A request is O(1) amortised,
//! plus O(log n) when a key becomes or stops being non-resident.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use crate::reference::Reference;

/// No node: the end of a list.
const NIL: u32 = u32::MAX;

/// What a key is to LIRS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// In the LIR set: resident, always in `S`.
    Lir,
    /// A resident HIR key: in `Q`, and maybe in `S`.
    Hir,
    /// A non-resident HIR key: in `S` only, no value.
    NonResident,
}

/// One key's node, on `S` (`s_*` links) and `Q` (`q_*` links).
#[derive(Debug, Clone)]
struct Node {
    key: u64,
    status: Status,
    in_s: bool,
    /// When the key was last placed on top of `S` (unique, increasing).
    stamp: u64,
    /// Towards the top of `S` (more recent).
    s_up: u32,
    /// Towards the bottom of `S` (less recent).
    s_down: u32,
    /// Towards the front of `Q` (evicted sooner).
    q_front: u32,
    /// Towards the end of `Q`.
    q_back: u32,
}

/// The LIRS cache of `c` entries: its keys, stack `S` and queue `Q`.
pub(crate) struct Lirs {
    c: usize,
    /// Room for LIR keys; the rest of `c` is for resident HIR keys.
    lir_cap: usize,
    lirs: usize,
    /// Resident HIR keys (the length of `Q`).
    hirs: usize,
    map: HashMap<u64, u32>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    s_top: u32,
    s_bottom: u32,
    q_front: u32,
    q_back: u32,
    /// Non-resident keys in `S` by stamp, oldest first.
    non_resident: BTreeMap<u64, u32>,
    clock: u64,
}

impl Lirs {
    /// An empty cache of `c` entries (at least 1): 1 % of them (at least
    /// one) for resident HIR keys, the rest for LIR keys. With `c == 1`
    /// the one entry is LIR, which makes LIRS plain LRU.
    pub(crate) fn new(c: usize) -> Self {
        let c = c.max(1);
        let hir_cap = (c / 100).max(1);
        let lir_cap = if c >= 2 { c - hir_cap } else { 1 };
        Self {
            c,
            lir_cap,
            lirs: 0,
            hirs: 0,
            map: HashMap::with_capacity(c.min(1 << 20)),
            nodes: Vec::new(),
            free: Vec::new(),
            s_top: NIL,
            s_bottom: NIL,
            q_front: NIL,
            q_back: NIL,
            non_resident: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Makes node `i` (off `S` and `Q`, not counted) LIR on top of `S`;
    /// if that is one LIR key too many, the bottom LIR key becomes a
    /// resident HIR key at the end of `Q`, and `S` is pruned.
    fn make_lir(&mut self, i: u32) {
        self.nodes[i as usize].status = Status::Lir;
        self.lirs += 1;
        self.s_push_top(i);
        if self.lirs > self.lir_cap {
            let b = self.s_bottom;
            debug_assert!(b != i && self.nodes[b as usize].status == Status::Lir);
            self.nodes[b as usize].status = Status::Hir;
            self.lirs -= 1;
            self.hirs += 1;
            self.q_push_back(b);
            self.prune();
        }
    }

    /// Frees one entry: the resident HIR key at the front of `Q` becomes
    /// non-resident (kept in `S` if it is there). With `Q` empty (only when
    /// every entry is LIR, `c == 1`) the bottom LIR key goes instead.
    fn evict(&mut self) {
        if self.q_front == NIL {
            let b = self.s_bottom;
            if b == NIL {
                return;
            }
            self.nodes[b as usize].status = Status::Hir;
            self.lirs -= 1;
            self.hirs += 1;
            self.q_push_back(b);
            self.prune();
        }
        let v = self.q_front;
        self.q_unlink(v);
        self.hirs -= 1;
        let node = &mut self.nodes[v as usize];
        if node.in_s {
            node.status = Status::NonResident;
            self.non_resident.insert(node.stamp, v);
        } else {
            self.release(v);
        }
    }

    /// Removes HIR keys from the bottom of `S` until a LIR key is there:
    /// non-resident ones are forgotten, resident ones stay in `Q`.
    fn prune(&mut self) {
        while self.s_bottom != NIL {
            let b = self.s_bottom;
            match self.nodes[b as usize].status {
                Status::Lir => break,
                Status::Hir => self.s_unlink(b),
                Status::NonResident => {
                    let stamp = self.nodes[b as usize].stamp;
                    self.non_resident.remove(&stamp);
                    self.s_unlink(b);
                    self.release(b);
                }
            }
        }
    }

    /// A fresh node for `key`, on no list, as a resident HIR key.
    fn alloc(&mut self, key: u64) -> u32 {
        let node = Node {
            key,
            status: Status::Hir,
            in_s: false,
            stamp: 0,
            s_up: NIL,
            s_down: NIL,
            q_front: NIL,
            q_back: NIL,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                let i = u32::try_from(self.nodes.len()).unwrap_or(NIL);
                assert!(i != NIL, "LIRS: too many nodes");
                self.nodes.push(node);
                i
            }
        }
    }

    /// Forgets node `i` (already off `S` and `Q`).
    fn release(&mut self, i: u32) {
        let key = self.nodes[i as usize].key;
        self.map.remove(&key);
        self.free.push(i);
    }

    fn s_push_top(&mut self, i: u32) {
        self.clock += 1;
        let old = self.s_top;
        let n = &mut self.nodes[i as usize];
        n.in_s = true;
        n.stamp = self.clock;
        n.s_up = NIL;
        n.s_down = old;
        if old == NIL {
            self.s_bottom = i;
        } else {
            self.nodes[old as usize].s_up = i;
        }
        self.s_top = i;
    }

    fn s_unlink(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        debug_assert!(n.in_s);
        let (up, down) = (n.s_up, n.s_down);
        n.in_s = false;
        n.s_up = NIL;
        n.s_down = NIL;
        if up == NIL {
            self.s_top = down;
        } else {
            self.nodes[up as usize].s_down = down;
        }
        if down == NIL {
            self.s_bottom = up;
        } else {
            self.nodes[down as usize].s_up = up;
        }
    }

    fn q_push_back(&mut self, i: u32) {
        let old = self.q_back;
        let n = &mut self.nodes[i as usize];
        n.q_back = NIL;
        n.q_front = old;
        if old == NIL {
            self.q_front = i;
        } else {
            self.nodes[old as usize].q_back = i;
        }
        self.q_back = i;
    }

    fn q_unlink(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        let (front, back) = (n.q_front, n.q_back);
        n.q_front = NIL;
        n.q_back = NIL;
        if front == NIL {
            self.q_front = back;
        } else {
            self.nodes[front as usize].q_back = back;
        }
        if back == NIL {
            self.q_back = front;
        } else {
            self.nodes[back as usize].q_front = front;
        }
    }
}

impl Reference for Lirs {
    /// Cached (resident) keys.
    fn len(&self) -> usize {
        self.lirs + self.hirs
    }

    /// A lookup: on a hit, the paper's cases for a LIR key and for a
    /// resident HIR key. A miss changes nothing (see [`insert`](Self::insert)).
    fn get(&mut self, key: u64) -> bool {
        let Some(&i) = self.map.get(&key) else {
            return false;
        };
        match self.nodes[i as usize].status {
            Status::NonResident => false,
            Status::Lir => {
                let was_bottom = self.s_bottom == i;
                self.s_unlink(i);
                self.s_push_top(i);
                if was_bottom {
                    self.prune();
                }
                true
            }
            Status::Hir => {
                if self.nodes[i as usize].in_s {
                    // Back while still in S: sooner than the bottom LIR key.
                    self.s_unlink(i);
                    self.q_unlink(i);
                    self.hirs -= 1;
                    self.make_lir(i);
                } else {
                    self.s_push_top(i);
                    self.q_unlink(i);
                    self.q_push_back(i);
                }
                true
            }
        }
    }

    /// Admits `key` after a miss (the paper's case for a non-resident
    /// block); a cached key is a hit.
    fn insert(&mut self, key: u64) {
        if self.get(key) {
            return;
        }
        if self.len() >= self.c {
            self.evict();
        }
        let i = match self.map.get(&key) {
            Some(&i) => {
                // A non-resident key still in S.
                let stamp = self.nodes[i as usize].stamp;
                self.non_resident.remove(&stamp);
                self.s_unlink(i);
                if self.lirs < self.lir_cap {
                    self.lirs += 1;
                    self.nodes[i as usize].status = Status::Lir;
                    self.s_push_top(i);
                } else {
                    self.make_lir(i);
                }
                i
            }
            None => {
                let i = self.alloc(key);
                self.map.insert(key, i);
                if self.lirs < self.lir_cap {
                    // Filling up: the first keys are LIR.
                    self.lirs += 1;
                    self.nodes[i as usize].status = Status::Lir;
                } else {
                    self.hirs += 1;
                    self.q_push_back(i);
                }
                self.s_push_top(i);
                i
            }
        };
        debug_assert_eq!(self.nodes[i as usize].key, key);
        while self.non_resident.len() > 2 * self.c {
            if let Some((_, j)) = self.non_resident.pop_first() {
                // Never the bottom of S, which is LIR: no pruning needed.
                self.s_unlink(j);
                self.release(j);
            }
        }
    }
}

#[cfg(test)]
impl Lirs {
    /// The keys of `S`, bottom first, with their status.
    fn stack(&self) -> Vec<(u64, Status)> {
        let mut v = Vec::new();
        let mut i = self.s_bottom;
        while i != NIL {
            let n = &self.nodes[i as usize];
            v.push((n.key, n.status));
            i = n.s_up;
        }
        v
    }

    /// The keys of `Q`, front first.
    fn queue(&self) -> Vec<u64> {
        let mut v = Vec::new();
        let mut i = self.q_front;
        while i != NIL {
            v.push(self.nodes[i as usize].key);
            i = self.nodes[i as usize].q_back;
        }
        v
    }

    fn status(&self, key: u64) -> Option<Status> {
        self.map.get(&key).map(|&i| self.nodes[i as usize].status)
    }

    /// Panics unless every invariant holds.
    fn check(&self) {
        assert!(self.len() <= self.c, "{} resident > {}", self.len(), self.c);
        assert!(self.lirs <= self.lir_cap);
        assert!(self.non_resident.len() <= 2 * self.c);
        let stack = self.stack();
        let queue = self.queue();
        if let Some(&(_, bottom)) = stack.first() {
            assert_eq!(bottom, Status::Lir, "S ends in a LIR key");
        }
        // Links both ways agree, and stamps rise towards the top.
        let mut down = Vec::new();
        let mut i = self.s_top;
        while i != NIL {
            down.push(self.nodes[i as usize].key);
            i = self.nodes[i as usize].s_down;
        }
        down.reverse();
        assert_eq!(down, stack.iter().map(|s| s.0).collect::<Vec<_>>());
        let stamps: Vec<u64> = stack
            .iter()
            .map(|&(k, _)| self.nodes[self.map[&k] as usize].stamp)
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
        let count = |s: Status| stack.iter().filter(|x| x.1 == s).count();
        assert_eq!(count(Status::Lir), self.lirs, "every LIR key is in S");
        assert_eq!(count(Status::NonResident), self.non_resident.len());
        assert_eq!(queue.len(), self.hirs);
        assert!(queue.iter().all(|k| self.status(*k) == Some(Status::Hir)));
        let hir_in_s = count(Status::Hir);
        assert_eq!(
            self.map.len(),
            self.lirs + self.hirs + self.non_resident.len(),
            "{hir_in_s} resident HIR keys in S"
        );
        for (&stamp, &i) in &self.non_resident {
            let n = &self.nodes[i as usize];
            assert!(n.in_s && n.status == Status::NonResident && n.stamp == stamp);
            assert_eq!(self.map.get(&n.key), Some(&i));
        }
        assert_eq!(self.map.len() + self.free.len(), self.nodes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(l: &mut Lirs, k: u64) -> bool {
        let hit = l.get(k);
        if !hit {
            l.insert(k);
        }
        l.check();
        hit
    }

    #[test]
    fn a_loop_one_longer_than_the_cache_mostly_hits() {
        // LRU misses every request of this loop; LIRS keeps its LIR keys
        // and lets the rest take turns in the one HIR entry.
        let c = 100u64;
        let mut l = Lirs::new(c as usize);
        let mut lru = lru::LruCache::new(std::num::NonZeroUsize::new(c as usize).expect("c > 0"));
        let (mut hits, mut lru_hits, mut n) = (0, 0, 0);
        for round in 0..50 {
            for k in 0..=c {
                let hit = request(&mut l, k);
                let lru_hit = lru.get(&k).is_some();
                if !lru_hit {
                    lru.put(k, ());
                }
                if round > 0 {
                    n += 1;
                    hits += u64::from(hit);
                    lru_hits += u64::from(lru_hit);
                }
            }
        }
        assert_eq!(lru_hits, 0);
        let ratio = hits as f64 / n as f64;
        assert!(ratio > 0.95, "LIRS hit ratio {ratio}");
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for c in [1, 2, 3, 10, 150, 250] {
            let mut l = Lirs::new(c);
            assert_eq!(l.lir_cap + (c / 100).max(1), c.max(2));
            for step in 0..20_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // A hot set, a wider set and one-off keys, mixed.
                let k = match x % 8 {
                    0..=3 => x % (c as u64 / 2 + 1),
                    4..=6 => x % (4 * c as u64 + 3),
                    _ => 1_000_000 + step,
                };
                request(&mut l, k);
                assert!(l.len() <= c);
            }
            assert_eq!(l.len(), c, "a full cache stays full");
        }
    }

    #[test]
    fn the_papers_cases_step_by_step() {
        // c = 3: two LIR entries, one resident HIR entry.
        use Status::{Hir, Lir, NonResident as Nr};
        let (a, b, c, d) = (1, 2, 3, 4);
        let mut l = Lirs::new(3);
        for k in [a, b, c] {
            assert!(!request(&mut l, k));
        }
        // Filling up: the first two keys are LIR, the third a resident HIR.
        assert_eq!(l.stack(), [(a, Lir), (b, Lir), (c, Hir)]);
        assert_eq!(l.queue(), [c]);

        // A miss on a new key: the front of Q loses its entry but stays in
        // S as non-resident; the new key is a resident HIR key.
        assert!(!request(&mut l, d));
        assert_eq!(l.stack(), [(a, Lir), (b, Lir), (c, Nr), (d, Hir)]);
        assert_eq!(l.queue(), [d]);

        // A miss on a non-resident key still in S: it came back sooner than
        // `a` (the bottom LIR key) last came, so it becomes LIR, `a` becomes
        // a resident HIR key, and pruning takes `a` off the bottom of S.
        assert!(!request(&mut l, c));
        assert_eq!(l.stack(), [(b, Lir), (d, Nr), (c, Lir)]);
        assert_eq!(l.queue(), [a]);
        assert_eq!(l.status(a), Some(Hir));

        // A hit on the bottom LIR key: it moves to the top and pruning
        // forgets the non-resident key below the next LIR key.
        assert!(request(&mut l, b));
        assert_eq!(l.stack(), [(c, Lir), (b, Lir)]);
        assert_eq!(l.status(d), None);

        // A hit on a resident HIR key not in S: it stays HIR, goes back on
        // top of S and to the end of Q.
        assert!(request(&mut l, a));
        assert_eq!(l.stack(), [(c, Lir), (b, Lir), (a, Hir)]);
        assert_eq!(l.queue(), [a]);

        // Again, now in S: it becomes LIR and `c` (bottom) turns HIR.
        assert!(request(&mut l, a));
        assert_eq!(l.stack(), [(b, Lir), (a, Lir)]);
        assert_eq!(l.queue(), [c]);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn hot_lir_keys_stay_resident_across_a_scan() {
        let mut l = Lirs::new(100);
        // 99 hot keys, asked twice: the LIR set.
        for _ in 0..2 {
            for k in 0..99 {
                request(&mut l, k);
            }
        }
        // A scan of 10 000 one-off keys passes through the HIR entry.
        for k in 1_000..11_000 {
            assert!(!request(&mut l, k));
        }
        assert!(l.non_resident.len() <= 200, "non-resident keys are bounded");
        for k in 0..99 {
            assert!(request(&mut l, k), "hot key {k} survived the scan");
        }
    }

    #[test]
    fn one_entry_is_lru() {
        let mut l = Lirs::new(1);
        assert!(!request(&mut l, 1));
        assert!(request(&mut l, 1));
        assert!(!request(&mut l, 2));
        assert!(!request(&mut l, 1));
        assert_eq!(l.len(), 1);
    }
}
