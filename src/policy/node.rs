//! Per-entry policy metadata and the intrusive lists that order it.
//!
//! Entries live in a slab addressed by `u32` tokens; policy lists link those
//! tokens, never pointers, so the slab needs no `unsafe`. Policies see the
//! slab only through [`Nodes`], which hands out an entry's [`Node`].
//!
//! This module belongs to the policy layer: the shard embeds a [`Node`] in
//! each entry and implements [`Nodes`] over its slab, so the shard calls down
//! into these types and nothing here names the shard. Owns the node, the
//! list links and the layout of the meta word (including the deadline bits the
//! shard keeps there); calls only `sync` and `prefetch`.

use crate::sync::{AtomicU64, Ordering};
use std::num::NonZeroU32;

/// The "no entry" token. Tokens are below it.
pub(crate) const NIL: u32 = u32::MAX - 1;

/// A list link: a token or [`NIL`], stored as `token + 1` so that it is never
/// zero. That niche makes `Option<Entry>` as small as `Entry`, which lets
/// the slab mark free slots at no cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link(NonZeroU32);

impl Link {
    const NONE: Self = Self(NonZeroU32::MAX);

    #[inline]
    fn new(token: u32) -> Self {
        NonZeroU32::new(token.wrapping_add(1)).map_or(Self::NONE, Self)
    }

    #[inline]
    fn get(self) -> u32 {
        self.0.get() - 1
    }
}

/// Access to the [`Node`] of each token, for policies and lists.
pub(crate) trait Nodes {
    /// The node of an occupied token.
    fn node(&self, idx: u32) -> &Node;
    /// The node of an occupied token, mutably.
    fn node_mut(&mut self, idx: u32) -> &mut Node;
    /// Whether `idx` is an occupied token.
    fn contains(&self, idx: u32) -> bool;
    /// Calls `f` on every occupied token's node.
    fn for_each_node(&self, f: &mut dyn FnMut(&Node));
    /// The hash of an occupied token's key (recomputed: hashes are not stored).
    fn hash_of(&self, idx: u32) -> u64;
    /// Starts loading the node of `idx` into the CPU cache, without reading
    /// it (see [`prefetch`](crate::prefetch::prefetch)); `idx` may be anything.
    fn prefetch(&self, idx: u32) {
        let _ = idx;
    }
}

/// The hash tests give token `i` when nodes stand alone.
#[cfg(test)]
pub(crate) fn test_hash(idx: u32) -> u64 {
    u64::from(idx).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
impl Nodes for Vec<Node> {
    fn node(&self, idx: u32) -> &Node {
        &self[idx as usize]
    }
    fn node_mut(&mut self, idx: u32) -> &mut Node {
        &mut self[idx as usize]
    }
    fn contains(&self, idx: u32) -> bool {
        (idx as usize) < self.len()
    }
    fn for_each_node(&self, f: &mut dyn FnMut(&Node)) {
        self.iter().for_each(f);
    }
    fn hash_of(&self, idx: u32) -> u64 {
        test_hash(idx)
    }
}

/// Bit layout of [`Node::meta`].
///
/// | bits   | field                                                       |
/// |--------|-------------------------------------------------------------|
/// | 0..4   | hits since the policy last looked, up to [`HitCount`]'s cap |
/// | 4..6   | which policy list the entry is on                           |
/// | 6      | TinyLFU and LRU: the entry has a birth stamp (see below)    |
/// | 7      | TinyLFU: the key came back as a rejected candidate's young  |
/// |        | ghost; admission lets it in at its next candidacy           |
/// | 8..16  | sampled policies: Redis-style logarithmic LFU counter       |
/// | 8..12  | TinyLFU: its sketch estimate at the last update (one policy |
/// |        | per cache, so the two uses of these bits never meet)        |
/// | 12..18 | TinyLFU and LRU: recency stamp of the last hit in list 0    |
/// | 18..24 | TinyLFU and LRU: recency stamp of the entry's birth there   |
/// | 16..24 | sampled policies: LFU decay time (minutes, wrapping)        |
/// | 24..64 | deadline, monotonic milliseconds; 0 = never expires         |
///
/// Readers (under a shared lock) only add to the hit count and, in list 0 of
/// TinyLFU and LRU, set the last hit's stamp, with a load and a store (see
/// [`Node::record_hit_at`]); writers hold the shard exclusively and may
/// load and store anything.
pub(crate) mod meta {
    pub(crate) const HITS_MASK: u64 = 0xF;
    pub(crate) const HITS_MAX: u64 = 15;
    const LIST_SHIFT: u32 = 4;
    const LIST_MASK: u64 = 0x3 << LIST_SHIFT;
    #[allow(dead_code)] // used by the sampled (Redis) policies
    const LFU_SHIFT: u32 = 8;
    #[allow(dead_code)]
    const LFU_MASK: u64 = 0xFFFF << LFU_SHIFT;
    const DEADLINE_SHIFT: u32 = 24;
    /// The largest deadline that fits: about 34 years of milliseconds.
    pub(crate) const DEADLINE_MAX: u64 = (1 << 40) - 1;

    #[inline]
    pub(crate) fn hits(m: u64) -> u64 {
        m & HITS_MASK
    }
    #[inline]
    pub(crate) fn with_hits(m: u64, hits: u64) -> u64 {
        (m & !HITS_MASK) | hits.min(HITS_MAX)
    }
    #[inline]
    pub(crate) fn list(m: u64) -> u8 {
        ((m & LIST_MASK) >> LIST_SHIFT) as u8
    }
    #[inline]
    pub(crate) fn with_list(m: u64, list: u8) -> u64 {
        (m & !LIST_MASK) | (u64::from(list) << LIST_SHIFT & LIST_MASK)
    }
    #[inline]
    #[allow(dead_code)]
    pub(crate) fn lfu(m: u64) -> u16 {
        ((m & LFU_MASK) >> LFU_SHIFT) as u16
    }
    #[inline]
    #[allow(dead_code)]
    pub(crate) fn with_lfu(m: u64, lfu: u16) -> u64 {
        (m & !LFU_MASK) | (u64::from(lfu) << LFU_SHIFT)
    }
    const FREQ_SHIFT: u32 = 8;
    /// The largest estimate: the sketch's counters are 4 bits.
    pub(crate) const FREQ_MAX: u64 = 0xF;
    const FREQ_MASK: u64 = FREQ_MAX << FREQ_SHIFT;
    /// TinyLFU's copy of the entry's frequency estimate, 0..=15.
    #[inline]
    pub(crate) fn freq(m: u64) -> u64 {
        (m & FREQ_MASK) >> FREQ_SHIFT
    }
    #[inline]
    pub(crate) fn with_freq(m: u64, freq: u64) -> u64 {
        (m & !FREQ_MASK) | (freq.min(FREQ_MAX) << FREQ_SHIFT)
    }
    const ACCESS_SHIFT: u32 = 12;
    const BORN_SHIFT: u32 = 18;
    /// A recency stamp's bits (see `policy::recency`).
    pub(crate) const STAMP_MASK: u64 = 0x3F;
    /// The stamp of the entry's last hit.
    #[inline]
    pub(crate) fn access(m: u64) -> u8 {
        ((m >> ACCESS_SHIFT) & STAMP_MASK) as u8
    }
    #[inline]
    pub(crate) fn with_access(m: u64, t: u8) -> u64 {
        (m & !(STAMP_MASK << ACCESS_SHIFT)) | ((u64::from(t) & STAMP_MASK) << ACCESS_SHIFT)
    }
    /// The stamp of the entry's birth: when it was linked in its list.
    #[inline]
    pub(crate) fn born(m: u64) -> u8 {
        ((m >> BORN_SHIFT) & STAMP_MASK) as u8
    }
    #[inline]
    pub(crate) fn with_born(m: u64, t: u8) -> u64 {
        (m & !(STAMP_MASK << BORN_SHIFT)) | ((u64::from(t) & STAMP_MASK) << BORN_SHIFT) | STAMPED
    }
    /// Set with a birth stamp: readers stamp the entry's hits while it is
    /// in list 0.
    const STAMPED: u64 = 1 << 6;
    /// Set on a TinyLFU window entry whose key missed while it was a young
    /// ghost of a rejected candidate; read only while it is in the window.
    const RETURNED: u64 = 1 << 7;
    /// Whether the entry's key came back as a rejected candidate's young
    /// ghost.
    #[inline]
    pub(crate) fn returned(m: u64) -> bool {
        m & RETURNED != 0
    }
    #[inline]
    pub(crate) fn with_returned(m: u64) -> u64 {
        m | RETURNED
    }
    /// Whether the entry got a birth stamp (and so its hits a stamp each).
    #[inline]
    pub(crate) fn stamped(m: u64) -> bool {
        m & STAMPED != 0
    }
    /// Whether a reader's hit on the entry takes a stamp: it got a birth
    /// stamp and is in list 0.
    #[inline]
    pub(crate) fn takes_stamp(m: u64) -> bool {
        m & (LIST_MASK | STAMPED) == STAMPED
    }
    /// The deadline in monotonic ms, or `None` for an entry that never expires.
    #[inline]
    pub(crate) fn deadline(m: u64) -> Option<u64> {
        match m >> DEADLINE_SHIFT {
            0 => None,
            d => Some(d),
        }
    }
    #[inline]
    pub(crate) fn with_deadline(m: u64, deadline: Option<u64>) -> u64 {
        let d = deadline.map_or(0, |d| d.clamp(1, DEADLINE_MAX));
        (m & ((1 << DEADLINE_SHIFT) - 1)) | (d << DEADLINE_SHIFT)
    }
}

/// One entry's policy state: its list links and its [`meta`] word.
#[derive(Debug)]
pub(crate) struct Node {
    prev: Link,
    next: Link,
    pub(crate) meta: AtomicU64,
}

impl Node {
    pub(crate) fn new(meta: u64) -> Self {
        Self {
            prev: Link::NONE,
            next: Link::NONE,
            meta: AtomicU64::new(meta),
        }
    }

    #[inline]
    pub(crate) fn prev(&self) -> u32 {
        self.prev.get()
    }

    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.next.get()
    }

    #[inline]
    fn set_links(&mut self, prev: u32, next: u32) {
        self.prev = Link::new(prev);
        self.next = Link::new(next);
    }

    /// The meta word, for a writer holding the shard exclusively.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.meta.load(Ordering::Relaxed)
    }

    /// Replaces the meta word; only for a writer holding the shard exclusively.
    #[inline]
    pub(crate) fn set(&self, m: u64) {
        self.meta.store(m, Ordering::Relaxed);
    }

    /// Records a hit from a reader: a plain store of `m` (the meta word the
    /// reader loaded) plus one, skipped when the counter already holds as
    /// many hits as the policy can use (`counts`), so an entry hit often
    /// stops dirtying its cache line. An entry in list 0 that got a birth
    /// stamp also takes the stamp `tick` gives (TinyLFU's window and LRU's
    /// list while they keep stamps; see `policy::recency`): the stamp moves
    /// once per period, so a hot entry stores at most once per period for
    /// it, and `tick` is not read for other entries.
    ///
    /// Not a compare-and-swap: readers hold the shard's shared lock, so no
    /// writer can change the word between the load and this store, and the
    /// only race is between readers, where two hits at once may count as
    /// one. The counter is a frequency hint; a locked instruction on every
    /// hit (tens of cycles, and a full barrier that keeps the core from
    /// overlapping this lookup's misses with the next one's) is not worth
    /// that count.
    #[inline]
    pub(crate) fn record_hit_at(
        &self,
        m: u64,
        counts: HitCount,
        tick: impl FnOnce() -> Option<u8>,
    ) {
        let most = counts.most(m);
        if !meta::takes_stamp(m) {
            if meta::hits(m) < most {
                self.meta.store(m + 1, Ordering::Relaxed);
            }
            return;
        }
        self.record_stamped_hit(m, most, tick());
    }

    /// [`record_hit_at`](Self::record_hit_at) for an entry that takes stamps.
    #[inline(never)]
    fn record_stamped_hit(&self, m: u64, most: u64, tick: Option<u8>) {
        let mut n = m;
        if meta::hits(m) < most {
            n += 1;
        }
        if let Some(t) = tick {
            n = meta::with_access(n, t);
        }
        if n != m {
            self.meta.store(n, Ordering::Relaxed);
        }
    }

    /// [`record_hit_at`](Self::record_hit_at) without a stamp.
    #[cfg(any(test, feature = "conformance"))]
    pub(crate) fn record_hit(&self, m: u64) {
        self.record_hit_at(m, HitCount::All, || None);
    }

    /// Takes the hit count and clears it (writer only).
    #[inline]
    pub(crate) fn take_hits(&self) -> u64 {
        let m = self.get();
        self.set(meta::with_hits(m, 0));
        meta::hits(m)
    }
}

/// How many of an entry's hits, between two looks of its policy, a hit
/// stores in its meta word: only as many as the policy can use. Each store
/// dirties the entry's cache line, and a dirty line costs again when the
/// CPU's cache later drops it: on one thread of the Zipf throughput
/// workload, TinyLFU with every hit stored up to 15 ran at 0.57 of
/// quick_cache, with [`Sketch`](Self::Sketch)'s cap at 0.62.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HitCount {
    /// Up to 15: the policy reads the count itself (the sampled policies
    /// raise their LFU counter once per hit; a custom policy gets it from
    /// `Entries::take_hits`).
    All,
    /// One: the policy asks only whether the entry was hit (CLOCK's
    /// second chance).
    One,
    /// Up to what TinyLFU's sketch can still take: the entry's counters
    /// are 4 bits, incremented conservatively, and its node keeps a copy
    /// of their estimate that never exceeds it, so at most `15 - copy`
    /// hits can raise them. At least one, which is the second chance the
    /// lists give a hit entry.
    Sketch,
}

impl HitCount {
    /// The most hits the meta word `m` should hold.
    #[inline]
    pub(crate) fn most(self, m: u64) -> u64 {
        match self {
            Self::All => meta::HITS_MAX,
            Self::One => 1,
            Self::Sketch => (meta::FREQ_MAX - meta::freq(m)).max(1),
        }
    }
}

/// A doubly linked list of tokens threaded through a `[Node]`.
///
/// Head is the most recently added end, tail the oldest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: usize,
    id: u8,
}

impl List {
    pub(crate) const fn new(id: u8) -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
            id,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id this list tags its entries with.
    pub(crate) fn id(&self) -> u8 {
        self.id
    }

    /// Links `idx` at the head and tags it with this list's id.
    #[inline]
    pub(crate) fn push_front<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        let old = self.head;
        {
            let n = nodes.node_mut(idx);
            n.set_links(NIL, old);
            n.set(meta::with_list(n.get(), self.id));
        }
        self.link_head(nodes, idx, old);
    }

    /// Links `idx` on the head side of `anchor`, which is on this list.
    pub(crate) fn insert_before<N: Nodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        anchor: u32,
        idx: u32,
    ) {
        let prev = nodes.node(anchor).prev();
        {
            let n = nodes.node_mut(idx);
            n.set_links(prev, anchor);
            n.set(meta::with_list(n.get(), self.id));
        }
        nodes.node_mut(anchor).prev = Link::new(idx);
        if prev == NIL {
            self.head = idx;
        } else {
            nodes.node_mut(prev).next = Link::new(idx);
        }
        self.len += 1;
    }

    /// Unlinks `idx`, which must be on this list.
    #[inline]
    pub(crate) fn unlink<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        let (prev, next) = {
            let n = nodes.node_mut(idx);
            let links = (n.prev(), n.next());
            n.set_links(NIL, NIL);
            links
        };
        self.bypass(nodes, prev, next);
    }

    /// Joins `prev` and `next`, the neighbours of an entry leaving this
    /// list (whose own links the caller rewrites).
    #[inline]
    fn bypass<N: Nodes + ?Sized>(&mut self, nodes: &mut N, prev: u32, next: u32) {
        if prev == NIL {
            self.head = next;
        } else {
            nodes.node_mut(prev).next = Link::new(next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            nodes.node_mut(next).prev = Link::new(prev);
        }
        self.len -= 1;
    }

    /// Makes `idx`, whose links already point at `old` (this list's head
    /// before it), the head.
    #[inline]
    fn link_head<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32, old: u32) {
        if old == NIL {
            self.tail = idx;
        } else {
            nodes.node_mut(old).prev = Link::new(idx);
        }
        self.head = idx;
        self.len += 1;
    }

    /// Moves `idx` from this list to the head of `to`, reading and writing
    /// its node once.
    pub(crate) fn move_to<N: Nodes + ?Sized>(&mut self, to: &mut List, nodes: &mut N, idx: u32) {
        let old = to.head;
        let (prev, next) = {
            let n = nodes.node_mut(idx);
            let links = (n.prev(), n.next());
            n.set_links(NIL, old);
            n.set(meta::with_list(n.get(), to.id));
            links
        };
        // Two lists: `prev` and `next` are not `old`.
        self.bypass(nodes, prev, next);
        to.link_head(nodes, idx, old);
    }

    /// Moves `idx` (on this list) to this list's head.
    pub(crate) fn move_to_front<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        let old = self.head;
        if old == idx {
            return;
        }
        let (prev, next) = {
            let n = nodes.node_mut(idx);
            let links = (n.prev(), n.next());
            n.set_links(NIL, old);
            links
        };
        // Not the head, so `prev` is an entry and the head stays `old`.
        self.bypass(nodes, prev, next);
        self.link_head(nodes, idx, old);
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::new(self.id);
    }

    /// Tokens from tail (oldest) to head, for tests and validation.
    #[cfg(test)]
    pub(crate) fn tokens(&self, nodes: &[Node]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = self.tail;
        while cur != NIL {
            out.push(cur);
            cur = nodes[cur as usize].prev();
        }
        out
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
