//! Whether Redis is usable right now, why not, and since when; the
//! hysteresis that keeps one slow call from taking the tier down.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why the tier went (or stays) [`Health::Down`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DownReason {
    /// The tier has not connected yet (it was built while Redis was unreachable).
    NotConnected,
    /// The connection broke: refused, reset or closed (a killed Redis,
    /// a restart, a network error). One such error is enough.
    ConnectionLost,
    /// Consecutive operations and heartbeats timed out, with no success in
    /// between, spanning at least the outage window (a hung or stopped Redis).
    Timeouts,
    /// The instance's own heartbeat, published on its invalidation channel,
    /// did not come back on its subscription within twice the liveness
    /// bound: the subscription is dead or silent, so invalidations may have
    /// been missed (local hits were already refused after one bound).
    ChannelSilent,
    /// A reconnect attempt failed (connect, subscribe or replay).
    ReconnectFailed,
}

/// The Redis tier's state, as [`TieredCache::health`](super::TieredCache::health) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Connected, subscribed, the queued writes replayed and the local tier
    /// cleared of anything that could have missed an invalidation: reads and
    /// writes go to Redis. Local entries are served only while the
    /// subscription has been proven live within the liveness bound.
    Up,
    /// Redis is unreachable, timed out, refused us, or the invalidation
    /// channel went silent: operations run on the local tier and a
    /// background task reconnects with capped backoff.
    Down {
        /// Why the tier went down (the first cause; see `last_error` for the latest).
        reason: DownReason,
        /// The most recent error (of the failed operation or reconnect attempt).
        last_error: String,
        /// When the tier went down.
        since: Instant,
    },
}

impl Health {
    /// True when Redis is in use.
    pub fn is_up(&self) -> bool {
        matches!(self, Health::Up)
    }
}

/// What [`HealthState::record_timeout`] concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not enough evidence yet: stay up.
    StayUp,
    /// The streak is long enough: go down.
    GoDown,
}

/// The shared flag that every operation reads (one atomic load), the
/// details of the outage behind a lock, and the timeout streak.
#[derive(Debug)]
pub(crate) struct HealthState {
    up: AtomicBool,
    down: Mutex<Option<(DownReason, String, Instant)>>,
    /// Timeouts since the last success, and when the first of them happened.
    streak: Mutex<Option<(u32, Instant)>>,
    /// Whether `streak` is `Some` (lets a success skip the lock).
    in_streak: AtomicBool,
    /// Transitions to down, counted.
    pub(crate) downs: AtomicU64,
    /// The reason of the latest transition to down.
    last_reason: Mutex<Option<(DownReason, String)>>,
}

impl HealthState {
    /// A tier that starts down, with `reason`.
    pub(crate) fn new_down(reason: &str) -> Self {
        Self {
            up: AtomicBool::new(false),
            down: Mutex::new(Some((
                DownReason::NotConnected,
                reason.to_string(),
                Instant::now(),
            ))),
            streak: Mutex::new(None),
            in_streak: AtomicBool::new(false),
            downs: AtomicU64::new(0),
            last_reason: Mutex::new(None),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn set_up(&self) {
        let mut down = self.down.lock();
        *down = None;
        self.record_success();
        self.up.store(true, Ordering::Release);
    }

    /// Records `error`; returns true if this call took the tier down (it
    /// was up), false if it was already down (only the error is updated).
    pub(crate) fn set_down(&self, reason: DownReason, error: &str) -> bool {
        let mut down = self.down.lock();
        let was_up = self.up.swap(false, Ordering::AcqRel);
        match down.as_mut() {
            Some((_, last, _)) if !was_up => *last = error.to_string(),
            _ => {
                if was_up {
                    self.downs.fetch_add(1, Ordering::Relaxed);
                    *self.last_reason.lock() = Some((reason, error.to_string()));
                }
                *down = Some((reason, error.to_string(), Instant::now()));
            }
        }
        was_up
    }

    /// A round trip to Redis succeeded: the timeout streak ends.
    pub(crate) fn record_success(&self) {
        if self.in_streak.load(Ordering::Acquire) {
            let mut streak = self.streak.lock();
            *streak = None;
            self.in_streak.store(false, Ordering::Release);
        }
    }

    /// A round trip timed out. The tier goes down only after `needed`
    /// timeouts in a row (no success in between) spanning at least `span`:
    /// a burst of calls stalled together by one scheduling hiccup counts as
    /// one event, not as an outage.
    pub(crate) fn record_timeout(&self, needed: u32, span: Duration) -> Verdict {
        let now = Instant::now();
        let mut streak = self.streak.lock();
        let (n, first) = streak.get_or_insert((0, now));
        *n += 1;
        self.in_streak.store(true, Ordering::Release);
        if *n >= needed && now.duration_since(*first) >= span {
            Verdict::GoDown
        } else {
            Verdict::StayUp
        }
    }

    /// Why the tier last went from up to down, and the error then.
    pub(crate) fn last_down(&self) -> Option<(DownReason, String)> {
        self.last_reason.lock().clone()
    }

    pub(crate) fn snapshot(&self) -> Health {
        let down = self.down.lock();
        match (&*down, self.is_up()) {
            (Some((reason, last_error, since)), false) => Health::Down {
                reason: *reason,
                last_error: last_error.clone(),
                since: *since,
            },
            _ => Health::Up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_burst_of_timeouts_is_not_an_outage() {
        let h = HealthState::new_down("x");
        h.set_up();
        let span = Duration::from_millis(20);
        for _ in 0..10 {
            assert_eq!(h.record_timeout(3, span), Verdict::StayUp);
        }
        std::thread::sleep(span);
        assert_eq!(h.record_timeout(3, span), Verdict::GoDown);
        h.record_success();
        assert_eq!(h.record_timeout(3, span), Verdict::StayUp);
    }

    #[test]
    fn transitions_keep_their_first_reason() {
        let h = HealthState::new_down("x");
        h.set_up();
        assert!(h.set_down(DownReason::ChannelSilent, "silent"));
        assert!(!h.set_down(DownReason::ReconnectFailed, "refused"));
        match h.snapshot() {
            Health::Down {
                reason, last_error, ..
            } => {
                assert_eq!(reason, DownReason::ChannelSilent);
                assert_eq!(last_error, "refused");
            }
            Health::Up => panic!("expected down"),
        }
        assert_eq!(h.downs.load(Ordering::Relaxed), 1);
    }
}
