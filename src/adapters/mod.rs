//! Adapters for the three jobs services bring to a cache, built on
//! [`Cache`](crate::Cache):
//!
//! * [`PermissionCache`]: authorization decisions keyed by (subject, resource
//!   kind, resource id, action), one load per cold key however many requests
//!   miss it at once, and revocation of everything a subject or a resource
//!   touched in one call, without scanning the cache.
//! * [`SessionStore`]: sessions with random 128-bit ids, absolute and idle
//!   timeouts, per-user destruction, and (with [`SessionStore::open`]) an
//!   append-only log so that sessions survive a restart.
//! * [`RateLimiter`]: a token bucket (GCRA) or an exact sliding-window log
//!   per key, atomic per key through [`Cache::compute`](crate::Cache::compute),
//!   so concurrent callers never get more than the limit.

mod permission;
mod rate_limit;
mod session;

pub use permission::{PermissionCache, PermissionCacheBuilder, PermissionKey, PermissionStats};
pub use rate_limit::{RateDecision, RateLimitError, RateLimiter, RateLimiterBuilder};
pub use session::{Session, SessionConfig, SessionError, SessionId, SessionStore};

use crate::clock::Clock;
use std::sync::Arc;
use std::time::Duration;

/// One clock shared by an adapter and the cache inside it.
#[derive(Clone)]
pub(crate) struct SharedClock(pub(crate) Arc<dyn Clock>);

impl SharedClock {
    pub(crate) fn system() -> Self {
        Self(Arc::new(crate::clock::SystemClock::new()))
    }
}

impl Clock for SharedClock {
    fn monotonic(&self) -> Duration {
        self.0.monotonic()
    }

    fn wall(&self) -> Duration {
        self.0.wall()
    }
}

/// A duration as nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration as whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
