//! Time-to-live, time-to-idle, and how expired entries leave.
//!
//! Deadlines are monotonic milliseconds in each entry's meta word; a read
//! compares against the clock only when the entry has one, and an expired entry
//! is a miss at once. Memory comes back Redis-style, without scanning the cache:
//! every write samples a few entries that can expire (those with a deadline, or
//! all of them under time-to-idle) and removes the expired ones, repeating while
//! more than a quarter of a sample was expired.
//!
//! Owns the index of entries that can expire and the conversions from a
//! `Duration` to deadline milliseconds; calls nothing above the shard.

use super::{Env, Shard};
use crate::policy::node::{meta, NIL};
use crate::sync::Ordering;
use std::time::Duration;

impl<K: std::hash::Hash + Eq, V> Shard<K, V> {
    /// Counts a write to an existing entry as an access (and, under
    /// time-to-idle, stamps it).
    pub(super) fn touch<S>(&mut self, idx: u32, env: &Env<'_, K, V, S>) {
        let node = &self.entry(idx).node;
        let m = node.get();
        node.record_hit_at(m, env.hits, || self.policy.read_tick());
        if env.tti.is_some() {
            self.idle[idx as usize].store(env.now_ceil(), Ordering::Relaxed);
        }
    }

    /// Gives entry `idx` `deadline` (none: it never expires).
    pub(super) fn set_deadline(&mut self, idx: u32, deadline: Option<u64>) {
        let node = &self.entry(idx).node;
        node.set(meta::with_deadline(node.get(), deadline));
        self.expiring
            .set(idx, deadline.is_some(), self.entries.len());
    }
}

/// Converts a TTL to whole milliseconds, rounding up so an entry never expires early.
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    let ms = ttl.as_millis();
    let ms = if Duration::from_millis(ms as u64) < ttl {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The deadline of an entry inserted at `now` with `ttl`.
pub(crate) fn deadline_after(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(ttl_ms(ttl))
}

/// Whether a deadline has passed at `now` (an entry lives for `[insert, deadline)`).
#[inline]
pub(crate) fn is_expired(deadline: u64, now: u64) -> bool {
    now >= deadline
}

/// The dense set of tokens that can expire, for sampling.
///
/// `pos[token]` is the token's place in `tokens`, or [`NIL`]. Both vectors stay
/// empty until the first entry with a deadline arrives, so a cache without TTLs
/// pays nothing for them.
#[derive(Debug, Default)]
pub(crate) struct ExpiryIndex {
    tokens: Vec<u32>,
    pos: Vec<u32>,
}

impl ExpiryIndex {
    fn active(&self) -> bool {
        !self.pos.is_empty()
    }

    /// A node was pushed at the end of the node vector.
    pub(crate) fn on_push(&mut self) {
        if self.active() {
            self.pos.push(NIL);
        }
    }

    /// Whether no token has a deadline.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Records whether `idx` has a deadline; `nodes` is the node count.
    #[inline]
    pub(crate) fn set(&mut self, idx: u32, has_deadline: bool, nodes: usize) {
        if has_deadline || self.active() {
            self.update(idx, has_deadline, nodes);
        }
    }

    fn update(&mut self, idx: u32, has_deadline: bool, nodes: usize) {
        if !self.active() {
            self.pos = vec![NIL; nodes];
        }
        let p = self.pos[idx as usize];
        match (has_deadline, p == NIL) {
            (true, true) => {
                self.pos[idx as usize] = self.tokens.len() as u32;
                self.tokens.push(idx);
            }
            (false, false) => {
                self.tokens.swap_remove(p as usize);
                if let Some(&moved) = self.tokens.get(p as usize) {
                    self.pos[moved as usize] = p;
                }
                self.pos[idx as usize] = NIL;
            }
            _ => {}
        }
    }

    /// A random token with a deadline, if any; `r` is a random number.
    pub(crate) fn sample(&self, r: u64) -> Option<u32> {
        if self.tokens.is_empty() {
            return None;
        }
        Some(self.tokens[(r % self.tokens.len() as u64) as usize])
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
    }

    /// Every token with a deadline.
    pub(crate) fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(5)), 5);
        assert_eq!(deadline_after(10, Duration::from_millis(5)), 15);
        assert!(!is_expired(15, 14));
        assert!(is_expired(15, 15));
    }

    #[test]
    fn index_tracks_membership() {
        let mut ix = ExpiryIndex::default();
        for _ in 0..4 {
            ix.on_push();
        }
        ix.set(1, true, 4);
        ix.set(3, true, 4);
        assert_eq!(ix.len(), 2);
        ix.set(1, false, 4);
        assert_eq!(ix.tokens(), &[3]);
        ix.on_push();
        ix.set(4, true, 5);
        assert_eq!(ix.len(), 2);
        assert!(ix.sample(7).is_some());
    }
}
