//! A small deterministic generator for tests (xorshift64): a seed gives the
//! same sequence on every run and machine, so a failing case can be replayed.

/// xorshift64 over its state, which must not be zero.
pub(crate) struct Xorshift(pub(crate) u64);

impl Xorshift {
    /// A generator for any seed, zero included (spread by the golden
    /// ratio, low bit set).
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next value below `n` (not zero).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// The next index below `n` (not zero).
    pub(crate) fn index(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
