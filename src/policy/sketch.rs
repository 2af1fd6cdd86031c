//! A count-min sketch of 4-bit counters with periodic halving (TinyLFU's
//! frequency estimate).
//!
//! Four rows, each counter 4 bits, sixteen counters to a `u64`. An item's four
//! counters sit in one 64-byte block picked by its hash, one counter per row.
//! Increments are conservative (only counters at the current minimum rise),
//! which keeps estimates tight. After `40 × capacity` additions every counter is
//! halved, so the sketch forgets old popularity and follows a shifting workload.
//!
//! The table is sized for the entries the shard holds, not for its capacity:
//! it starts small and doubles as the shard fills, up to the capacity's size.
//! A cache built with a capacity far above what it will hold (a billion
//! entries for a hundred thousand, say) so costs the counters its entries
//! need, not the capacity's (gigabytes once a halving or a stream of new keys
//! has touched every page). A doubling copies each block into both of its
//! halves, so every key's estimate is the same after it as before.

const SEEDS: [u64; 2] = [0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F];
const MAX: u64 = 15;
/// Additions between halvings, per entry of capacity. Caffeine uses 10 on
/// every access; ours are misses plus folded hits, fewer per request, so the
/// period is longer for the same memory of the past (and each halving, which
/// briefly favours what was asked for since, churns a loop less often).
const SAMPLE_FACTOR: u64 = 40;
/// The smallest table, in words (16 KiB): below it a small shard's counters
/// collide enough to blur the frequencies admission compares. Shards of 2048
/// entries or more are unaffected.
const MIN_WORDS: usize = 2048;
/// The words all of one cache's sketches start with together, at most: a
/// sketch of the [`MIN_WORDS`] floor in each of 1,024 shards (the most a
/// default shard count gives), 16 MiB. With more shards each starts smaller
/// and grows with its entries: at 65,536 shards the floor alone was a GiB
/// before the first insert.
const UPFRONT_WORDS: usize = MIN_WORDS << 10;

/// What [`Sketch::increment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    /// The item's estimated frequency after the increment, 0..=15.
    pub(crate) estimate: u64,
    /// Whether every counter was halved (the sample period ended).
    pub(crate) halved: bool,
}

/// A frequency sketch; not generic, it sees hashes only.
#[derive(Debug)]
pub(crate) struct Sketch {
    /// The counters, with seven spare words so that the blocks can start on
    /// a 64-byte boundary. A `Vec<u64>` is only 8-byte aligned, and a block
    /// that straddles two lines costs two misses (cachegrind counted about
    /// 1.2 misses per lookup before). Not a `Vec` of an aligned block type:
    /// `vec![0u64; n]` comes zeroed from the allocator, so the pages of a
    /// large sketch cost nothing until used, while a block type would be
    /// written out in full at every build.
    table: Vec<u64>,
    /// Index of the first word of block 0.
    offset: usize,
    mask: u64,
    additions: u64,
    sample: u64,
    /// The words the table holds now (a power of two, at least 8).
    words: usize,
    /// The words it grows to at most: the capacity's size.
    full: usize,
    /// The entries past which it grows: `words`, or `usize::MAX` once full.
    grows_past: usize,
    /// The words it starts with, and goes back to at a clear.
    least: usize,
}

impl Sketch {
    /// A sketch sized for a cache of about `capacity` entries; 0 for a
    /// cache that never evicts (it never asks the sketch), which gets the
    /// smallest table, one block.
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::for_shards(capacity, 1)
    }

    /// A sketch for one of `shards` shards of about `capacity` entries
    /// each. It starts at the [`MIN_WORDS`] floor (or its full size, if
    /// smaller) while the shards' floors fit in [`UPFRONT_WORDS`], and at
    /// their share of it past that, so that a cache's sketches cost at most
    /// that much before the entries come; each grows with its shard's
    /// entries as [`fit`](Self::fit) says.
    pub(crate) fn for_shards(capacity: usize, shards: usize) -> Self {
        // One word (sixteen counters) per entry of capacity, rounded up to a
        // power of two, as Caffeine sizes its sketch; in blocks of eight
        // words. At least MIN_WORDS: smaller sketches collide so much that
        // admission gets noisy (the halving period holds 40 × capacity
        // additions, on a long-tailed trace mostly distinct keys). So every
        // shard from 2048 entries up has 16 to 32 counters per entry; eight
        // per entry with a floor twice this one gave a shard of 1562 entries
        // (a cache of 100k in 64 shards) 42 and one of 15,625 (1M) 8, and
        // measured within 0.26 points of this sizing on every cell of the
        // suite, OLTP and P12, with 10 bytes per entry more at 100k.
        let full = match capacity {
            0 => 8,
            c => c.max(16).next_power_of_two().max(MIN_WORDS),
        };
        // A power of two of at least one block, as every size is.
        let share = (UPFRONT_WORDS / shards.max(1)).max(8);
        let least = MIN_WORDS.min(full).min(1 << share.ilog2());
        let (table, offset) = Self::zeroed(least);
        let mut sketch = Self {
            offset,
            table,
            mask: 0,
            additions: 0,
            sample: SAMPLE_FACTOR * capacity.max(16) as u64,
            words: 0,
            full,
            grows_past: 0,
            least,
        };
        sketch.sized(least);
        sketch
    }

    /// Records that the table now holds `words` words.
    fn sized(&mut self, words: usize) {
        self.words = words;
        self.mask = (words / 8) as u64 - 1;
        self.grows_past = if words < self.full { words } else { usize::MAX };
    }

    /// A zeroed table of `words` counters' words, and the offset of its
    /// first 64-byte block.
    fn zeroed(words: usize) -> (Vec<u64>, usize) {
        let table = vec![0; words + 7];
        let misalign = (table.as_ptr() as usize / 8) % 8;
        (table, (8 - misalign) % 8)
    }

    /// Grows the table, if it is not yet at its full size, so that it holds
    /// a word for each of `entries` entries (the sizing rule of
    /// [`new`](Self::new)). One compare when nothing is to be done.
    #[inline]
    pub(crate) fn fit(&mut self, entries: usize) {
        if entries > self.grows_past {
            self.grow(entries);
        }
    }

    /// Doubles the table until it holds `entries` words or its full size.
    /// Block `b` of the old table, of `n` blocks, becomes blocks `b`,
    /// `b + n`, `b + 2n`, … of the new one: a hash's block index gains
    /// higher bits, and its counters' positions in the block do not depend
    /// on the size, so every estimate is unchanged (and with it the copies
    /// the entries keep).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, entries: usize) {
        let words = entries
            .checked_next_power_of_two()
            .map_or(self.full, |w| w.min(self.full));
        let (mut table, offset) = Self::zeroed(words);
        let old = &self.table[self.offset..self.offset + self.words];
        for copy in table[offset..offset + words].chunks_exact_mut(self.words) {
            copy.copy_from_slice(old);
        }
        self.table = table;
        self.offset = offset;
        self.sized(words);
    }

    /// Bytes held by the counters.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words * 8
    }

    /// The index of the first of the eight words (one 64-byte block) that
    /// hold all four of `hash`'s counters, so an update touches one cache
    /// line instead of four.
    #[inline]
    fn block(&self, hash: u64) -> usize {
        self.offset + ((hash.wrapping_mul(SEEDS[0]) >> 32) & self.mask) as usize * 8
    }

    /// The bit position (`64 × word + shift`), within `hash`'s block, of
    /// its counter in each row: row `i` uses words `2i` and `2i + 1`.
    #[inline]
    fn positions(hash: u64) -> [u32; 4] {
        let h = hash.wrapping_mul(SEEDS[1]);
        let pos = |row: u32| {
            let counter = (h >> (row * 8)) as u32;
            (row * 2 + (counter & 1)) * 64 + ((counter >> 1) & 15) * 4
        };
        [pos(0), pos(1), pos(2), pos(3)]
    }

    /// The block of `hash`: one bounds check, and the word indices below 8
    /// need none.
    #[inline]
    fn block_of(&self, hash: u64) -> &[u64; 8] {
        let b = self.block(hash);
        match self.table[b..b + 8].try_into() {
            Ok(block) => block,
            Err(_) => unreachable!("a block is eight words"),
        }
    }

    /// The block of `hash`, mutably.
    #[inline]
    fn block_mut(&mut self, hash: u64) -> &mut [u64; 8] {
        let b = self.block(hash);
        match (&mut self.table[b..b + 8]).try_into() {
            Ok(block) => block,
            Err(_) => unreachable!("a block is eight words"),
        }
    }

    /// The counter at bit position `p` of `block`.
    #[inline]
    fn counter(block: &[u64; 8], p: u32) -> u64 {
        (block[(p / 64 % 8) as usize] >> (p % 64)) & MAX
    }

    /// The smallest of the counters at `positions` in `block`: the estimate.
    #[inline]
    fn estimate(block: &[u64; 8], positions: [u32; 4]) -> u64 {
        let [p0, p1, p2, p3] = positions;
        let c0 = Self::counter(block, p0).min(Self::counter(block, p1));
        c0.min(Self::counter(block, p2).min(Self::counter(block, p3)))
    }

    /// Starts loading `hash`'s block into the CPU cache.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        crate::prefetch::prefetch(self.table.as_ptr().wrapping_add(self.block(hash)));
    }

    /// The estimated frequency of `hash`, 0..=15.
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u64 {
        Self::estimate(self.block_of(hash), Self::positions(hash))
    }

    /// Adds `by` occurrences of `hash`; returns its new estimate and whether
    /// this addition halved every counter (the caller ages its own state too).
    ///
    /// Straight-line code on one `[u64; 8]` block. Each counter below the
    /// target gets the difference added in place (the sum is the target, at
    /// most 15, so nothing carries into the next counter) and the others get
    /// 0 added: no branch and no mask per counter. The halving, once per
    /// sample period, is out of line.
    #[inline]
    pub(crate) fn increment(&mut self, hash: u64, by: u64) -> Counted {
        let positions = Self::positions(hash);
        let block = self.block_mut(hash);
        let min = Self::estimate(block, positions);
        if by == 0 {
            return Counted {
                estimate: min,
                halved: false,
            };
        }
        let target = (min + by).min(MAX);
        for p in positions {
            let word = &mut block[(p / 64 % 8) as usize];
            let c = (*word >> (p % 64)) & MAX;
            *word += target.saturating_sub(c) << (p % 64);
        }
        // Conservative update: every counter is now at least `target` and
        // the smallest is exactly that, so `target` is the new estimate.
        self.count(by, target)
    }

    /// Adds `by` occurrences of an item whose estimate is known to be 15
    /// already: its counters cannot change, so only the additions that pace
    /// the halving are counted, without touching (and missing the cache on)
    /// its block. Returns what [`increment`](Self::increment) would.
    #[inline]
    pub(crate) fn increment_saturated(&mut self, by: u64) -> Counted {
        self.count(by, MAX)
    }

    #[inline]
    fn count(&mut self, by: u64, estimate: u64) -> Counted {
        self.additions += by;
        if self.additions >= self.sample {
            self.halve();
            return Counted {
                estimate: estimate >> 1,
                halved: true,
            };
        }
        Counted {
            estimate,
            halved: false,
        }
    }

    #[cold]
    #[inline(never)]
    fn halve(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.additions /= 2;
    }

    /// Forgets every count and goes back to the table it started with: the
    /// cache is empty again, and grows it back as it fills.
    pub(crate) fn clear(&mut self) {
        (self.table, self.offset) = Self::zeroed(self.least);
        self.sized(self.least);
        self.additions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(i)
    }

    #[test]
    fn counts_and_saturates() {
        let mut s = Sketch::new(1024);
        for i in 1..=5 {
            let c = s.increment(h(1), 1);
            assert_eq!(c.estimate, i, "the estimate returned is the new one");
        }
        assert_eq!(s.frequency(h(1)), 5);
        assert_eq!(s.increment(h(1), 100).estimate, 15);
        assert_eq!(s.frequency(h(1)), 15);
        for i in 0..64 {
            let word = &s.table[s.block(h(i))];
            assert_eq!(
                word as *const u64 as usize % 64,
                0,
                "block not line-aligned"
            );
        }
        assert_eq!(s.frequency(h(2)), 0);
    }

    #[test]
    fn estimates_are_tight_for_hot_items() {
        let mut s = Sketch::new(4096);
        for i in 0..4096 {
            s.increment(h(i), 1);
        }
        for _ in 0..10 {
            s.increment(h(7), 1);
        }
        assert!(s.frequency(h(7)) >= 10);
        let over: u64 = (10_000..11_000).map(|i| s.frequency(h(i))).sum();
        assert!(over < 300, "too many collisions: {over}");
    }

    #[test]
    fn saturated_increment_matches_increment() {
        let mut a = Sketch::new(64);
        let mut b = Sketch::new(64);
        for s in [&mut a, &mut b] {
            s.increment(h(9), 20);
        }
        for i in 0..5_000u64 {
            let x = a.increment(h(9), 1 + i % 3);
            let y = b.increment_saturated(1 + i % 3);
            assert_eq!(x, y, "at {i}");
            if x.halved {
                // Both halved: bring the item back to 15 in both.
                for s in [&mut a, &mut b] {
                    s.increment(h(9), 20);
                }
            }
        }
        // The blocks start at each allocation's own offset.
        let words = a.table.len() - 7;
        assert_eq!(
            a.table[a.offset..a.offset + words],
            b.table[b.offset..b.offset + words]
        );
    }

    #[test]
    fn grows_with_the_entries_and_keeps_every_estimate() {
        let mut s = Sketch::new(1 << 20);
        assert_eq!(s.heap_bytes(), MIN_WORDS * 8, "starts at the floor");
        for i in 0..3_000u64 {
            s.increment(h(i), 1 + i % 7);
        }
        let before: Vec<u64> = (0..10_000).map(|i| s.frequency(h(i))).collect();
        s.fit(MIN_WORDS);
        assert_eq!(s.heap_bytes(), MIN_WORDS * 8, "no growth while it fits");
        s.fit(5_000);
        assert_eq!(s.heap_bytes(), 8192 * 8, "to a word per entry");
        let after: Vec<u64> = (0..10_000).map(|i| s.frequency(h(i))).collect();
        assert_eq!(before, after, "a doubling keeps every estimate");
        s.fit(usize::MAX);
        assert_eq!(
            s.heap_bytes(),
            (1 << 20) * 8,
            "never past the capacity's size"
        );
        assert_eq!(s.frequency(h(5)), before[5]);
        s.clear();
        assert_eq!(
            s.heap_bytes(),
            MIN_WORDS * 8,
            "a clear goes back to the floor"
        );
        assert_eq!(s.frequency(h(5)), 0);
        for i in 0..64 {
            s.fit(MIN_WORDS << (i % 3));
            let word = &s.table[s.block(h(i))];
            assert_eq!(
                word as *const u64 as usize % 64,
                0,
                "block not line-aligned"
            );
        }
    }

    #[test]
    fn many_shards_start_small_and_grow_with_their_entries() {
        let default = Sketch::for_shards(1 << 20, 1024);
        assert_eq!(default.heap_bytes(), MIN_WORDS * 8, "up to 1,024 shards");
        let mut s = Sketch::for_shards(1 << 20, 65_536);
        assert_eq!(s.heap_bytes(), 32 * 8, "a share of the cache's budget");
        for i in 0..40u64 {
            s.increment(h(i), 1 + i % 5);
        }
        let before: Vec<u64> = (0..1_000).map(|i| s.frequency(h(i))).collect();
        s.fit(5_000);
        assert_eq!(s.heap_bytes(), 8192 * 8, "to a word per entry");
        let after: Vec<u64> = (0..1_000).map(|i| s.frequency(h(i))).collect();
        assert_eq!(before, after, "a doubling keeps every estimate");
        s.clear();
        assert_eq!(s.heap_bytes(), 32 * 8, "a clear goes back to the start");
        let tiny = Sketch::for_shards(16, 1 << 20);
        assert_eq!(tiny.heap_bytes(), 8 * 8, "never below one block");
    }

    #[test]
    fn halves_after_sample() {
        let mut s = Sketch::new(16);
        for _ in 0..15 {
            s.increment(h(3), 1);
        }
        let mut halved = false;
        let mut i = 100;
        while !halved {
            halved = s.increment(h(i), 1).halved;
            i += 1;
        }
        assert!(s.frequency(h(3)) <= 8);
        assert_eq!(s.frequency(h(i - 1)), s.increment(h(i - 1), 0).estimate);
        assert!(s.heap_bytes() >= 64);
    }
}
