//! A count-min sketch of 4-bit counters with periodic halving (TinyLFU's
//! frequency estimate).
//!
//! Four rows, each counter 4 bits, sixteen counters to a `u64`. An item's four
//! counters sit in four words picked by four independent mixes of its hash.
//! Increments are conservative (only counters at the current minimum rise),
//! which keeps estimates tight. After `10 × capacity` additions every counter is
//! halved, so the sketch forgets old popularity and follows a shifting workload.

const SEEDS: [u64; 4] =
    [0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x85EB_CA77_C2B2_AE63];
const MAX: u64 = 15;

/// A frequency sketch; not generic, it sees hashes only.
#[derive(Debug)]
pub(crate) struct Sketch {
    table: Vec<u64>,
    mask: u64,
    additions: u64,
    sample: u64,
}

impl Sketch {
    /// A sketch sized for a cache of about `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        let words = capacity.max(16).next_power_of_two();
        Self {
            table: vec![0; words],
            mask: words as u64 - 1,
            additions: 0,
            sample: 10 * capacity.max(16) as u64,
        }
    }

    /// Bytes held by the counters.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.table.len() * 8
    }

    #[inline]
    fn slot(&self, hash: u64, row: usize) -> (usize, u32) {
        let mut h = (hash ^ SEEDS[row]).wrapping_mul(SEEDS[(row + 1) & 3]);
        h ^= h >> 29;
        let word = (h & self.mask) as usize;
        let group = ((h >> 58) & 3) as u32;
        (word, (group * 4 + row as u32) * 4)
    }

    /// The estimated frequency of `hash`, 0..=15.
    pub(crate) fn frequency(&self, hash: u64) -> u64 {
        (0..4)
            .map(|row| {
                let (w, shift) = self.slot(hash, row);
                (self.table[w] >> shift) & MAX
            })
            .min()
            .unwrap_or(0)
    }

    /// Adds `by` occurrences of `hash`. Returns true when this addition
    /// triggered a halving of every counter (the caller ages its own state too).
    pub(crate) fn increment(&mut self, hash: u64, by: u64) -> bool {
        if by == 0 {
            return false;
        }
        let slots = [self.slot(hash, 0), self.slot(hash, 1), self.slot(hash, 2), self.slot(hash, 3)];
        let current = slots.map(|(w, s)| (self.table[w] >> s) & MAX);
        let min = current.iter().copied().min().unwrap_or(0);
        let target = (min + by).min(MAX);
        for ((w, s), c) in slots.into_iter().zip(current) {
            if c < target {
                self.table[w] = (self.table[w] & !(MAX << s)) | (target << s);
            }
        }
        self.additions += by;
        if self.additions >= self.sample {
            self.halve();
            return true;
        }
        false
    }

    fn halve(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.additions /= 2;
    }

    pub(crate) fn clear(&mut self) {
        self.table.iter_mut().for_each(|w| *w = 0);
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
        for _ in 0..5 {
            s.increment(h(1), 1);
        }
        assert_eq!(s.frequency(h(1)), 5);
        s.increment(h(1), 100);
        assert_eq!(s.frequency(h(1)), 15);
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
    fn halves_after_sample() {
        let mut s = Sketch::new(16);
        for _ in 0..15 {
            s.increment(h(3), 1);
        }
        let mut halved = false;
        let mut i = 100;
        while !halved {
            halved = s.increment(h(i), 1);
            i += 1;
        }
        assert!(s.frequency(h(3)) <= 8);
        assert!(s.heap_bytes() >= 128);
    }
}
