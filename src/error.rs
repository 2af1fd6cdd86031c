//! The crate's error types.
//!
//! Each operation that can fail has its own error type; all convert into
//! [`Error`], whose [`source`](std::error::Error::source) leads back to it.

use std::fmt;

/// A [`CacheBuilder`](crate::CacheBuilder) setting that cannot work.
///
/// Returned by `build()`; fix the named setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_capacity(0)`: a cache that can hold nothing.
    #[error("max_capacity must be at least 1")]
    ZeroCapacity,
    /// `shards(n)` with `n` not a power of two in 1..=65536.
    #[error("shards must be a power of two between 1 and 65536, got {0}")]
    InvalidShards(usize),
    /// A zero `time_to_live` or `time_to_idle` (every entry would be expired on arrival).
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A `time_to_live` or `time_to_idle` beyond what deadlines can hold.
    #[error("{0} must be at most {max_days} days", max_days = crate::builder::MAX_TTL_DAYS)]
    DurationTooLong(&'static str),
}

/// A write refused because the cache is full and its policy never evicts
/// (Redis's `noeviction`), or because the entry alone outweighs its shard's
/// share of the capacity. Hands the key and value back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("cache is full: the entry does not fit and the policy does not evict")]
pub struct CapacityError<K, V> {
    /// The key that was not inserted.
    pub key: K,
    /// The value that was not inserted.
    pub value: V,
}

impl<K, V> fmt::Debug for CapacityError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CapacityError { .. }")
    }
}

/// Any error this crate returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`BuildError`].
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A write did not fit; see [`CapacityError`].
    #[error("cache is full: the entry does not fit and the policy does not evict")]
    Capacity,
}

impl<K, V> From<CapacityError<K, V>> for Error {
    fn from(_: CapacityError<K, V>) -> Self {
        Self::Capacity
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
