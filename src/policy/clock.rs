//! CLOCK (second chance), the LRU approximation behind [`Policy::lru`](super::Policy::lru).

use crate::policy::node::{List, Nodes};

#[derive(Debug)]
pub(crate) struct Clock {
    ring: List,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { ring: List::new(0) }
    }

    pub(crate) fn on_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        self.ring.push_front(nodes, idx);
    }

    pub(crate) fn on_remove<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        self.ring.unlink(nodes, idx);
    }

    /// The oldest entry not referenced since the hand last passed it.
    pub(crate) fn victim<N: Nodes + ?Sized>(&mut self, nodes: &mut N) -> Option<u32> {
        // Each step clears a reference, so two passes always find a victim.
        for _ in 0..=2 * self.ring.len {
            let t = self.ring.tail;
            if nodes.node(t).take_hits() == 0 {
                return Some(t);
            }
            self.ring.move_to_front(nodes, t);
        }
        None
    }

    pub(crate) fn clear(&mut self) {
        self.ring.clear();
    }

    #[cfg(test)]
    pub(crate) fn linked(&self) -> usize {
        self.ring.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
