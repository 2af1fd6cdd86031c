//! Where the cache's time comes from.
//!
//! Inside, expiry runs on a monotonic clock so a wall-clock jump never expires
//! or revives entries; what goes to disk is wall-clock Unix milliseconds, so a
//! TTL survives a restart. [`MockClock`] drives both by hand in tests.

use crate::sync::{Arc, AtomicU64, Ordering};
use crate::wallclock::{Now, WallOrigin};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of time for a cache.
///
/// Implement it to control time yourself; [`SystemClock`] is the default and
/// [`MockClock`] is for tests.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time elapsed since a fixed origin of this clock's choosing
    /// (any origin: a cache counts its deadlines from when it was built, up
    /// to about 34.8 years later). Must never go backwards.
    fn monotonic(&self) -> Duration;

    /// Wall-clock time since the Unix epoch, used for what is written to disk.
    fn wall(&self) -> Duration;
}

/// The real clock: the CPU's time-stamp counter (through `quanta`, which
/// calibrates it against the OS's monotonic clock and falls back to that clock
/// where the TSC is not usable) for expiry, [`SystemTime`] for persistence.
///
/// Every hit on an entry with a deadline reads this clock. The TSC read costs
/// about a third of what [`std::time::Instant::now`] costs where that is a
/// vDSO call, and the read is a large part of a TTL'd hit.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: quanta::Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> Self {
        Self {
            origin: quanta::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn monotonic(&self) -> Duration {
        quanta::Instant::now().saturating_duration_since(self.origin)
    }

    fn wall(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use shardcache::{Cache, MockClock};
/// use std::time::Duration;
///
/// let clock = MockClock::new();
/// let cache: Cache<&str, u32> = Cache::builder()
///     .max_capacity(100)
///     .time_to_live(Duration::from_secs(10))
///     .clock(clock.clone())
///     .build()?;
/// cache.insert("a", 1);
/// clock.advance(Duration::from_secs(9));
/// assert_eq!(cache.get("a"), Some(1));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(cache.get("a"), None);
/// # Ok::<(), shardcache::BuildError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MockClock {
    inner: Arc<MockTime>,
}

#[derive(Debug, Default)]
struct MockTime {
    monotonic_nanos: AtomicU64,
    wall_offset_nanos: AtomicU64,
}

impl MockClock {
    /// A clock at monotonic zero whose wall clock reads 2024-01-01T00:00:00Z.
    pub fn new() -> Self {
        let clock = Self::default();
        clock.set_wall(Duration::from_secs(1_704_067_200));
        clock
    }

    /// Moves both the monotonic and the wall clock forward by `by`
    /// (stopping at the largest time a `u64` of nanoseconds holds, about
    /// 584 years: a monotonic clock never goes back).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ =
            self.inner
                .monotonic_nanos
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                    Some(now.saturating_add(nanos))
                });
    }

    /// Sets the wall clock (time since the Unix epoch) at the current monotonic instant.
    pub fn set_wall(&self, since_epoch: Duration) {
        let now = self.inner.monotonic_nanos.load(Ordering::SeqCst);
        let wall = u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX);
        self.inner
            .wall_offset_nanos
            .store(wall.wrapping_sub(now), Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.inner.monotonic_nanos.load(Ordering::SeqCst))
    }

    fn wall(&self) -> Duration {
        let now = self.inner.monotonic_nanos.load(Ordering::SeqCst);
        Duration::from_nanos(
            self.inner
                .wall_offset_nanos
                .load(Ordering::SeqCst)
                .wrapping_add(now),
        )
    }
}

/// The cache's view of a clock: milliseconds, the resolution of every
/// deadline, counted from the cache's own start.
///
/// A [`Clock`] may choose any origin (the Unix epoch, the host's boot);
/// deadlines are kept in 40 bits of milliseconds (about 34.8 years), so they
/// count from when the cache was built, not from the clock's origin, and
/// from 1: a deadline of 0 means none, and a zero time to live at the first
/// instant must still expire at once.
#[derive(Clone)]
pub(crate) struct Millis {
    clock: Arc<dyn Clock>,
    /// The clock's milliseconds when the cache was built.
    origin: u64,
    /// The Unix time of the cache's millisecond 0 (see `wallclock.rs`),
    /// shared by the clones (the log's rewrites convert with it).
    wall: Arc<WallOrigin>,
}

impl Millis {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        let origin = Self::read(&*clock);
        let wall = Self::system_wall(&*clock);
        // The wall clock was read at the cache's first millisecond (`now`
        // counts from 1).
        Self {
            clock,
            origin,
            wall: Arc::new(WallOrigin::new(wall, 1)),
        }
    }

    fn read(clock: &dyn Clock) -> u64 {
        u64::try_from(clock.monotonic().as_millis()).unwrap_or(u64::MAX)
    }

    /// Monotonic milliseconds since the cache was built, plus one (so at
    /// least 1).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        Self::read(&*self.clock)
            .saturating_sub(self.origin)
            .saturating_add(1)
    }

    /// [`now`](Self::now), and how far past the start of that millisecond
    /// the clock read (less than a millisecond), from one reading.
    pub(crate) fn now_exact(&self) -> (u64, Duration) {
        let d = self.clock.monotonic();
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let frac = d.saturating_sub(Duration::from_millis(ms));
        (ms.saturating_sub(self.origin).saturating_add(1), frac)
    }

    /// [`now`](Self::now), and whether the clock read past the start of
    /// that millisecond (as [`LazyNow`](crate::shard::LazyNow) takes it).
    pub(crate) fn now_past(&self) -> (u64, bool) {
        let (now, frac) = self.now_exact();
        (now, !frac.is_zero())
    }

    /// The clock's wall time in Unix milliseconds.
    fn system_wall(clock: &dyn Clock) -> u64 {
        u64::try_from(clock.wall().as_millis()).unwrap_or(u64::MAX)
    }

    /// One reading of both clocks: the cache's milliseconds and its wall
    /// clock (Unix milliseconds) through its origin, which follows the
    /// clock's wall time when the two part (see `wallclock.rs`).
    pub(crate) fn reading(&self) -> Now {
        let wall = Self::system_wall(&*self.clock);
        let tick = self.now();
        self.wall.at(wall, tick, || Self::system_wall(&*self.clock))
    }

    /// The cache's wall clock now, in Unix milliseconds.
    pub(crate) fn wall_now(&self) -> u64 {
        self.reading().wall_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_moves_only_when_told() {
        let c = MockClock::new();
        let w = c.wall();
        assert_eq!(c.monotonic(), Duration::ZERO);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.monotonic(), Duration::from_millis(1500));
        assert_eq!(c.wall() - w, Duration::from_millis(1500));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.monotonic();
        let b = c.monotonic();
        assert!(b >= a);
        assert!(c.wall() > Duration::from_secs(1_600_000_000));
    }
}
