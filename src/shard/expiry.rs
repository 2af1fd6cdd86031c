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
use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
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
        self.expiring.set(idx, deadline, self.entries.len());
    }

    /// Keeps this shard's deadlines in order, publishing the earliest in
    /// `front` (`u64::MAX` when none), so that its expired entries can be
    /// found without sampling (see [`expire_due`](Self::expire_due)).
    /// Called while the shard is empty, before it is shared.
    pub(crate) fn order_deadlines(&mut self, front: Arc<AtomicU64>) {
        self.expiring.order(front);
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
    /// The same tokens in deadline order, when the cache asks for it.
    order: Option<Box<DeadlineOrder>>,
}

/// Tokens by deadline, and the earliest deadline published for other
/// shards' writers to read without this shard's lock.
#[derive(Debug)]
struct DeadlineOrder {
    by_deadline: BTreeSet<(u64, u32)>,
    /// Each token's deadline in `by_deadline` (0: none).
    of: Vec<u64>,
    front: Arc<AtomicU64>,
}

impl DeadlineOrder {
    fn first(&self) -> Option<(u64, u32)> {
        self.by_deadline.first().copied()
    }

    fn set(&mut self, idx: u32, deadline: Option<u64>) {
        let i = idx as usize;
        if self.of.len() <= i {
            self.of.resize(i + 1, 0);
        }
        // As the meta word holds it (see `meta::with_deadline`).
        let new = meta::deadline(meta::with_deadline(0, deadline)).unwrap_or(0);
        let old = std::mem::replace(&mut self.of[i], new);
        if old == new {
            return;
        }
        if old != 0 {
            self.by_deadline.remove(&(old, idx));
        }
        if new != 0 {
            self.by_deadline.insert((new, idx));
        }
        self.publish();
    }

    fn publish(&self) {
        let front = self.first().map_or(u64::MAX, |(d, _)| d);
        self.front.store(front, Ordering::Relaxed);
    }

    fn clear(&mut self) {
        self.by_deadline.clear();
        self.of.clear();
        self.publish();
    }
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

    /// Whether the tokens are also kept in deadline order.
    #[inline]
    pub(crate) fn is_ordered(&self) -> bool {
        self.order.is_some()
    }

    /// Under deadline order, the earliest deadline and its token.
    pub(crate) fn first_due(&self) -> Option<(u64, u32)> {
        self.order.as_ref().and_then(|o| o.first())
    }

    /// Whether no token has a deadline.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Keeps the tokens in deadline order from now on, publishing the
    /// earliest deadline in `front`.
    fn order(&mut self, front: Arc<AtomicU64>) {
        let order = DeadlineOrder {
            by_deadline: BTreeSet::new(),
            of: Vec::new(),
            front,
        };
        order.publish();
        self.order = Some(Box::new(order));
    }

    /// Records `idx`'s deadline (none: it cannot expire); `nodes` is the
    /// node count.
    #[inline]
    pub(crate) fn set(&mut self, idx: u32, deadline: Option<u64>, nodes: usize) {
        if deadline.is_some() || self.active() {
            self.update(idx, deadline.is_some(), nodes);
            if let Some(order) = &mut self.order {
                order.set(idx, deadline);
            }
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
        if let Some(order) = &mut self.order {
            order.clear();
        }
    }

    /// Asserts that the deadline order, if kept, holds exactly the tokens
    /// with a deadline, each at `deadline_of(token)`, and that `front`
    /// holds its earliest (for the shard's `validate`).
    #[cfg(test)]
    pub(crate) fn check_order(&self, deadline_of: impl Fn(u32) -> Option<u64>) {
        let Some(order) = &self.order else { return };
        assert_eq!(order.by_deadline.len(), self.tokens.len());
        for &(d, t) in &order.by_deadline {
            assert_eq!(deadline_of(t), Some(d), "token {t} out of deadline order");
        }
        let front = order.first().map_or(u64::MAX, |(d, _)| d);
        assert_eq!(order.front.load(Ordering::Relaxed), front);
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
        ix.set(1, Some(10), 4);
        ix.set(3, Some(10), 4);
        assert_eq!(ix.len(), 2);
        ix.set(1, None, 4);
        assert_eq!(ix.tokens(), &[3]);
        ix.on_push();
        ix.set(4, Some(10), 5);
        assert_eq!(ix.len(), 2);
        assert!(ix.sample(7).is_some());
    }

    #[test]
    fn ordered_index_publishes_the_earliest_deadline() {
        let front = Arc::new(AtomicU64::new(0));
        let mut ix = ExpiryIndex::default();
        ix.order(front.clone());
        assert_eq!(front.load(Ordering::Relaxed), u64::MAX);
        for _ in 0..4 {
            ix.on_push();
        }
        ix.set(0, Some(30), 4);
        ix.set(1, Some(10), 4);
        ix.set(2, Some(20), 4);
        assert_eq!(front.load(Ordering::Relaxed), 10);
        // A later deadline for the earliest moves the front on.
        ix.set(1, Some(40), 4);
        assert_eq!(front.load(Ordering::Relaxed), 20);
        ix.set(2, None, 4);
        assert_eq!(front.load(Ordering::Relaxed), 30);
        assert_eq!(ix.first_due(), Some((30, 0)));
        ix.clear();
        assert_eq!(front.load(Ordering::Relaxed), u64::MAX);
    }
}
