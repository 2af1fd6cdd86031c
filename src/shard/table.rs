//! A shard's index from key hash to slab token: one array of `u32` slots.
//!
//! `hashbrown` keeps its control bytes and its buckets in two arrays, so a
//! lookup misses the cache twice (control group, then bucket) before it reaches
//! the entry. Here each slot packs the token with a tag of spare hash bits:
//! a lookup reads one line of slots, compares tags, and only then touches the
//! entry, one cache miss fewer on every hit and on every eviction's removal.
//!
//! * A table of `2^bits` slots stores tokens in the low `bits` bits of a slot
//!   and a tag (high hash bits) above them. Tokens stay below the live count's
//!   high-water mark, which the load limit keeps under `2^bits - 2`, so the two
//!   all-ones patterns are free to mean *empty* and *deleted*.
//! * Linear probing from the hash's low bits. A removed slot becomes empty if
//!   the next slot is empty (no probe sequence runs through it), else a
//!   tombstone; inserts reuse tombstones on their way.
//! * Live slots plus tombstones stay under 7/8 of the table. When that limit
//!   is hit the table is rebuilt: at twice the size if live slots fill more
//!   than 5/8 of it, else at the same size, which only sweeps tombstones.
//!   Rebuilding rehashes every key through a caller-given function (the
//!   table holds tokens, not keys).
//!
//! Safe code only; the table knows nothing about keys, entries or locks.
//! Owns the slots; calls nothing but [`prefetch`](crate::prefetch).

mod scan;
pub(crate) use scan::next_home;

/// An empty slot: the token field all ones.
const EMPTY: u32 = u32::MAX;
/// A deleted slot: a probe goes on past it, an insert may reuse it.
const TOMB: u32 = u32::MAX - 1;
/// The smallest table: 16 slots (4 bits), so `7/8` of it stays below the
/// reserved token values.
const MIN_BITS: u32 = 4;
/// Multiplier that spreads every hash bit into the tag (the low bits pick
/// the home slot, and within one shard some high bits are all the same).
const TAG_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// The token index of one shard (see the module docs).
///
/// 24 bytes, so that it fits beside the shard lock's words in one cache
/// line (see `Shard`): counts as `u32` (tokens are `u32` anyway), slots as
/// a boxed slice, whose length (a power of two) also gives the token bits.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Table {
    slots: Box<[u32]>,
    /// Live slots.
    len: u32,
    /// Deleted slots.
    tombs: u32,
}

impl Table {
    /// A table that holds `capacity` tokens before its first rebuild.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let bits = Self::bits_for(capacity);
        Self {
            slots: vec![EMPTY; 1 << bits].into_boxed_slice(),
            len: 0,
            tombs: 0,
        }
    }

    /// The fewest bits whose table keeps `live` tokens within 5/8 of it.
    fn bits_for(live: usize) -> u32 {
        let slots = live.saturating_mul(8).div_ceil(5).max(1 << MIN_BITS);
        slots.next_power_of_two().trailing_zeros()
    }

    /// Live tokens.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the slots.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u32>()
    }

    /// `2^bits - 1`: a slot's token bits, as many as the table has slots.
    #[inline]
    fn token_mask(&self) -> u32 {
        (self.slots.len() - 1) as u32
    }

    /// The table's size as a power of two.
    fn bits(&self) -> u32 {
        self.slots.len().trailing_zeros()
    }

    /// The tag bits of `hash` at this size (token bits zero).
    #[inline]
    fn tag(&self, hash: u64) -> u32 {
        ((hash.wrapping_mul(TAG_MIX) >> 32) as u32) & !self.token_mask()
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    /// Starts loading the slot line where a probe for `hash` begins.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        crate::prefetch::prefetch(self.slots.as_ptr().wrapping_add(self.home(hash)));
    }

    /// The token whose hash is `hash` and for which `eq` holds.
    ///
    /// `remove` has the same probe loop written out: sharing one generic
    /// probe function cost about 35 instructions per cache operation
    /// (cachegrind, 373-377 vs 410-411 on the Zipf throughput workload).
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.token_mask();
        let tag = self.tag(hash);
        let wrap = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s & !mask == tag && s != TOMB && eq(s & mask) {
                return Some(s & mask);
            }
            i = (i + 1) & wrap;
        }
    }

    /// Adds `token` under `hash`; the caller knows no equal key is present.
    /// `hash_of` gives any stored token's hash, for a rebuild.
    #[inline]
    pub(crate) fn insert_unique(&mut self, hash: u64, token: u32, hash_of: impl Fn(u32) -> u64) {
        let (len, tombs) = (self.len as usize, self.tombs as usize);
        if (len + tombs + 1) * 8 > self.slots.len() * 7 {
            let bits = if (len + 1) * 8 > self.slots.len() * 5 {
                self.bits() + 1
            } else {
                self.bits()
            };
            self.rebuild(bits, &hash_of);
        }
        debug_assert!(token < self.token_mask() - 1, "token {token} too large");
        let at = self.vacant(hash);
        if self.slots[at] == TOMB {
            self.tombs -= 1;
        }
        self.slots[at] = self.tag(hash) | token;
        self.len += 1;
    }

    /// The first empty or deleted slot on `hash`'s probe sequence.
    fn vacant(&self, hash: u64) -> usize {
        let wrap = self.slots.len() - 1;
        let mut i = self.home(hash);
        while self.slots[i] < TOMB {
            i = (i + 1) & wrap;
        }
        i
    }

    /// Removes `token`, stored under `hash`. Returns whether it was there.
    pub(crate) fn remove(&mut self, hash: u64, token: u32) -> bool {
        let mask = self.token_mask();
        let wrap = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if s != TOMB && s & mask == token {
                break;
            }
            i = (i + 1) & wrap;
        }
        self.len -= 1;
        if self.slots[(i + 1) & wrap] != EMPTY {
            self.slots[i] = TOMB;
            self.tombs += 1;
            return true;
        }
        // Nothing probes past an empty slot, so this one and the
        // tombstones just before it can be empty too.
        self.slots[i] = EMPTY;
        let mut j = i.wrapping_sub(1) & wrap;
        while self.slots[j] == TOMB {
            self.slots[j] = EMPTY;
            self.tombs -= 1;
            j = j.wrapping_sub(1) & wrap;
        }
        true
    }

    /// Re-inserts every live token into a fresh table of `2^bits` slots.
    fn rebuild(&mut self, bits: u32, hash_of: &impl Fn(u32) -> u64) {
        let old_mask = self.token_mask();
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; 1 << bits].into_boxed_slice());
        self.tombs = 0;
        for s in old.into_vec() {
            if s < TOMB {
                let token = s & old_mask;
                let hash = hash_of(token);
                let at = self.vacant(hash);
                self.slots[at] = self.tag(hash) | token;
            }
        }
    }

    /// Forgets every token; keeps the size.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
        self.tombs = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A slab of hashes (token = index) with a free list, like a shard's.
    #[derive(Default)]
    struct Slab {
        hashes: Vec<Option<u64>>,
        free: Vec<u32>,
    }

    impl Slab {
        fn add(&mut self, hash: u64) -> u32 {
            match self.free.pop() {
                Some(t) => {
                    self.hashes[t as usize] = Some(hash);
                    t
                }
                None => {
                    self.hashes.push(Some(hash));
                    self.hashes.len() as u32 - 1
                }
            }
        }
        fn hash_of(&self, t: u32) -> u64 {
            self.hashes[t as usize].expect("live token")
        }
    }

    #[test]
    fn fits_beside_the_lock_word() {
        assert_eq!(std::mem::size_of::<Table>(), 24);
    }

    #[test]
    fn finds_removes_and_grows() {
        let mut t = Table::with_capacity(0);
        let mut slab = Slab::default();
        for k in 0..10_000u64 {
            let h = k.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            let tok = slab.add(h);
            t.insert_unique(h, tok, |x| slab.hash_of(x));
        }
        assert_eq!(t.len(), 10_000);
        for k in 0..10_000u64 {
            let h = k.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            assert_eq!(t.find(h, |x| slab.hash_of(x) == h), Some(k as u32));
        }
        assert!(t.remove(5u64.wrapping_mul(0xD6E8_FEB8_6659_FD93), 5));
        assert!(!t.remove(5u64.wrapping_mul(0xD6E8_FEB8_6659_FD93), 5));
        assert_eq!(t.len(), 9_999);
        // 10k live within 5/8 of the table: 16384 slots, 4 bytes each.
        assert_eq!(t.heap_bytes(), 16_384 * 4);
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.find(7, |_| true), None);
    }

    #[test]
    fn churn_at_a_steady_size_does_not_grow() {
        let mut t = Table::with_capacity(1000);
        let before = t.heap_bytes();
        let mut slab = Slab::default();
        let mut live = std::collections::VecDeque::new();
        for k in 0..200_000u64 {
            let h = k.wrapping_mul(0x9FB2_1C65_1E98_DF25) ^ (k >> 3);
            let tok = slab.add(h);
            t.insert_unique(h, tok, |x| slab.hash_of(x));
            live.push_back((h, tok));
            if live.len() > 1000 {
                let (h, tok) = live.pop_front().expect("more than 1000 live");
                assert!(t.remove(h, tok));
                slab.hashes[tok as usize] = None;
                slab.free.push(tok);
            }
        }
        assert_eq!(t.len(), 1000);
        assert_eq!(t.heap_bytes(), before);
        for &(h, tok) in &live {
            assert_eq!(t.find(h, |x| x == tok), Some(tok));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Remove(u8),
        Find(u8),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => any::<u8>().prop_map(Op::Insert),
            4 => any::<u8>().prop_map(Op::Remove),
            4 => any::<u8>().prop_map(Op::Find),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Against a `HashMap`, with hashes drawn from few values so that
        /// probe chains, tag collisions, wrap-around and tombstones all occur.
        #[test]
        fn matches_a_hash_map(ops in proptest::collection::vec(op(), 1..400), spread in 0u32..3) {
            let hash = |k: u8| -> u64 {
                let k = u64::from(k);
                match spread {
                    0 => k % 7,                     // heavy home collisions
                    1 => (k % 5) << 40 | k,         // same low bits per group
                    _ => k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                }
            };
            let mut t = Table::with_capacity(0);
            let mut slab = Slab::default();
            let mut keys: Vec<Option<u8>> = Vec::new();
            let mut model: HashMap<u8, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        if let std::collections::hash_map::Entry::Vacant(slot) = model.entry(k) {
                            let tok = slab.add(hash(k));
                            if keys.len() <= tok as usize {
                                keys.resize(tok as usize + 1, None);
                            }
                            keys[tok as usize] = Some(k);
                            t.insert_unique(hash(k), tok, |x| slab.hash_of(x));
                            slot.insert(tok);
                        }
                    }
                    Op::Remove(k) => {
                        let expected = model.remove(&k);
                        let found = t.find(hash(k), |x| keys[x as usize] == Some(k));
                        prop_assert_eq!(found, expected);
                        if let Some(tok) = expected {
                            prop_assert!(t.remove(hash(k), tok));
                            slab.hashes[tok as usize] = None;
                            slab.free.push(tok);
                            keys[tok as usize] = None;
                        }
                    }
                    Op::Find(k) => {
                        let found = t.find(hash(k), |x| keys[x as usize] == Some(k));
                        prop_assert_eq!(found, model.get(&k).copied());
                    }
                    Op::Clear => {
                        t.clear();
                        model.clear();
                        slab = Slab::default();
                        keys.clear();
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert!((t.len() + t.tombs as usize) * 8 <= t.slots.len() * 7);
            }
        }
    }
}
