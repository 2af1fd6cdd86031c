//! Whether Redis is usable right now, and since when it is not.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The Redis tier's state, as [`TieredCache::health`](super::TieredCache::health) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Connected and subscribed: reads and writes go to Redis.
    Up,
    /// Redis is unreachable, timed out or refused us: operations run on the
    /// local tier and a background task reconnects with capped backoff.
    Down {
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

/// The shared flag that every operation reads (one relaxed-enough atomic
/// load), plus the details of the outage behind a lock.
#[derive(Debug)]
pub(crate) struct HealthState {
    up: AtomicBool,
    down: Mutex<Option<(String, Instant)>>,
}

impl HealthState {
    /// A tier that starts down, with `reason`.
    pub(crate) fn new_down(reason: &str) -> Self {
        Self {
            up: AtomicBool::new(false),
            down: Mutex::new(Some((reason.to_string(), Instant::now()))),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn set_up(&self) {
        let mut down = self.down.lock();
        *down = None;
        self.up.store(true, Ordering::Release);
    }

    /// Records `error`; returns true if this call took the tier down (it
    /// was up), false if it was already down (only the error is updated).
    pub(crate) fn set_down(&self, error: &str) -> bool {
        let mut down = self.down.lock();
        let was_up = self.up.swap(false, Ordering::AcqRel);
        match down.as_mut() {
            Some((last, _)) if !was_up => *last = error.to_string(),
            _ => *down = Some((error.to_string(), Instant::now())),
        }
        was_up
    }

    pub(crate) fn snapshot(&self) -> Health {
        let down = self.down.lock();
        match (&*down, self.is_up()) {
            (Some((last_error, since)), false) => Health::Down {
                last_error: last_error.clone(),
                since: *since,
            },
            _ => Health::Up,
        }
    }
}
