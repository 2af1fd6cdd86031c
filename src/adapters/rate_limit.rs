//! [`RateLimiter`]: a token bucket or a sliding window per key, exact under
//! concurrency.
//!
//! Each key's state lives in a [`Cache`] entry and every check is one
//! [`Cache::compute`]: the state is read, the request admitted or refused,
//! and the new state written under the key's shard lock, so no two checks of
//! one key interleave and the limit holds exactly however many threads call.
//!
//! * **Token bucket** ([`RateLimiterBuilder::token_bucket`]): `burst` tokens,
//!   refilled at `rate` per `per`. Implemented as GCRA (the "generic cell
//!   rate algorithm"): the state is one timestamp, the theoretical arrival
//!   time, in integer nanoseconds, so there is no floating-point drift.
//! * **Sliding window** ([`RateLimiterBuilder::sliding_window`]): at most
//!   `limit` admissions in any window of length `window`, counted exactly
//!   from a log of admission times (no two-window approximation). The log
//!   holds at most one 16-byte record per admitted call in the window, in a
//!   buffer that grows by doubling and keeps its size while the key is
//!   tracked, so a key costs up to about `32 × limit` bytes: keep limits per
//!   key moderate (thousands, not millions).
//!
//! Decisions are exact for about 34 years of the clock after the limiter is
//! built (the range of the cache's deadlines); past that, where a key's
//! state could no longer be kept until it stops mattering, every check is
//! refused: the limiter fails closed, never open.
//!
//! Idle keys are reclaimed: an entry expires when its state no longer
//! matters (the bucket is full again, or the window has passed), after which
//! a check behaves exactly as on a fresh key. [`max_keys`](RateLimiterBuilder::max_keys)
//! is one budget for all keys: up to that many keys keep their state
//! whichever shards they hash to. Past it, a new key's state evicts another
//! key's (the least recently checked of the new key's shard), and a key
//! evicted while still limited starts afresh: size `max_keys` above the
//! number of keys active within one refill time or window.

use super::SharedClock;
use crate::clock::Clock;
use crate::compute::{Decision as Compute, Ttl};
use crate::{Cache, Policy};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// The default number of keys tracked: one million.
pub(crate) const DEFAULT_MAX_KEYS: u64 = 1_000_000;

/// The longest refill time or window, in nanoseconds: far from overflowing
/// any deadline arithmetic.
const MAX_NANOS: u64 = crate::MAX_TTL_DAYS * 86_400 * 1_000_000_000;

/// The last instant, in nanoseconds from the limiter's origin, until which a
/// key's state can be kept: the cache's latest deadline, less a second for
/// the cache having started its count a moment before the limiter did.
const HORIZON_NANOS: u64 =
    (crate::policy::node::meta::DEADLINE_MAX - 1_000).saturating_mul(1_000_000);

/// The answer to a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateDecision {
    /// Whether the request is admitted (and counted).
    pub allowed: bool,
    /// How many more single requests would be admitted right now.
    pub remaining: u32,
    /// When refused, how long until the same request would be admitted
    /// (zero when admitted).
    pub retry_after: Duration,
}

/// A rate limiter that cannot be built or a check that can never pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A zero rate, burst, limit or period.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A `check_n` asking for more than the limiter can ever admit at once.
    #[error("{requested} requests can never be admitted at once: the limit is {limit}")]
    ExceedsLimit {
        /// The `n` asked for.
        requested: u32,
        /// The burst or window limit.
        limit: u32,
    },
    /// A refill time (`burst` × the time per token) or window over
    /// [`MAX_TTL_DAYS`](crate::MAX_TTL_DAYS) days.
    #[error("{0} must be at most {max} days", max = crate::MAX_TTL_DAYS)]
    TooLong(&'static str),
    /// `max_keys(0)`.
    #[error(transparent)]
    Build(#[from] crate::BuildError),
}

/// Per-key state.
#[derive(Clone)]
enum State {
    /// GCRA's theoretical arrival time, in nanoseconds of the limiter's
    /// time (see `RateLimiter::origin`).
    Tat(u64),
    /// Admission times and counts within the window, oldest first.
    Log(Arc<Mutex<Log>>),
}

#[derive(Default)]
struct Log {
    admitted: VecDeque<(u64, u32)>,
    total: u64,
}

#[derive(Debug, Clone, Copy)]
enum Algorithm {
    /// Emission interval `t` (nanoseconds per token) and `burst` tokens.
    Gcra {
        t: u64,
        burst: u32,
    },
    Window {
        limit: u32,
        window: u64,
    },
}

impl Algorithm {
    /// The longest a key's state must be kept after a check, in
    /// nanoseconds: a full bucket's worth of emission intervals, or a window.
    fn longest_state(self) -> u64 {
        match self {
            Self::Gcra { t, burst } => t.saturating_mul(u64::from(burst)),
            Self::Window { window, .. } => window,
        }
    }
}

/// The answer when a check cannot be admitted safely (see
/// [`RateLimiter::check_n`]).
const REFUSED: RateDecision = RateDecision {
    allowed: false,
    remaining: 0,
    retry_after: Duration::MAX,
};

/// Configures a [`RateLimiter`]; from [`RateLimiter::builder`].
#[must_use = "a builder does nothing until an algorithm is chosen"]
pub struct RateLimiterBuilder<K = String> {
    max_keys: u64,
    clock: SharedClock,
    _keys: std::marker::PhantomData<fn(K)>,
}

impl<K> fmt::Debug for RateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimiterBuilder<K> {
    /// The most keys tracked at once (default 1,000,000), counted over the
    /// whole limiter: no key's state is evicted while fewer keys have state
    /// that still matters (state that no longer limits its key gives up its
    /// place first, within a millisecond of when it stops mattering: the
    /// cache's deadlines are whole milliseconds).
    pub fn max_keys(mut self, max: u64) -> Self {
        self.max_keys = max;
        self
    }

    /// The time source (a [`MockClock`](crate::MockClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock(Arc::new(clock));
        self
    }

    /// A token bucket per key: up to `burst` requests at once, refilled at
    /// `rate` tokens per `per` (one token every `per / rate`, rounded up to
    /// a whole nanosecond: never faster than `rate`).
    ///
    /// # Errors
    ///
    /// [`RateLimitError::Zero`] for a zero `rate`, `per` or `burst`;
    /// [`RateLimitError::Build`] for `max_keys(0)`.
    pub fn token_bucket(
        self,
        rate: u32,
        per: Duration,
        burst: u32,
    ) -> Result<RateLimiter<K>, RateLimitError> {
        nonzero("rate", rate)?;
        nonzero("burst", burst)?;
        if per.is_zero() {
            return Err(RateLimitError::Zero("per"));
        }
        // The time per token, rounded up: rounded down, a `per` that `rate`
        // does not divide in nanoseconds would refill faster than `rate`.
        let t = super::nanos(per).div_ceil(u64::from(rate)).max(1);
        if t.saturating_mul(u64::from(burst)) > MAX_NANOS {
            return Err(RateLimitError::TooLong("the time to refill the burst"));
        }
        self.build(Algorithm::Gcra { t, burst })
    }

    /// A sliding window per key: at most `limit` requests in any `window`.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::Zero`] for a zero `limit` or `window`;
    /// [`RateLimitError::Build`] for `max_keys(0)`.
    pub fn sliding_window(
        self,
        limit: u32,
        window: Duration,
    ) -> Result<RateLimiter<K>, RateLimitError> {
        nonzero("limit", limit)?;
        if window.is_zero() {
            return Err(RateLimitError::Zero("window"));
        }
        let window = super::nanos(window);
        if window > MAX_NANOS {
            return Err(RateLimitError::TooLong("window"));
        }
        self.build(Algorithm::Window { limit, window })
    }

    fn build(self, algorithm: Algorithm) -> Result<RateLimiter<K>, RateLimitError> {
        let states = Cache::builder()
            .max_capacity(self.max_keys)
            // One budget for all shards: a key's state is evicted only when
            // `max_keys` keys have state, not when its shard's share fills.
            .shared_capacity()
            .expired_first()
            .policy(Policy::lru())
            .clock(self.clock.clone())
            .build()?;
        Ok(RateLimiter {
            states,
            origin: super::nanos(self.clock.monotonic()),
            clock: self.clock,
            algorithm,
        })
    }
}

fn nonzero(name: &'static str, n: u32) -> Result<(), RateLimitError> {
    if n == 0 {
        Err(RateLimitError::Zero(name))
    } else {
        Ok(())
    }
}

/// Admits or refuses requests per key. Cheap to clone: clones share state.
///
/// ```
/// use shardcache::{MockClock};
/// use shardcache::adapters::{RateLimiter};
/// use std::time::Duration;
///
/// let clock = MockClock::new();
/// // 10 requests per second, bursts of up to 5.
/// let limiter: RateLimiter = RateLimiter::builder()
///     .clock(clock.clone())
///     .token_bucket(10, Duration::from_secs(1), 5)?;
/// for _ in 0..5 {
///     assert!(limiter.check("api-key-1").allowed);
/// }
/// let refused = limiter.check("api-key-1");
/// assert!(!refused.allowed);
/// assert_eq!(refused.retry_after, Duration::from_millis(100));
/// clock.advance(Duration::from_millis(100));
/// assert!(limiter.check("api-key-1").allowed);
/// # Ok::<(), shardcache::adapters::RateLimitError>(())
/// ```
pub struct RateLimiter<K = String> {
    states: Cache<K, State>,
    clock: SharedClock,
    /// The clock's nanoseconds when the limiter was built: its times count
    /// from there, so that a clock with a far origin (the Unix epoch, or
    /// centuries of a test clock) leaves room for their arithmetic.
    origin: u64,
    algorithm: Algorithm,
}

impl<K> Clone for RateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            states: self.states.clone(),
            clock: self.clock.clone(),
            origin: self.origin,
            algorithm: self.algorithm,
        }
    }
}

impl<K> fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimiter<K> {
    /// A builder: set `max_keys` and the clock, then choose the algorithm.
    pub fn builder() -> RateLimiterBuilder<K> {
        RateLimiterBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            clock: SharedClock::system(),
            _keys: std::marker::PhantomData,
        }
    }

    /// Checks (and on success counts) one request for `key`.
    pub fn check(&self, key: impl Into<K>) -> RateDecision {
        // n = 1 never exceeds a limit (limits are at least 1).
        self.check_n(key, 1).unwrap_or(REFUSED)
    }

    /// Checks `n` requests for `key` as one: all admitted, or none.
    ///
    /// If the key's state cannot be stored, or could not be kept until it
    /// stops mattering (about 34 years of the clock after the limiter was
    /// built), the request is refused: the limiter fails closed. The state
    /// of a new key at [`max_keys`](RateLimiterBuilder::max_keys) evicts
    /// another's; it finds no room only when its own shard holds no other
    /// key and the other shards stay locked by concurrent checks while it
    /// tries again for a moment, a few yields of the CPU (then
    /// `retry_after` is one second).
    ///
    /// # Errors
    ///
    /// [`RateLimitError::ExceedsLimit`] when `n` is above the burst or window
    /// limit, so that it could never be admitted.
    ///
    /// ```
    /// use shardcache::{MockClock};
    /// use shardcache::adapters::{RateLimiter};
    /// use std::time::Duration;
    /// let limiter: RateLimiter<u64> = RateLimiter::builder()
    ///     .clock(MockClock::new())
    ///     .sliding_window(100, Duration::from_secs(60))?;
    /// assert_eq!(limiter.check_n(7u64, 60)?.remaining, 40);
    /// assert!(!limiter.check_n(7u64, 41)?.allowed);
    /// assert!(limiter.check_n(7u64, 101).is_err());
    /// # Ok::<(), shardcache::adapters::RateLimitError>(())
    /// ```
    pub fn check_n(&self, key: impl Into<K>, n: u32) -> Result<RateDecision, RateLimitError> {
        let limit = match self.algorithm {
            Algorithm::Gcra { burst, .. } => burst,
            Algorithm::Window { limit, .. } => limit,
        };
        if n > limit {
            return Err(RateLimitError::ExceedsLimit {
                requested: n,
                limit,
            });
        }
        let algorithm = self.algorithm;
        let outcome = self.states.compute(key.into(), |current| {
            // Read under the key's lock: a check that waited for it (or was
            // preempted) is stamped when it is decided, not earlier than a
            // check already decided.
            let now = super::nanos(self.clock.monotonic()).saturating_sub(self.origin);
            if now.saturating_add(algorithm.longest_state()) > HORIZON_NANOS {
                // The state would be dropped before it stops mattering, and
                // every later check would pass as on a fresh key.
                return (Compute::Nothing, REFUSED);
            }
            let state = current.map(|c| c.value);
            match algorithm {
                Algorithm::Gcra { t, burst } => gcra(state, now, n, t, burst),
                Algorithm::Window { limit, window } => sliding(state, now, n, limit, window),
            }
        });
        Ok(outcome.unwrap_or(RateDecision {
            allowed: false,
            remaining: 0,
            retry_after: Duration::from_secs(1),
        }))
    }

    /// Forgets `key`'s state: its next check is as on a fresh key.
    pub fn reset(&self, key: &K) {
        self.states.remove(key);
    }

    /// The number of keys with state (including expired ones not yet reclaimed).
    pub fn tracked_keys(&self) -> usize {
        self.states.len()
    }

    /// Reclaims the state of every idle key now (it also happens as checks come).
    pub fn purge_idle(&self) {
        self.states.purge_expired();
    }
}

/// A TTL of exactly `nanos`: the state matters for that long after the
/// limiter's reading of the clock. The cache counts it from its own reading,
/// taken later, and rounds the deadline up to its next millisecond, so the
/// state never leaves before it stops mattering, and holds its place at
/// most a millisecond after.
fn ttl_for(nanos: u64) -> Ttl {
    Ttl::After(Duration::from_nanos(nanos))
}

/// GCRA: admit if the theoretical arrival time after `n` more cells stays
/// within `burst` emission intervals of now.
fn gcra(
    state: Option<&State>,
    now: u64,
    n: u32,
    t: u64,
    burst: u32,
) -> (Compute<State>, RateDecision) {
    let tat = match state {
        Some(State::Tat(tat)) => (*tat).max(now),
        _ => now,
    };
    let tolerance = t.saturating_mul(u64::from(burst));
    let new_tat = tat.saturating_add(t.saturating_mul(u64::from(n)));
    let remaining_of = |tat: u64| {
        let used = tat - now;
        u32::try_from(tolerance.saturating_sub(used) / t).unwrap_or(u32::MAX)
    };
    if new_tat - now <= tolerance {
        let decision = RateDecision {
            allowed: true,
            remaining: remaining_of(new_tat),
            retry_after: Duration::ZERO,
        };
        let ttl = ttl_for(new_tat - now);
        (Compute::Put(State::Tat(new_tat), ttl), decision)
    } else {
        let decision = RateDecision {
            allowed: false,
            remaining: remaining_of(tat),
            retry_after: Duration::from_nanos(new_tat - now - tolerance),
        };
        (Compute::Nothing, decision)
    }
}

/// The exact sliding-window log: admit if the admissions in `(now - window,
/// now]` plus `n` stay within `limit`.
fn sliding(
    state: Option<&State>,
    now: u64,
    n: u32,
    limit: u32,
    window: u64,
) -> (Compute<State>, RateDecision) {
    let (log, fresh) = match state {
        Some(State::Log(log)) => (log.clone(), false),
        _ => (Arc::new(Mutex::new(Log::default())), true),
    };
    let decision = {
        let mut log = log.lock();
        while let Some(&(at, count)) = log.admitted.front() {
            if at.saturating_add(window) > now {
                break;
            }
            log.total -= u64::from(count);
            log.admitted.pop_front();
        }
        let limit64 = u64::from(limit);
        if log.total + u64::from(n) <= limit64 {
            if n > 0 {
                log.admitted.push_back((now, n));
                log.total += u64::from(n);
            }
            RateDecision {
                allowed: true,
                remaining: u32::try_from(limit64 - log.total).unwrap_or(0),
                retry_after: Duration::ZERO,
            }
        } else {
            // Wait until enough of the oldest admissions leave the window.
            let mut excess = log.total + u64::from(n) - limit64;
            let mut frees_at = now;
            for &(at, count) in &log.admitted {
                frees_at = at.saturating_add(window);
                excess = excess.saturating_sub(u64::from(count));
                if excess == 0 {
                    break;
                }
            }
            RateDecision {
                allowed: false,
                remaining: u32::try_from(limit64.saturating_sub(log.total)).unwrap_or(0),
                retry_after: Duration::from_nanos(frees_at.saturating_sub(now)),
            }
        }
    };
    let ttl = ttl_for(window);
    let action = match (fresh, decision.allowed) {
        (true, true) => Compute::Put(State::Log(log), ttl),
        (true, false) => Compute::Nothing,
        (false, true) => Compute::SetTtl(ttl),
        (false, false) => Compute::Nothing,
    };
    (action, decision)
}
