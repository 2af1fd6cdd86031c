//! The window share of the default policy, tuned per miss by ghosts of the
//! keys each segment evicted (as ARC tunes its split between recency and
//! frequency).
//!
//! Each shard remembers, by hash fingerprint only, keys that recently left
//! the cache and where they left from: the *window* (a candidate that lost
//! admission, or the window's own eviction when it is the whole cache) or
//! *main* (a victim of probation). A miss on a key still remembered says
//! which segment, had it been larger, would have hit:
//!
//! * a window ghost: the window grows by one entry, or by the ratio of the
//!   two ghosts' populations when the main ghosts outnumber the window ones;
//! * a main ghost: the window shrinks likewise.
//!
//! While the cache is new the steps are larger: 32 times when the shard
//! first evicts, halving every turnover of its capacity
//! ([`EARLY_SHIFT`]), since where the window starts is a guess.
//!
//! The shards of one cache steer one share ([`CommonShare`]): keys are
//! spread over them by hash, so each shard's ghosts sample the same
//! workload, and each counted ghost moves the cache's share by its shard's
//! step divided by the number of shards. The share then moves as fast as
//! one shard's would, and wanders as the mean of the shards' walks does:
//! with a share per shard, the 64 shards of a 100k-entry cache on the LRU
//! stack model spread from about 0.5 to 0.999 through the run.
//!
//! Scaling by the population ratio (ARC's rule) makes the window settle
//! where both ghosts hit equally often per remembered key, i.e. where one
//! more entry is worth as much to either segment.
//!
//! A ghost counts only while fewer keys moved ahead of it, in its segment's
//! order, than the shard holds: a cache of this size given wholly to that
//! segment could have kept the key that long, and one that comes back later
//! would have been missed whatever the split. Both kinds of ghost are
//! weighed over this same reach, so that their counts compare like with
//! like: what the keys each segment let go were worth over one capacity of
//! its own turnover. (A reach that shrinks as the segment grows, such as
//! the room left outside it, biases the split toward the middle: the larger
//! segment's ghosts are judged over the shorter span.) Each segment
//! measures ages with a *hand*, which steps once per key that moved ahead
//! of its ghosts in the segment's order:
//!
//! * window ghosts: the window evicts its oldest, so every window key is
//!   already ahead; what moves a ghost back is each new key (any eviction)
//!   and each main key hit since (main's keys are older than the window's
//!   until hit).
//! * main ghosts: what moves one back is each main eviction and each main
//!   key hit since.
//!
//! Main keys found hit are counted when the policy folds their hits into
//! the sketch, which sees a key at most once per hit, so a hand runs at
//! most as fast as the keys that moved ahead. A loop longer than the cache,
//! whose keys come back only after every other key went ahead of them once,
//! moves the window neither way; a workload whose keys return after less
//! than a cache of others (an LRU stack) grows whichever segment keeps them.
//!
//! Every decision uses the current miss; nothing compares hit ratios of
//! different periods, so a workload's phase changes do not steer it.
//!
//! The same ghosts also judge admission. Every eviction is a decision, and
//! a ghost's return is its cost: a window ghost is a candidate admission
//! rejected, a main ghost a key main let go (a victim a candidate displaced,
//! or main's own eviction). While a key main let go has lately been more
//! likely to come back than a rejected one (per ghost of each kind, over
//! about as many returns as the table has slots), admission asks a
//! candidate for one count more than its victim
//! ([`Window::strict_admission`]). A candidate's count includes the request
//! that made it a candidate, so among keys of equal frequency (a loop) it
//! leads by one every victim not yet asked for again in the same round,
//! and each such admission swaps a key about to hit for one that will not
//! hit for a whole round; the displaced keys then come back first.
//!
//! A window ghost that counts also names its key: a candidate rejected so
//! lately that an LRU cache of this size would still hold it.
//! [`Window::on_miss`] says so, and the policy admits that key at its next
//! candidacy without asking the sketch (see
//! [`TinyLfu`](super::tinylfu::TinyLfu)).

use crate::sync::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where the window starts, as a share of the cache: small, since a loop or
/// a scan never hits window entries; recency-heavy workloads grow it within
/// a few turnovers of the cache.
const INITIAL_WINDOW: f64 = 0.005;
/// Ghost slots per entry of capacity (rounded up to a power of two). A new
/// ghost overwrites whatever its slot held, so a ghost lasts about as many
/// evictions as there are slots. The window moves on the two ghosts' hits
/// per remembered key, which a sample of the recent evictions estimates as
/// well as all of them would: half the capacity is that sample.
const GHOST_SLOTS_PER_ENTRY: f64 = 0.5;
/// Entries the window moves per ghost hit (before ARC's ratio): one, as in
/// ARC, so that crossing the whole range takes about a cache's worth of
/// ghost hits, and single hits do not swing it.
const STEP_ENTRIES: f64 = 1.0;
/// How far back a ghost counts, in steps of its segment's hand, as a share
/// of the shard's capacity: 1 is exactly "a cache of this size, all of it
/// given to the segment, could have kept the key". Longer, and a loop
/// somewhat longer than the cache would move the window; shorter, and the
/// ghosts of a segment that holds most of the cache stop counting keys
/// that it would still have held.
const GHOST_REACH: f64 = 1.0;
/// How much larger the window's steps are while the cache is new, as a
/// power of two: 2^5 = 32 times when the shard first evicts, halving every
/// turnover of its capacity in misses, so ordinary steps after five
/// turnovers. [`INITIAL_WINDOW`] is a guess, not a measurement: at one
/// entry per counted ghost the window needs about a capacity of net
/// counted ghosts to cross the cache, 10 to 20 turnovers at the rates the
/// LRU stack model gives, and a large cache may serve its workload for
/// fewer turnovers than that. Over the first five turnovers the larger
/// steps add up to about 46 turnovers' worth of ordinary ones (32 / ln 2).
/// 16 left the stack model at 100k entries 1.1 points below LRU instead of
/// 0.7; the larger steps cost Zipf at 10k and 100k entries up to 0.6 of
/// their lead.
const EARLY_SHIFT: u32 = 5;
/// How many ghost returns the admission test remembers, in slots of the
/// ghost table: when the two counts together reach this many, both halve.
/// A ghost lives about as many evictions as there are slots, so at 1 the
/// test weighs about the returns of one generation of ghosts: long enough
/// that a few returns do not flip it, short enough to follow a phase.
const RETURNS_SPAN: f64 = 1.0;
/// Bits of a ghost's fingerprint: a miss on a key never evicted matches an
/// occupied slot with probability 2^-15.
const FINGERPRINT_BITS: u32 = 15;
const FINGERPRINT_MASK: u32 = (1 << FINGERPRINT_BITS) - 1;
/// Bits of a ghost's stamp (the hand when it was made); with the stamp's
/// unit it spans [`STAMP_SPAN`] times the capacity.
const STAMP_BITS: u32 = 16;
const STAMP_MASK: u32 = (1 << STAMP_BITS) - 1;
/// The stamps' span, in capacities of hand steps. An age past the span wraps
/// and reads young, so the span must outlast the ghosts: a ghost survives
/// `k` later ghosts with probability `(1 - 1 / slots)^k`, about `e^(-2k /
/// capacity)`, and the hand steps at most `1 + hits / misses` times per
/// ghost (a ghost per eviction, a step per fold of a hit entry). At 64
/// capacities a ghost outlives the span with probability about `e^-10` at
/// 92 % hits and `e^-2.6` at 98 %, where the few such ghosts that read young would
/// barely move a window that the scarce misses hardly use. The unit is then
/// 1/1024 of the capacity.
const STAMP_SPAN: u64 = 64;
/// One in fixed point: shares are in 1/2^32 of the cache.
const ONE: u64 = 1 << 32;

/// The segment a key left the cache from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// The window: a candidate that lost admission, or the window's own
    /// eviction when main is empty.
    Window = 0,
    /// Main: a probation victim.
    Main = 1,
}

/// Hash fingerprints of recently evicted keys, one direct-mapped table for
/// both segments: a slot holds the segment (1 bit), a fingerprint
/// ([`FINGERPRINT_BITS`]) and the hand when the key left ([`STAMP_BITS`], in
/// units of `1 << shift`). A new ghost overwrites
/// whatever its slot held, so a ghost lasts about as many evictions as there
/// are slots. Memory: 4 bytes a slot, fixed at construction.
#[derive(Debug)]
pub(crate) struct Ghosts {
    slots: Vec<u32>,
    mask: u64,
    /// Occupied slots per segment.
    population: [u64; 2],
    /// Per segment, the keys that moved ahead of its ghosts (see the module
    /// docs): window, every eviction and main key found hit; main, main's
    /// evictions and main keys found hit.
    hands: [u64; 2],
    shift: u32,
}

impl Ghosts {
    /// Ghosts for a shard of `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        let n = ((capacity as f64 * GHOST_SLOTS_PER_ENTRY) as usize)
            .max(16)
            .next_power_of_two();
        let span = (capacity.max(1) as u64 * STAMP_SPAN)
            .next_power_of_two()
            .trailing_zeros();
        Self {
            slots: vec![0; n],
            mask: n as u64 - 1,
            population: [0; 2],
            hands: [0; 2],
            shift: span.saturating_sub(STAMP_BITS),
        }
    }

    /// The slot of `hash` and its fingerprint (never 0, which marks a free
    /// slot). Bits apart from those the table and sketch index by.
    #[inline]
    fn locate(&self, hash: u64) -> (usize, u32) {
        let h = hash.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let slot = ((h >> 32) & self.mask) as usize;
        let fp = ((h >> 16) as u32 & FINGERPRINT_MASK).max(1);
        (slot, fp)
    }

    /// Starts loading the slot of `hash`.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        let (i, _) = self.locate(hash);
        crate::prefetch::prefetch(self.slots.as_ptr().wrapping_add(i));
    }

    fn stamp(&self, from: Left) -> u32 {
        (self.hands[from as usize] >> self.shift) as u32 & STAMP_MASK
    }

    /// Steps both hands for a main key found hit.
    #[inline]
    pub(crate) fn pass(&mut self) {
        self.hands[0] += 1;
        self.hands[1] += 1;
    }

    /// Remembers that the key hashed `hash` left from `from`.
    #[inline]
    pub(crate) fn record(&mut self, hash: u64, from: Left) {
        let (i, fp) = self.locate(hash);
        if let Some(old) = self.slots.get(i).copied() {
            if old != 0 {
                self.population[(old >> 31) as usize] -= 1;
            }
            let stamp = self.stamp(from);
            self.slots[i] = (from as u32) << 31 | fp << STAMP_BITS | stamp;
            self.population[from as usize] += 1;
            self.hands[Left::Window as usize] += 1;
            if from == Left::Main {
                self.hands[Left::Main as usize] += 1;
            }
        }
    }

    /// Forgets the key hashed `hash` and says where it left from and how
    /// far that segment's hand moved since, if it is remembered.
    pub(crate) fn take(&mut self, hash: u64) -> Option<(Left, u64)> {
        let (i, fp) = self.locate(hash);
        let old = self.slots.get(i).copied()?;
        if old == 0 || (old >> STAMP_BITS) & FINGERPRINT_MASK != fp {
            return None;
        }
        self.slots[i] = 0;
        let from = if old >> 31 == 0 {
            Left::Window
        } else {
            Left::Main
        };
        self.population[from as usize] -= 1;
        let age = self.stamp(from).wrapping_sub(old & STAMP_MASK) & STAMP_MASK;
        Some((from, u64::from(age) << self.shift))
    }

    /// Remembered keys per segment: window, main.
    pub(crate) fn population(&self) -> [u64; 2] {
        self.population
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        // A fresh zeroed allocation, not a fill: a shard that never filled
        // never wrote most of its slots, and a fill would make every page
        // of them resident.
        self.slots = vec![0; self.slots.len()];
        self.population = [0; 2];
        self.hands = [0; 2];
    }
}

/// The window share of a whole cache, which every shard's ghosts steer.
///
/// Keys are spread over the shards by hash, so every shard sees the same
/// workload and its ghosts are a sample of the same signal; one share moved
/// by all of them, each counted ghost by its shard's step divided by the
/// number of shards, moves as fast as one shard's would and wanders as the
/// average of the shards' walks does.
#[derive(Debug)]
pub(crate) struct CommonShare {
    share: AtomicU64,
    shards: u64,
}

impl CommonShare {
    /// A share for a cache of `shards` shards, at [`INITIAL_WINDOW`].
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            share: AtomicU64::new((ONE as f64 * INITIAL_WINDOW) as u64),
            shards: (shards as u64).max(1),
        }
    }

    /// The number of shards that steer it.
    pub(crate) fn shards(&self) -> usize {
        usize::try_from(self.shards).unwrap_or(usize::MAX)
    }

    fn get(&self) -> u64 {
        self.share.load(Ordering::Relaxed)
    }

    fn set(&self, share: u64) {
        self.share.store(share, Ordering::Relaxed);
    }

    /// Moves the share up (or down) by `step / shards`, within `0..=top`;
    /// returns the new share.
    fn step(&self, step: u64, up: bool, top: u64) -> u64 {
        let step = (step / self.shards).max(1);
        let next = |s: u64| {
            if up {
                s.saturating_add(step).min(top)
            } else {
                s.saturating_sub(step)
            }
        };
        match self
            .share
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(next(s)))
        {
            Ok(s) | Err(s) => next(s),
        }
    }
}

/// One shard's window share (its copy of the cache's) and the ghosts that
/// tune it.
#[derive(Debug)]
pub(crate) struct Window {
    ghosts: Ghosts,
    /// The cache's share, when the shards steer one together (`share` is
    /// then this shard's copy of it, refreshed at every miss).
    common: Option<Arc<CommonShare>>,
    /// The window's share of the shard, in 1/2^32.
    share: u64,
    /// [`STEP_ENTRIES`] entries as a share.
    step: u64,
    /// [`GHOST_REACH`] in steps of a hand.
    reach: u64,
    /// Ghosts found per segment (window, main), both halved whenever their
    /// sum reaches `returns_limit`: the recent costs of rejecting and of
    /// letting go.
    returns: [u64; 2],
    /// [`RETURNS_SPAN`] in returns.
    returns_limit: u64,
    /// The shard's capacity (one turnover, in misses).
    capacity: u64,
    /// [`top`](Self::top) and [`early_end`](Self::early_end), fixed by the
    /// capacity: every miss reads both, and computing them there (a
    /// division and a checked multiplication) cost about 13 instructions
    /// per insert.
    top: u64,
    early_end: u64,
    /// Misses since the shard first evicted, counted up to
    /// [`EARLY_SHIFT`] turnovers (then the steps are ordinary).
    early: u64,
}

impl Window {
    /// The window of a shard of `capacity` entries that steers a share of
    /// its own.
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_common(capacity, None)
    }

    /// The window of a shard of `capacity` entries whose ghosts steer
    /// `common`, the share of all of its cache's shards.
    pub(crate) fn with_common(capacity: usize, common: Option<Arc<CommonShare>>) -> Self {
        let capacity = capacity.max(1);
        let ghosts = Ghosts::new(capacity);
        let returns_limit = ((ghosts.slots.len() as f64 * RETURNS_SPAN) as u64).max(2);
        let mut window = Self {
            ghosts,
            common,
            share: 0,
            step: ((ONE as f64 * STEP_ENTRIES / capacity as f64) as u64).max(1),
            reach: (capacity as f64 * GHOST_REACH) as u64,
            returns: [0; 2],
            returns_limit,
            capacity: capacity as u64,
            top: ONE.saturating_sub(ONE / capacity as u64),
            early_end: (capacity as u64).saturating_mul(u64::from(EARLY_SHIFT)),
            early: 0,
        };
        window.share = window.initial_share();
        if let Some(c) = &window.common {
            window.share = c.get().min(window.top());
        }
        window
    }

    /// [`INITIAL_WINDOW`] as a share, within [`top`](Self::top) (none, in a
    /// shard of one entry).
    fn initial_share(&self) -> u64 {
        ((ONE as f64 * INITIAL_WINDOW) as u64).min(self.top())
    }

    /// Whether admission should ask a candidate for a count more than its
    /// victim: a displaced key (main ghost) has lately been more likely to
    /// come back than a rejected one (window ghost), per ghost of each kind.
    #[inline]
    pub(crate) fn strict_admission(&self) -> bool {
        let [w, m] = self.ghosts.population();
        self.returns[1] * w.max(1) > self.returns[0] * m.max(1)
    }

    /// The window's size when the shard holds `len` entries: at least 1,
    /// and at most `len - 2`, so that main keeps an entry through an
    /// eviction (which happens with one entry over the capacity, and may
    /// take main's). The share alone cannot promise that: at the top share
    /// `len × share` rounds to `len - 1` for some shard sizes past 2^16
    /// entries (100,000 is one).
    #[inline]
    pub(crate) fn max(&self, len: usize) -> usize {
        let share = ((len as u64).saturating_mul(self.share) >> 32) as usize;
        share.min(len.saturating_sub(2)).max(1)
    }

    /// The window's share of the shard.
    pub(crate) fn share(&self) -> f64 {
        self.share as f64 / ONE as f64
    }

    /// Sets the share (a share saved before a restart; tests of the lists
    /// under a fixed window). Clamped to 0 ..= [`top`](Self::top).
    pub(crate) fn set(&mut self, share: f64) {
        self.share = ((share.clamp(0.0, 1.0) * ONE as f64) as u64).min(self.top());
        if let Some(c) = &self.common {
            c.set(self.share);
        }
        // A saved share is a measurement, not a guess: ordinary steps.
        self.early = self.early_end();
    }

    /// Where the early steps end: [`EARLY_SHIFT`] turnovers.
    #[inline]
    fn early_end(&self) -> u64 {
        self.early_end
    }

    /// The step (before the ghosts' ratio): [`STEP_ENTRIES`], times
    /// 2^[`EARLY_SHIFT`] when the shard first evicted, halving every
    /// turnover since.
    fn base_step(&self) -> u64 {
        if self.early >= self.early_end() {
            return self.step;
        }
        let turnovers = self.early as f64 / self.capacity as f64;
        let boost = (f64::from(1u32 << EARLY_SHIFT) * (-turnovers).exp2()).max(1.0);
        (self.step as f64 * boost) as u64
    }

    /// The largest share: the whole shard but one entry. A window of the
    /// whole shard would leave main empty; an empty main evicts nothing, so
    /// it leaves no main ghosts, and nothing would ever shrink the window
    /// again, whatever the workload turned into. One entry of main keeps
    /// main ghosts coming once frequent keys return ([`max`](Self::max)
    /// keeps it through evictions). One entry, not one step: the step is a
    /// rate, not a size.
    #[inline]
    fn top(&self) -> u64 {
        self.top
    }

    /// Starts loading the ghost slot a miss on `hash` will look at.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        self.ghosts.prefetch(hash);
    }

    /// Remembers that the key hashed `hash` was evicted from `from`.
    #[inline]
    pub(crate) fn evicted(&mut self, hash: u64, from: Left) {
        self.ghosts.record(hash, from);
    }

    /// A main entry was found hit (its hits folded into the sketch): a key
    /// gone ahead of every ghost in recency.
    #[inline]
    pub(crate) fn main_hit_seen(&mut self) {
        self.ghosts.pass();
    }

    /// A miss on the key hashed `hash`: moves the window if the key is a
    /// ghost young enough to count. Returns whether it is such a ghost of
    /// the window: a candidate rejected so lately that a cache of this
    /// size, all of it LRU, would still hold it (see
    /// [`TinyLfu`](super::tinylfu::TinyLfu), which admits it next time).
    pub(crate) fn on_miss(&mut self, hash: u64) -> bool {
        // Early turnovers count from the first eviction (the window's hand
        // steps at every one): filling the cache teaches the ghosts nothing.
        if self.early < self.early_end() && self.ghosts.hands[0] > 0 {
            self.early += 1;
        }
        if let Some(c) = &self.common {
            self.share = c.get().min(self.top());
        }
        let Some((from, age)) = self.ghosts.take(hash) else {
            return false;
        };
        self.returns[from as usize] += 1;
        if self.returns[0] + self.returns[1] >= self.returns_limit {
            self.returns = self.returns.map(|r| r / 2);
        }
        if age >= self.reach {
            return false;
        }
        let [w, m] = self.ghosts.population();
        let base = self.base_step();
        let (step, up) = match from {
            Left::Window => (base.saturating_mul((m / w.max(1)).max(1)), true),
            Left::Main => (base.saturating_mul((w / m.max(1)).max(1)), false),
        };
        self.share = match &self.common {
            Some(c) => c.step(step, up, self.top()),
            None if up => self.share.saturating_add(step).min(self.top()),
            None => self.share.saturating_sub(step),
        };
        from == Left::Window
    }

    /// Forgets the ghosts and restarts from the initial share.
    pub(crate) fn clear(&mut self) {
        self.ghosts.clear();
        self.returns = [0; 2];
        self.share = self.initial_share();
        if let Some(c) = &self.common {
            c.set(self.share);
        }
        self.early = 0;
    }

    /// A window past its early turnovers: ordinary steps from the start.
    #[cfg(test)]
    pub(crate) fn settled(capacity: usize) -> Self {
        let mut w = Self::new(capacity);
        w.settle();
        w
    }

    /// Ends the early turnovers: ordinary steps from now on.
    #[cfg(test)]
    pub(crate) fn settle(&mut self) {
        self.early = self.early_end();
    }
}

#[cfg(test)]
#[path = "ghost_tests.rs"]
mod tests;
