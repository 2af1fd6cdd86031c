//! A list's recency order between hits (TinyLFU's window, `Policy::lru()`'s
//! list; "the window" below), kept at the grain of a *stamp period*.
//!
//! A hit only writes the entry's own meta word, so the window cannot be
//! relinked on every hit as an LRU list is. Plain CLOCK puts a hit tail back
//! at the head, however long ago its hit was: an entry hit once just after
//! it came in then stays for a second whole lap, where LRU would have let it
//! go with the entries of its time. On a workload where recency is all
//! there is (an LRU stack) that cost about half a point of hit ratio.
//!
//! Here time is counted in arrivals at the window (inserts, and hit entries
//! put back), in periods of `window / GROUPS` arrivals, so a lap of the
//! window is about [`GROUPS`] periods. The current period's number, the
//! *stamp* (6 bits, wrapping), goes into an entry's meta word when it is
//! linked (its birth) and, written by readers, at each hit (its last
//! access). The window stays ordered by birth, and for each period the
//! newest entry born in it is *marked*. A hit tail last hit in period `a`
//! is relinked just head-side of the mark of `a` (or of the latest period
//! before it that has one) and counts as born in that period: the order
//! stays LRU's, to a period. When no entry is that old, every other entry
//! came in after the tail's last hit: the tail is the least recently used
//! and is the window's candidate, hit or not.
//!
//! Stamps wrap every 64 periods; a period more than 32 back is too old to
//! place and its entry is the candidate. Below `2 * GROUPS` entries a period
//! would be a single arrival: the window is then plain CLOCK, the stamp
//! stands still (so readers write no stamp), and the marks are not kept.
//! When stamping starts, every entry in the window counts as born in the
//! current period; an entry not yet stamped (born while the window was
//! small) gets CLOCK's second chance when it reaches the tail after a hit,
//! and a stamp with it.

use crate::policy::node::{meta, List, Nodes, NIL};

/// Stamp periods per lap of the window. A tail is placed to within one
/// period, `1 / GROUPS` of the window; the price is a mark per period and
/// a period of at least two arrivals, so the window keeps stamps from
/// `2 * GROUPS` entries.
pub(super) const GROUPS: usize = 16;
/// Stamps in the ring (the meta word's 6 bits).
const RING: usize = meta::STAMP_MASK as usize + 1;

/// The stamp clock and the marks of one window.
#[derive(Debug)]
pub(super) struct Recency {
    /// The current period's stamp.
    tick: u8,
    /// Arrivals left in the current period.
    until_tick: u32,
    /// Per stamp, the window's newest entry born then, or `NIL`.
    marks: Box<[u32; RING]>,
    /// Whether the window is large enough to keep stamps and marks.
    stamping: bool,
}

impl Recency {
    pub(super) fn new() -> Self {
        Self {
            tick: 0,
            until_tick: 1,
            marks: Box::new([NIL; RING]),
            stamping: false,
        }
    }

    /// The stamp readers write into a window entry they hit.
    #[inline]
    pub(super) fn tick(&self) -> u8 {
        self.tick
    }

    /// Whether the window keeps stamps (else it is plain CLOCK).
    #[cfg(test)]
    pub(super) fn stamping(&self) -> bool {
        self.stamping
    }

    /// Counts one arrival at the window (an insert or a hit entry put
    /// back); `window_max` is the window's size.
    #[inline(always)]
    pub(super) fn arrive<N: Nodes + ?Sized>(
        &mut self,
        nodes: &N,
        window: &List,
        window_max: impl FnOnce() -> usize,
    ) {
        if self.until_tick > 1 {
            self.until_tick -= 1;
        } else {
            self.next_period(nodes, window, window_max());
        }
    }

    /// Ends a period: starts or stops stamping as the window's size asks,
    /// else advances the stamp.
    #[cold]
    fn next_period<N: Nodes + ?Sized>(&mut self, nodes: &N, window: &List, max: usize) {
        if max < 2 * GROUPS {
            self.stamping = false;
            self.until_tick = GROUPS as u32;
            return;
        }
        if !self.stamping {
            // Every entry already in the window counts as born now.
            self.stamping = true;
            self.marks.fill(NIL);
            if window.head != NIL {
                let n = nodes.node(window.head);
                n.set(meta::with_born(n.get(), self.tick));
                self.marks[self.tick as usize] = window.head;
            }
        } else {
            self.tick = (self.tick + 1) & meta::STAMP_MASK as u8;
            self.marks[self.tick as usize] = NIL;
        }
        self.until_tick = u32::try_from(max / GROUPS).unwrap_or(u32::MAX);
    }

    /// Forgets `idx` as its period's newest entry; called before it leaves
    /// the window or moves in it.
    #[inline(always)]
    pub(super) fn unmark<N: Nodes + ?Sized>(&mut self, nodes: &N, idx: u32) {
        if !self.stamping {
            return;
        }
        let n = nodes.node(idx);
        let g = meta::born(n.get()) as usize;
        if self.marks[g] == idx {
            // The next newest of the period is the tail-side neighbour.
            let nx = n.next();
            self.marks[g] = if nx != NIL && meta::born(nodes.node(nx).get()) as usize == g {
                nx
            } else {
                NIL
            };
        }
    }

    /// Stamps `idx`, just linked at the window's head, as born now.
    #[inline(always)]
    pub(super) fn stamp_head<N: Nodes + ?Sized>(
        &mut self,
        nodes: &N,
        window: &List,
        window_max: impl FnOnce() -> usize,
        idx: u32,
    ) {
        self.arrive(nodes, window, window_max);
        if self.stamping {
            let n = nodes.node(idx);
            n.set(meta::with_born(n.get(), self.tick));
            self.marks[self.tick as usize] = idx;
        }
    }

    /// Puts back the list's tail `t`, which was hit (`m` is its meta word
    /// as loaded before its hits were folded): to the head while the list
    /// keeps no stamp for it (CLOCK's second chance), else among the
    /// entries of its last hit's period. Returns false, leaving `t` where
    /// it is, when every other entry came in after `t`'s last hit: `t` is
    /// the least recently used.
    #[inline(always)]
    pub(super) fn put_back_hit<N: Nodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        list: &mut List,
        list_max: impl Fn() -> usize + Copy,
        t: u32,
        m: u64,
    ) -> bool {
        if !self.stamping || !meta::stamped(m) || meta::access(m) == self.tick {
            self.unmark(nodes, t);
            list.move_to_front(nodes, t);
            self.stamp_head(nodes, list, list_max, t);
            return true;
        }
        self.put_back(nodes, list, list_max, t, meta::access(m))
    }

    /// Relinks the hit tail `t`, last hit in period `a`, just head-side of
    /// the newest entry born in `a` or the latest period before it. Returns
    /// false, leaving `t` where it is, when there is none.
    #[inline(never)]
    fn put_back<N: Nodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        window: &mut List,
        window_max: impl FnOnce() -> usize,
        t: u32,
        a: u8,
    ) -> bool {
        self.unmark(nodes, t);
        let mask = meta::STAMP_MASK as u8;
        let mut g = a;
        let anchor = loop {
            if self.tick.wrapping_sub(g) & mask > mask / 2 {
                return false;
            }
            let mk = self.marks[g as usize];
            if mk != NIL && mk != t {
                break mk;
            }
            g = g.wrapping_sub(1) & mask;
        };
        debug_assert_eq!(meta::list(nodes.node(anchor).get()), window.id());
        window.unlink(nodes, t);
        window.insert_before(nodes, anchor, t);
        let n = nodes.node(t);
        n.set(meta::with_born(n.get(), g));
        self.marks[g as usize] = t;
        self.arrive(nodes, window, window_max);
        true
    }

    /// Forgets every mark (the window was emptied or rebuilt).
    pub(super) fn clear(&mut self) {
        self.marks.fill(NIL);
        self.stamping = false;
        self.until_tick = 1;
    }

    /// Checks that `window`'s links hold `window.len` entries and that each
    /// mark is a window entry born in its period.
    #[cfg(test)]
    pub(super) fn check<N: Nodes + ?Sized>(&self, nodes: &N, window: &List) {
        let mut members = std::collections::HashSet::new();
        let mut idx = window.head;
        while idx != NIL {
            assert!(members.insert(idx), "the window's links loop at {idx}");
            idx = nodes.node(idx).next();
        }
        assert_eq!(members.len(), window.len);
        if self.stamping {
            for (g, &mk) in self.marks.iter().enumerate() {
                if mk != NIL {
                    assert!(members.contains(&mk), "mark {g} is {mk}, not in the window");
                    assert_eq!(meta::born(nodes.node(mk).get()) as usize, g);
                }
            }
        }
    }
}
