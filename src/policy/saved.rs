//! What the admission policy keeps of one entry across a restart (saved
//! with a log rewrite by `persist`, restored into the policy on open): one
//! byte per entry.

/// What is saved of one entry: its key's sketch estimate, the segment it
/// is in, and its hits not yet counted in the sketch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The sketch's estimate, 0..=15.
    pub(crate) estimate: u8,
    /// The policy segment: 0 window, 1 probation, 2 protected.
    pub(crate) segment: u8,
    /// Hits not yet folded into the sketch, 0..=3.
    pub(crate) hits: u8,
}

impl Saved {
    /// One byte (see the format).
    pub(crate) fn pack(self) -> u8 {
        self.estimate.min(15) | ((self.segment & 3) << 4) | (self.hits.min(3) << 6)
    }

    /// The entry packed by [`pack`](Self::pack).
    pub(crate) fn unpack(byte: u8) -> Self {
        Self {
            estimate: byte & 15,
            segment: (byte >> 4) & 3,
            hits: byte >> 6,
        }
    }
}
