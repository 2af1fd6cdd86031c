//! A session store's steady clock: the wall clock read once, advanced by
//! the monotonic clock.

use crate::adapters::{millis, SharedClock};
use crate::clock::Clock;
use std::time::Duration;

/// A store's steady clock: the wall clock read when the store was made,
/// advanced by the monotonic clock since (see [`SessionStore`](super::SessionStore#time)).
#[derive(Clone)]
pub(super) struct Steady {
    clock: SharedClock,
    /// Wall-clock Unix milliseconds when the store was made.
    wall_origin: u64,
    /// The monotonic clock's milliseconds then.
    monotonic_origin: u64,
}

/// One reading of a store's clocks, in milliseconds.
#[derive(Clone, Copy)]
pub(super) struct Now {
    pub(super) steady: u64,
    pub(super) wall: u64,
}

impl Now {
    /// How far the wall clock is ahead of the steady clock (negative: behind).
    pub(super) fn skew(self) -> i64 {
        let skew = i128::from(self.wall) - i128::from(self.steady);
        i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX })
    }

    /// The time left until `deadline` on the steady clock.
    pub(super) fn until(self, deadline: u64) -> Duration {
        Duration::from_millis(deadline.saturating_sub(self.steady))
    }
}

impl Steady {
    pub(super) fn new(clock: SharedClock) -> Self {
        Self {
            wall_origin: millis(clock.wall()),
            monotonic_origin: millis(clock.monotonic()),
            clock,
        }
    }

    pub(super) fn now(&self) -> Now {
        let elapsed = millis(self.clock.monotonic()).saturating_sub(self.monotonic_origin);
        Now {
            steady: self.wall_origin.saturating_add(elapsed),
            wall: millis(self.clock.wall()),
        }
    }
}
