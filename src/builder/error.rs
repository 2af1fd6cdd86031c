//! [`BuildError`]: a builder setting that cannot work, and the limits the
//! checks hold settings to.

/// The longest `time_to_live` / `time_to_idle` accepted, in days.
pub const MAX_TTL_DAYS: u64 = 10 * 365;

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
    #[error("{0} must be at most {max_days} days", max_days = MAX_TTL_DAYS)]
    DurationTooLong(&'static str),
    /// Refresh-ahead settings that cannot work together (the message says which).
    #[error("invalid refresh settings: {0}")]
    InvalidRefresh(&'static str),
    /// `log_schema("")`: a log schema needs a name.
    #[error("log_schema needs a non-empty name")]
    EmptyLogSchema,
}
