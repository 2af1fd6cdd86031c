//! The LRU approximation behind [`Policy::lru`](super::Policy::lru): one
//! lazily ordered list. A hit only writes the entry's meta word; when the
//! list's tail was hit, it goes back among the entries that came in when it
//! was last hit (LRU's order to within a sixteenth of the list, see
//! [`recency`](super::recency)), or to the head while the list is too short
//! to keep stamps (CLOCK's second chance).

use super::recency::Recency;
use crate::policy::node::{List, Nodes};

#[derive(Debug)]
pub(crate) struct Clock {
    ring: List,
    recency: Recency,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            ring: List::new(0),
            recency: Recency::new(),
        }
    }

    /// The stamp readers write into an entry they hit.
    #[inline]
    pub(crate) fn tick(&self) -> u8 {
        self.recency.tick()
    }

    pub(crate) fn on_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        self.ring.push_front(nodes, idx);
        let len = self.ring.len;
        self.recency.stamp_head(nodes, &self.ring, || len, idx);
    }

    pub(crate) fn on_remove<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        self.recency.unmark(nodes, idx);
        self.ring.unlink(nodes, idx);
    }

    /// The least recently used entry, to within a stamp period.
    pub(crate) fn victim<N: Nodes + ?Sized>(&mut self, nodes: &mut N) -> Option<u32> {
        // Each step clears a hit count, so two passes always find a victim.
        for _ in 0..=2 * self.ring.len {
            let t = self.ring.tail;
            let m = nodes.node(t).get();
            if nodes.node(t).take_hits() == 0 {
                return Some(t);
            }
            let len = self.ring.len;
            if !self
                .recency
                .put_back_hit(nodes, &mut self.ring, || len, t, m)
            {
                return Some(t);
            }
        }
        None
    }

    pub(crate) fn clear(&mut self) {
        self.ring.clear();
        self.recency.clear();
    }

    #[cfg(test)]
    pub(crate) fn linked(&self) -> usize {
        self.ring.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::node::HitCount;

    #[test]
    fn second_chance() {
        let mut nodes: Vec<crate::policy::node::Node> =
            (0..3).map(|_| crate::policy::node::Node::new(0)).collect();
        let mut c = Clock::new();
        for i in 0..3 {
            c.on_insert(&mut nodes, i);
        }
        nodes[0].record_hit(nodes[0].get());
        assert_eq!(c.victim(&mut nodes), Some(1));
        c.on_remove(&mut nodes, 1);
        assert_eq!(c.victim(&mut nodes), Some(2));
    }

    #[test]
    fn a_hit_long_ago_does_not_buy_a_whole_lap() {
        // 320 entries; entry 100 is hit right after it came in, never again.
        // CLOCK would evict 0..100 and then put 100 back at the head; in LRU
        // order to a period (20 inserts) it goes before entry 130.
        let n = 320u32;
        let mut nodes: Vec<crate::policy::node::Node> = (0..2 * n)
            .map(|_| crate::policy::node::Node::new(0))
            .collect();
        let mut c = Clock::new();
        for i in 0..n {
            c.on_insert(&mut nodes, i);
            if i == 101 {
                let tick = c.tick();
                nodes[100].record_hit_at(nodes[100].get(), HitCount::All, || Some(tick));
            }
        }
        let mut evicted = Vec::new();
        for i in n..n + 130 {
            let v = c.victim(&mut nodes).expect("victim");
            c.on_remove(&mut nodes, v);
            evicted.push(v);
            c.on_insert(&mut nodes, i);
            c.recency.check(&nodes, &c.ring);
        }
        assert!(evicted.contains(&100), "entry 100 outlived 130 evictions");
        assert_eq!(&evicted[..100], &(0..100).collect::<Vec<_>>()[..]);
    }
}
