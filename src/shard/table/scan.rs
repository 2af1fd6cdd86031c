//! Walking a table by home slot, for cursor-based iteration (Redis's `SCAN`).
//!
//! A token lives in the run of occupied slots that starts at its home slot
//! (`hash & (slots - 1)`): linear probing puts it at the first free slot from
//! there, and a removal never leaves an empty slot inside such a run. So the
//! tokens of one home slot are found by walking from it to the next empty
//! slot, wherever a rebuild has put them. A cursor names a home slot, and
//! steps through them in reverse-binary order ([`next_home`]): when the table
//! doubles, home slot `h` splits into `h` and `h + old size`, which that order
//! visits one after the other, so no home slot is skipped or visited out of
//! order across a growth.

use super::{Table, EMPTY, TOMB};

impl Table {
    /// The mask of home slots (`slots - 1`).
    pub(crate) fn home_mask(&self) -> u64 {
        (self.slots.len() - 1) as u64
    }

    /// Calls `f` on every token whose home slot is `home & home_mask()`;
    /// `hash_of` gives a stored token's hash. Visits the run of occupied
    /// slots from that home slot.
    pub(crate) fn for_each_at_home(
        &self,
        home: u64,
        hash_of: impl Fn(u32) -> u64,
        mut f: impl FnMut(u32),
    ) {
        let mask = self.token_mask();
        let wrap = self.slots.len() - 1;
        let start = home as usize & wrap;
        let mut i = start;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return;
            }
            if s != TOMB && hash_of(s & mask) as usize & wrap == start {
                f(s & mask);
            }
            i = (i + 1) & wrap;
            if i == start {
                return;
            }
        }
    }
}

/// The home slot after `cursor` in reverse-binary order under `mask` (Redis's
/// `dictScan` step); 0 once every home slot was visited.
pub(crate) fn next_home(cursor: u64, mask: u64) -> u64 {
    (cursor | !mask)
        .reverse_bits()
        .wrapping_add(1)
        .reverse_bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reverse_binary_order_visits_every_home_once() {
        for bits in 0..10 {
            let mask = (1u64 << bits) - 1;
            let (mut v, mut seen) = (0, HashSet::new());
            loop {
                assert!(seen.insert(v), "visited {v} twice");
                v = next_home(v, mask);
                if v == 0 {
                    break;
                }
            }
            assert_eq!(seen.len(), 1 << bits);
        }
    }

    #[test]
    fn walking_every_home_finds_every_token_once() {
        let hash = |t: u32| u64::from(t).wrapping_mul(0x9E37_79B9_7F4A_7C15) % 97;
        let mut t = Table::with_capacity(0);
        for tok in 0..500 {
            t.insert_unique(hash(tok), tok, hash);
        }
        for tok in (0..500).step_by(3) {
            assert!(t.remove(hash(tok), tok));
        }
        let (mut v, mut found) = (0, Vec::new());
        loop {
            t.for_each_at_home(v, hash, |tok| found.push(tok));
            v = next_home(v, t.home_mask());
            if v == 0 {
                break;
            }
        }
        found.sort_unstable();
        let expected: Vec<u32> = (0..500).filter(|x| x % 3 != 0).collect();
        assert_eq!(found, expected);
    }
}
