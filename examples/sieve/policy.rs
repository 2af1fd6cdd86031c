//! SIEVE (Zhang et al., NSDI 2024) as a shardcache eviction policy, written
//! from outside the crate against its public `EvictionPolicy` trait.
//!
//! Entries sit in one FIFO queue, newest at the head. A hit marks an entry
//! visited (here: the cache's own hit counter, read with `take_hits`). To
//! evict, a hand walks from where it stopped last toward the head, clearing
//! visited marks, and evicts the first entry that was not visited; at the
//! head it starts again at the tail. Entries never move in the queue.

use shardcache::{Entries, EvictionPolicy};

const NONE: u32 = u32::MAX;

/// SIEVE's state for one shard: a doubly linked queue threaded through two
/// vectors indexed by token, and the hand.
#[derive(Debug)]
pub(crate) struct Sieve {
    /// Toward the tail (older entries).
    older: Vec<u32>,
    /// Toward the head (newer entries).
    newer: Vec<u32>,
    head: u32,
    tail: u32,
    hand: u32,
    len: usize,
}

impl Default for Sieve {
    fn default() -> Self {
        Self {
            older: Vec::new(),
            newer: Vec::new(),
            head: NONE,
            tail: NONE,
            hand: NONE,
            len: 0,
        }
    }
}

impl Sieve {
    fn slot(&mut self, token: u32) -> usize {
        let i = token as usize;
        if i >= self.older.len() {
            self.older.resize(i + 1, NONE);
            self.newer.resize(i + 1, NONE);
        }
        i
    }
}

impl EvictionPolicy for Sieve {
    fn on_insert(&mut self, _: &mut Entries<'_>, token: u32, _hash: u64) {
        let i = self.slot(token);
        self.newer[i] = NONE;
        self.older[i] = self.head;
        match self.head {
            NONE => self.tail = token,
            h => self.newer[h as usize] = token,
        }
        self.head = token;
        self.len += 1;
    }

    fn on_remove(&mut self, _: &mut Entries<'_>, token: u32) {
        let i = self.slot(token);
        let (older, newer) = (self.older[i], self.newer[i]);
        if self.hand == token {
            self.hand = newer;
        }
        match older {
            NONE => self.tail = newer,
            o => self.newer[o as usize] = newer,
        }
        match newer {
            NONE => self.head = older,
            n => self.older[n as usize] = older,
        }
        self.older[i] = NONE;
        self.newer[i] = NONE;
        self.len -= 1;
    }

    fn victim(&mut self, entries: &mut Entries<'_>) -> Option<u32> {
        let mut at = if self.hand == NONE {
            self.tail
        } else {
            self.hand
        };
        // One pass clears every mark, so a second always finds a victim.
        for _ in 0..=2 * self.len {
            if at == NONE {
                at = self.tail;
                continue;
            }
            if entries.take_hits(at) == 0 {
                self.hand = at;
                return Some(at);
            }
            at = self.newer[at as usize];
        }
        None
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}
