//! Adaptive W-TinyLFU over lazily ordered segments: the default policy.
//!
//! Three lists, as in Caffeine: a recency *window* where new entries land, and a
//! *main* area split into *probation* and *protected*. Caffeine keeps them in
//! exact LRU order by relinking on every hit, which needs a lock per read;
//! here a hit only writes the node's meta word (its hit counter and, in the
//! window, the stamp of the hit), and the lists are ordered lazily when the
//! policy next looks at an entry:
//!
//! * window overflow: the oldest window entry becomes the *candidate* for main
//!   unless it was hit there; a hit one goes back among the entries that came
//!   in when it was last hit, so the window keeps LRU's order to within a
//!   sixteenth of its length (see [`recency`](super::recency)) instead of
//!   CLOCK's second chance of a whole lap;
//! * main's *victim* is probation's oldest entry; if it was hit since it got
//!   there it is promoted to protected instead, and protected's overflow is
//!   demoted back to probation (again with a second chance);
//! * candidate vs. victim: the frequency sketch decides; the candidate enters
//!   main only if it was asked for more often (ties keep the incumbent, which is
//!   what makes scans harmless). While the keys main let go come back more
//!   often than the candidates it rejected (the ghosts count both), a lead of
//!   one count is a tie too: that is what a loop's candidates have over
//!   every key of the same round still to come;
//! * a rejected candidate asked for again while its ghost is young (fewer
//!   keys went ahead of it than the cache holds, the reach over which the
//!   window's ghosts count) is admitted at its next candidacy without the
//!   test, as 2Q admits a key found in its ghost queue: an LRU cache of
//!   this size would still have held it, so rejecting it cost a hit, and a
//!   sketch that only counts would reject a key of a new working set again
//!   until its count caught up with the old set's. A loop longer than the
//!   cache comes back too late to count, and a scan never comes back.
//!
//! The sketch counts every miss (an insert) and, when the policy clears an
//! entry's hit counter, the hits it saw; so it sees (nearly) all accesses with
//! no write to shared state on the read path.

use super::ghost::{CommonShare, Left, Window};
use super::recency::Recency;
use super::saved::Saved;
use super::sketch::Sketch;
use crate::policy::node::{meta, List, Nodes, NIL};
use std::sync::Arc;

const WINDOW: u8 = 0;
const PROBATION: u8 = 1;
const PROTECTED: u8 = 2;

/// The largest estimate the sketch gives.
const FREQ_MAX: u64 = 15;
/// Share of main reserved for entries hit at least twice, in fifths (80 %).
const PROTECTED_FIFTHS: usize = 4;

/// Candidates at least this frequent get a 1-in-128 chance against a more
/// frequent victim, so an attacker cannot pin a victim by flooding the sketch.
const ADMIT_HASHDOS_THRESHOLD: u64 = 6;
/// Victims at least this frequent are displaced only by a candidate at least
/// two counts more frequent. Frequent keys' counts saturate at 15, and right
/// after a halving a candidate counted once since (8) beats a victim whose
/// last hit was folded before it (7): on a loop every admission is then a
/// wasted swap. Below 6 the margin holds only while the ghosts say
/// displacing costs more than rejecting
/// ([`Window::strict_admission`](super::ghost::Window::strict_admission)):
/// always, it would hold back Zipf workloads' rising keys.
const ADMIT_MARGIN_FROM: u64 = 6;

#[derive(Debug)]
pub(crate) struct TinyLfu {
    window: List,
    probation: List,
    protected: List,
    sketch: Sketch,
    rng: u64,
    /// The entry linked by the insert in progress, and its key's hash, until
    /// its first access is counted (see [`count_insert`](Self::count_insert)).
    pending: Option<(u32, u64)>,
    /// The window's share, tuned by ghosts of evicted keys.
    share: Window,
    /// The key hashes of up to two linked tokens (or [`NIL`]): the list
    /// tails [`prefetch_next`](Self::prefetch_next) hashed, which the next
    /// eviction looks at first, so that it need not hash them again. A
    /// token is forgotten when it is removed ([`on_remove`](Self::on_remove)):
    /// its slot may then hold another key.
    known: [(u32, u64); 2],
    /// The window's order between hits (see [`recency`](super::recency)).
    recency: Recency,
}

impl TinyLfu {
    /// The policy of a shard of `capacity` entries that steers a window
    /// share of its own.
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_common(capacity, None)
    }

    /// The policy of one shard of a cache whose shards steer one window
    /// share, `common` (see [`CommonShare`]).
    pub(crate) fn with_common(capacity: usize, common: Option<Arc<CommonShare>>) -> Self {
        let shards = common.as_ref().map_or(1, |c| c.shards());
        Self {
            window: List::new(WINDOW),
            probation: List::new(PROBATION),
            protected: List::new(PROTECTED),
            sketch: Sketch::for_shards(capacity, shards),
            rng: 0x2545_F491_4F6C_DD1D,
            pending: None,
            share: Window::with_common(capacity, common),
            known: [(NIL, 0); 2],
            recency: Recency::new(),
        }
    }

    /// The window's share of the shard (saved with a log rewrite).
    pub(crate) fn window_share(&self) -> f64 {
        self.share.share()
    }

    /// Starts from window share `w`, saved before a restart.
    pub(crate) fn set_window_share(&mut self, w: f64) {
        self.share.set(w);
    }

    fn list(&mut self, id: u8) -> &mut List {
        match id {
            WINDOW => &mut self.window,
            PROBATION => &mut self.probation,
            _ => &mut self.protected,
        }
    }

    fn len(&self) -> usize {
        self.window.len + self.probation.len + self.protected.len
    }

    /// The hash of linked token `idx`'s key: remembered, or computed.
    #[inline]
    fn hash_of<N: Nodes + ?Sized>(&self, nodes: &N, idx: u32) -> u64 {
        match self.known {
            [(t, h), _] | [_, (t, h)] if t == idx => h,
            _ => nodes.hash_of(idx),
        }
    }

    #[inline]
    fn window_max(&self) -> usize {
        self.share.max(self.len())
    }

    #[inline]
    fn protected_max(&self) -> usize {
        let main = self.len() - self.window_max().min(self.len());
        main * PROTECTED_FIFTHS / 5
    }

    /// Links a new entry, whose key hashes to `hash`, at the head of the
    /// window, and moves the window's share if the key is the ghost of a
    /// recent eviction; marks it for admission if it is a rejected
    /// candidate's young ghost. Its first access is counted by
    /// [`count_insert`](Self::count_insert), or earlier if the policy needs
    /// it first.
    pub(crate) fn on_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32, hash: u64) {
        self.count_insert(nodes);
        self.sketch.fit(self.len() + 1);
        let returned = self.share.on_miss(hash);
        self.window.push_front(nodes, idx);
        if returned {
            let n = nodes.node(idx);
            n.set(meta::with_returned(n.get()));
        }
        self.stamp_head(nodes, idx);
        self.pending = Some((idx, hash));
    }

    /// Counts the new entry's first access in the sketch, if nothing counted
    /// it yet. The shard calls this after the eviction the insert caused:
    /// the key's sketch block was prefetched when its lookup missed, and the
    /// eviction's work gives that load time to land. Every decision stays
    /// what it was with the count first: the entry is counted before
    /// admission looks at it (when every other window entry was hit, it is
    /// the candidate in its own insert) and before it leaves. Only the
    /// order of its increment among the others of the same insert changes.
    pub(crate) fn count_insert<N: Nodes + ?Sized>(&mut self, nodes: &mut N) {
        if let Some((idx, hash)) = self.pending.take() {
            self.record(nodes, idx, Some(hash), 1);
        }
    }

    /// Counts `idx`'s first access now if it is the entry whose count is
    /// still deferred: the policy is about to compare it or let it go.
    ///
    /// The check is inlined and the count is not (it is rarely due): as a
    /// call, the check cost about 9 instructions each time, and an
    /// eviction makes two on average.
    #[inline(always)]
    fn count_if_pending<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        if matches!(self.pending, Some((p, _)) if p == idx) {
            self.count_pending(nodes);
        }
    }

    /// [`count_insert`](Self::count_insert), out of line.
    #[cold]
    #[inline(never)]
    fn count_pending<N: Nodes + ?Sized>(&mut self, nodes: &mut N) {
        self.count_insert(nodes);
    }

    /// Unlinks a removed entry (and forgets its remembered hash).
    ///
    /// Inlined into the insert's eviction: as a call, about 13 instructions
    /// more per insert.
    #[inline]
    pub(crate) fn on_remove<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        self.count_if_pending(nodes, idx);
        for known in &mut self.known {
            if known.0 == idx {
                known.0 = NIL;
            }
        }
        let id = meta::list(nodes.node(idx).get());
        if id == WINDOW {
            self.recency.unmark(nodes, idx);
        }
        self.list(id).unlink(nodes, idx);
    }

    /// Adds `by` accesses of `idx` (whose key hashes to `hash`, if known) to the
    /// sketch and keeps the new estimate in its node; ages every node's hit
    /// counter and estimate when the sketch halves its counters.
    ///
    /// Admission takes the candidate's estimate from this copy, saving a
    /// sketch block (a cache miss) per eviction: the candidate was recorded
    /// when it entered the small window, so its copy is fresh. The victim's
    /// estimate is read from the sketch: it has sat in probation longest, and
    /// other keys' increments colliding on its counters since then matter.
    /// Comparing two copies (no sketch read at all) cost 0.5 points on Zipf
    /// at 1k entries and 1.3-1.8 on the loop at 100k.
    ///
    /// An entry whose copy already reads 15 skips its block: the copy never
    /// exceeds the sketch's estimate (both halve together, and other keys'
    /// increments only raise the sketch), so its counters are all at 15 and
    /// the increment could not change them. Hot entries are folded over and
    /// over as the policy sweeps protected: on the Zipf throughput workload
    /// about a quarter of the folds that carry hits skip their block.
    #[inline]
    fn record<N: Nodes + ?Sized>(&mut self, nodes: &N, idx: u32, hash: Option<u64>, by: u64) {
        let node = nodes.node(idx);
        let m = node.get();
        let counted = if meta::freq(m) == FREQ_MAX {
            self.sketch.increment_saturated(by)
        } else {
            let hash = hash.unwrap_or_else(|| self.hash_of(nodes, idx));
            self.sketch.increment(hash, by)
        };
        if !counted.halved {
            node.set(meta::with_freq(m, counted.estimate));
            return;
        }
        nodes.for_each_node(&mut |n| {
            let m = n.get();
            // Hit counters are rounded up: a node hit once keeps its
            // second chance (and the hit still reaches the sketch when
            // folded). The estimate copy halves exactly as the sketch does.
            let h = meta::hits(m);
            let m = meta::with_hits(m, h - h / 2);
            n.set(meta::with_freq(m, meta::freq(m) / 2));
        });
        node.set(meta::with_freq(node.get(), counted.estimate));
    }

    /// Clears `idx`'s hit counter into the sketch; returns whether it was hit.
    ///
    /// The policy folds list tails; the node behind one is the next tail
    /// and is written when this one is unlinked, so its load starts here,
    /// to overlap the sketch update.
    fn fold<N: Nodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) -> bool {
        let node = nodes.node(idx);
        nodes.prefetch(node.prev());
        let m = node.get();
        let hits = meta::hits(m);
        if hits == 0 {
            return false;
        }
        node.set(meta::with_hits(m, 0));
        if meta::list(m) != WINDOW {
            self.share.main_hit_seen();
        }
        self.record(nodes, idx, None, hits);
        true
    }

    /// Moves window overflow into probation without evicting (the cache has room).
    pub(crate) fn maintain<N: Nodes + ?Sized>(&mut self, nodes: &mut N) {
        while self.window.len > self.window_max() {
            let t = self.window_candidate(nodes);
            self.window_to_probation(nodes, t);
        }
    }

    /// Moves the window entry `t` to probation's head, forgetting it as
    /// its period's newest window entry first.
    #[inline(always)]
    fn window_to_probation<N: Nodes + ?Sized>(&mut self, nodes: &mut N, t: u32) {
        self.recency.unmark(nodes, t);
        self.window.move_to(&mut self.probation, nodes, t);
    }

    /// The stamp readers write into a window entry they hit (see
    /// [`recency`](super::recency)).
    #[inline]
    pub(crate) fn tick(&self) -> u8 {
        self.recency.tick()
    }

    /// Counts an arrival at the window's head: `idx`, just linked there.
    #[inline(always)]
    fn stamp_head<N: Nodes + ?Sized>(&mut self, nodes: &N, idx: u32) {
        let len = self.len();
        let share = &self.share;
        self.recency
            .stamp_head(nodes, &self.window, || share.max(len), idx);
    }

    /// The window's oldest entry not hit since it was last looked at, or
    /// hit longer ago than every other entry came in (see
    /// [`recency`](super::recency)); hit ones are put back on the way.
    #[inline(always)]
    fn window_candidate<N: Nodes + ?Sized>(&mut self, nodes: &mut N) -> u32 {
        loop {
            let t = self.window.tail;
            let m = nodes.node(t).get();
            if !self.fold(nodes, t) {
                self.count_if_pending(nodes, t);
                return t;
            }
            let len = self.len();
            let share = &self.share;
            if !self
                .recency
                .put_back_hit(nodes, &mut self.window, || share.max(len), t, m)
            {
                self.count_if_pending(nodes, t);
                return t;
            }
        }
    }

    /// Probation's oldest entry not hit since it got there; hit ones are
    /// promoted on the way. `None` when main is empty.
    ///
    /// Always inlined into the victim choice, as `window_candidate` is
    /// (a plain `#[inline]` was not taken): 16 and 22 instructions fewer
    /// per insert than the calls.
    fn main_victim<N: Nodes + ?Sized>(&mut self, nodes: &mut N) -> Option<u32> {
        loop {
            if self.probation.is_empty() {
                if self.protected.is_empty() {
                    return None;
                }
                let p = self.protected.tail;
                self.protected.move_to(&mut self.probation, nodes, p);
                continue;
            }
            let v = self.probation.tail;
            if !self.fold(nodes, v) {
                return Some(v);
            }
            self.probation.move_to(&mut self.protected, nodes, v);
            self.shrink_protected(nodes);
        }
    }

    fn shrink_protected<N: Nodes + ?Sized>(&mut self, nodes: &mut N) {
        let max = self.protected_max();
        while self.protected.len > max {
            let p = self.protected.tail;
            if self.fold(nodes, p) {
                self.protected.move_to_front(nodes, p);
            } else {
                self.protected.move_to(&mut self.probation, nodes, p);
            }
        }
    }

    /// The next entry to evict: the loser of candidate vs. victim when the
    /// window overflows, otherwise main's victim. Remembers its key's hash
    /// as a ghost of the segment it leaves from.
    ///
    /// A window more than one entry over its size (its share shrank) first
    /// hands its oldest entries to probation, as Caffeine does: otherwise it
    /// would shrink only when a candidate is admitted, and on a workload
    /// where admission rejects every candidate (a loop) it would never
    /// shrink.
    pub(crate) fn victim<N: Nodes + ?Sized>(&mut self, nodes: &mut N) -> Option<u32> {
        self.victim_hashed(nodes).map(|(v, _)| v)
    }

    /// [`victim`](Self::victim) and its key's hash.
    pub(crate) fn victim_hashed<N: Nodes + ?Sized>(&mut self, nodes: &mut N) -> Option<(u32, u64)> {
        while self.window.len > self.window_max() + 1 {
            let t = self.window_candidate(nodes);
            self.window_to_probation(nodes, t);
        }
        if self.window.len > self.window_max() {
            let candidate = self.window_candidate(nodes);
            let Some(victim) = self.main_victim(nodes) else {
                return Some(self.evict(nodes, candidate, Left::Window));
            };
            let m = nodes.node(candidate).get();
            let victim_hash = self.hash_of(nodes, victim);
            if meta::returned(m) || self.admit(meta::freq(m), self.sketch.frequency(victim_hash)) {
                self.window_to_probation(nodes, candidate);
                self.share.evicted(victim_hash, Left::Main);
                return Some((victim, victim_hash));
            }
            return Some(self.evict(nodes, candidate, Left::Window));
        }
        if let Some(v) = self.main_victim(nodes) {
            return Some(self.evict(nodes, v, Left::Main));
        }
        // Everything is window (a share of 1, or main emptied): CLOCK over
        // the window, second chances included, which is what makes a
        // window of the whole cache behave like LRU.
        let c = (!self.window.is_empty()).then(|| self.window_candidate(nodes))?;
        Some(self.evict(nodes, c, Left::Window))
    }

    /// Names `idx` the victim: remembers its key's hash as a ghost of the
    /// segment it leaves from, and returns both.
    #[inline]
    fn evict<N: Nodes + ?Sized>(&mut self, nodes: &N, idx: u32, from: Left) -> (u32, u64) {
        let hash = self.hash_of(nodes, idx);
        self.share.evicted(hash, from);
        (idx, hash)
    }

    /// Whether a candidate of estimated frequency `c` displaces a victim of
    /// frequency `v`.
    fn admit(&mut self, c: u64, v: u64) -> bool {
        // A lead of two admits; a lead of one only below the margin's
        // threshold and while admission is not strict (asked last: most
        // comparisons are decided before it).
        if c > v + 1 || (c == v + 1 && v < ADMIT_MARGIN_FROM && !self.share.strict_admission()) {
            return true;
        }
        if c >= ADMIT_HASHDOS_THRESHOLD {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            return self.rng & 127 == 0;
        }
        false
    }

    /// Starts loading what an insert of the key hashed `hash` reads first:
    /// its sketch block and its ghost slot (the slot's load otherwise
    /// stalls the insert; sampled with `perf`, the ghost lookup's share of
    /// a one-thread Zipf run fell from about 5 % to 2 % with it).
    #[inline]
    pub(crate) fn prefetch_key(&self, hash: u64) {
        self.sketch.prefetch(hash);
        self.share.prefetch(hash);
    }

    /// Starts loading what the next eviction in this shard will read first,
    /// called right after an eviction, when the window and probation tails
    /// are in the CPU cache (this eviction just relinked or read them):
    /// the nodes behind those tails (the next eviction unlinks the tails,
    /// which writes them), the protected tail, and the sketch block of the
    /// likely next victim, probation's tail. Returns the hashes of that
    /// victim and of the next candidate, for the caller to prefetch their
    /// table slots.
    #[inline]
    pub(crate) fn prefetch_next<N: Nodes + ?Sized>(&mut self, nodes: &N) -> [Option<u64>; 2] {
        for list in [&self.window, &self.probation] {
            if list.tail != NIL {
                nodes.prefetch(nodes.node(list.tail).prev());
            }
        }
        nodes.prefetch(self.protected.tail);
        let (victim, candidate) = (self.probation.tail, self.window.tail);
        let victim_hash = (victim != NIL).then(|| {
            let hash = self.hash_of(nodes, victim);
            self.sketch.prefetch(hash);
            hash
        });
        // The next candidate: it is usually rejected and removed, which
        // probes the table for it.
        let candidate_hash = (candidate != NIL).then(|| self.hash_of(nodes, candidate));
        self.known = [
            (victim, victim_hash.unwrap_or(0)),
            (candidate, candidate_hash.unwrap_or(0)),
        ];
        [victim_hash, candidate_hash]
    }

    /// The sketch's estimate for the key hashed `hash`, 0..=15.
    pub(crate) fn frequency(&self, hash: u64) -> u64 {
        self.sketch.frequency(hash)
    }

    /// Restores what a log rewrite saved, `(hash, packed)` per key (see
    /// `persist::summary`: an estimate, the segment its entry was in and
    /// its hits not yet folded). Each linked entry with a saved segment is
    /// moved to that segment, ordered by its saved estimate (the least
    /// frequent at the tail, where victims are taken), and gets its hits
    /// back; entries with none (written after the rewrite) go to the head of
    /// their own list.
    ///
    /// The saved estimates are not written into the sketch: they cover only
    /// the keys that were resident, not the counts of keys evicted before
    /// the rewrite, and raising the residents alone made admission refuse
    /// returning keys (measured in `docs/persistence.md`).
    pub(crate) fn restore<N: Nodes + ?Sized>(&mut self, nodes: &mut N, saved: &[(u64, u8)]) {
        self.count_insert(nodes);
        let by_hash: std::collections::HashMap<u64, Saved> = saved
            .iter()
            .map(|&(hash, packed)| (hash, Saved::unpack(packed)))
            .collect();
        // (segment, unsaved, saved estimate, idx): the saved sort before the
        // others, so they end up nearer the tail.
        let mut linked = Vec::with_capacity(self.len());
        for id in [WINDOW, PROBATION, PROTECTED] {
            let mut idx = self.list(id).tail;
            while idx != NIL {
                let node = nodes.node(idx);
                let prev = node.prev();
                let entry = match by_hash.get(&nodes.hash_of(idx)) {
                    Some(s) if s.segment <= PROTECTED => {
                        let node = nodes.node(idx);
                        node.set(meta::with_hits(node.get(), u64::from(s.hits)));
                        (s.segment, 0, s.estimate, idx)
                    }
                    _ => (id, 1, 0, idx),
                };
                linked.push(entry);
                idx = prev;
            }
        }
        // Stable: the unsaved keep their order (tail first).
        linked.sort_by_key(|&(seg, unsaved, estimate, _)| (seg, unsaved, estimate));
        self.window.clear();
        self.recency.clear();
        self.probation.clear();
        self.protected.clear();
        for (seg, _, _, idx) in linked {
            self.list(seg).push_front(nodes, idx);
            if seg == WINDOW {
                self.stamp_head(nodes, idx);
            }
        }
    }

    /// Checks the window's links and marks.
    #[cfg(test)]
    pub(crate) fn check_marks<N: Nodes + ?Sized>(&self, nodes: &N) {
        self.recency.check(nodes, &self.window);
    }

    pub(crate) fn clear(&mut self) {
        self.pending = None;
        self.known = [(NIL, 0); 2];
        self.window.clear();
        self.recency.clear();
        self.probation.clear();
        self.protected.clear();
        self.sketch.clear();
        self.share.clear();
    }

    #[cfg(test)]
    pub(crate) fn linked(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
#[path = "tinylfu_tests.rs"]
mod tests;
