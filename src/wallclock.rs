//! A cache's wall clock: its monotonic milliseconds plus an origin (the Unix
//! time of the cache's millisecond 0), fixed per cache.
//!
//! A deadline given in Unix time (`PEXPIREAT`, `SET ... PXAT`, a deadline a
//! log holds) becomes a deadline on the monotonic clock through the origin,
//! and `PEXPIRETIME`, the log's records and its rewrites turn it back
//! through the same origin, so each answers exactly what was set, before a
//! restart and after it, while expiry itself runs on the monotonic clock (a
//! wall-clock jump never expires or revives keys). Reading the two clocks
//! separately at each conversion would not: each is cut to the
//! millisecond, so their difference wobbles by one.
//!
//! The origin follows the system's wall clock when the two part by more
//! than [`STEP_MS`] (a clock step, or drift adding up): deadlines already
//! set then read back moved by that step, as they would on Redis's `PTTL`.

use std::sync::atomic::{AtomicI64, Ordering};

/// How far the cache's wall clock may be from the system's before its
/// origin is moved: above the millisecond wobble of two separate clock
/// reads, and small against any time to live worth setting.
pub(crate) const STEP_MS: i64 = 10;

/// The origin: Unix milliseconds at the cache's millisecond 0.
#[derive(Debug)]
pub(crate) struct WallOrigin(AtomicI64);

/// One reading of the clock: the cache's milliseconds and its wall clock
/// at that instant (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// The cache's clock (what its deadlines count in).
    pub(crate) tick: u64,
    /// The cache's wall clock: `tick` plus the origin.
    pub(crate) wall: i64,
}

impl Now {
    /// A deadline on the cache's clock in the cache's Unix milliseconds.
    pub(crate) fn wall_of(self, deadline: u64) -> i64 {
        let tick = i64::try_from(self.tick).unwrap_or(i64::MAX);
        let deadline = i64::try_from(deadline).unwrap_or(i64::MAX);
        self.wall.saturating_add(deadline.saturating_sub(tick))
    }

    /// [`wall_of`](Self::wall_of) as an unsigned Unix time (0 before the
    /// epoch), as logs store it.
    pub(crate) fn wall_ms_of(self, deadline: u64) -> u64 {
        u64::try_from(self.wall_of(deadline)).unwrap_or(0)
    }

    /// The cache's wall clock as an unsigned Unix time (0 before the epoch).
    pub(crate) fn wall_ms(self) -> u64 {
        u64::try_from(self.wall).unwrap_or(0)
    }

    /// The cache's clock when the wall clock reads `wall_ms`: the inverse
    /// of [`wall_ms_of`](Self::wall_ms_of) (0 before the cache's clock
    /// began).
    pub(crate) fn tick_of(self, wall_ms: u64) -> u64 {
        let wall = i64::try_from(wall_ms).unwrap_or(i64::MAX);
        let tick = i64::try_from(self.tick).unwrap_or(i64::MAX);
        u64::try_from(tick.saturating_add(wall.saturating_sub(self.wall))).unwrap_or(0)
    }
}

impl WallOrigin {
    /// The origin that puts `tick` at `wall_ms`.
    pub(crate) fn new(wall_ms: u64, tick: u64) -> Self {
        Self(AtomicI64::new(origin(wall_ms, tick)))
    }

    /// The cache's wall clock at `tick`, the cache's clock read right after
    /// the system's wall clock read `wall_ms`. If the two have parted by
    /// more than [`STEP_MS`], the origin moves to the system's, provided
    /// `recheck` (the wall clock read again) is within a millisecond of
    /// `wall_ms` either way: the reading was neither interrupted nor taken
    /// across a step of the wall clock.
    pub(crate) fn at(&self, wall_ms: u64, tick: u64, recheck: impl FnOnce() -> u64) -> Now {
        let mut base = self.0.load(Ordering::Relaxed);
        let tick_i = i64::try_from(tick).unwrap_or(i64::MAX);
        let ours = tick_i.saturating_add(base);
        let real = i64::try_from(wall_ms).unwrap_or(i64::MAX);
        if real.abs_diff(ours) > STEP_MS.unsigned_abs() && recheck().abs_diff(wall_ms) <= 1 {
            base = origin(wall_ms, tick);
            self.0.store(base, Ordering::Relaxed);
        }
        Now {
            tick,
            wall: tick_i.saturating_add(base),
        }
    }
}

fn origin(wall_ms: u64, tick: u64) -> i64 {
    let wall = i64::try_from(wall_ms).unwrap_or(i64::MAX);
    wall.saturating_sub(i64::try_from(tick).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_holds_through_wobble_and_follows_steps() {
        let o = WallOrigin::new(1_000_000, 1);
        let now = o.at(1_000_100, 100, || 1_000_100);
        assert_eq!(now.wall, 1_000_099, "a millisecond of wobble: kept");
        assert_eq!(now.wall_of(5_100), 1_005_099);
        assert_eq!(now.tick_of(now.wall_ms_of(5_100)), 5_100, "the inverse");
        assert_eq!(now.tick_of(0), 0, "before the cache's clock began");
        let same = o.at(1_000_100 + STEP_MS as u64, 100, || 0);
        assert_eq!(same.wall, 1_000_099, "an interrupted reading moves nothing");
        let stepped = o.at(2_000_000, 200, || 2_000_000);
        assert_eq!(stepped.wall, 2_000_000, "a step is followed");
        assert_eq!(o.at(2_000_001, 201, || 2_000_001).wall, 2_000_001);
        assert_eq!(stepped.wall_of(u64::MAX), i64::MAX);
    }
}
