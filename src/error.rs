//! The core cache's error types.
//!
//! Each operation that can fail has its own error type; those of the cache
//! itself (building, a write that does not fit, the log) convert into
//! [`Error`]. The layers built on the cache have their own:
//! [`KvError`](crate::kv::KvError) in Redis's wording, the adapters'
//! `SessionError` and `RateLimitError`, and the tier's `TierError`. Every one
//! implements [`std::error::Error`], so `?` gathers any of them into a
//! `Box<dyn std::error::Error>`.

use crate::builder::BuildError;
use std::fmt;

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

/// A write to a [`PersistentCache`](crate::PersistentCache) that was not
/// kept; nothing changed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum WriteError<K, V> {
    /// The entry does not fit (see [`CapacityError`]); the key and value
    /// are handed back.
    #[error(transparent)]
    Full(CapacityError<K, V>),
    /// The log could not keep the write (a full disk, an I/O error, or a
    /// log that failed earlier and is not repaired yet).
    #[error(transparent)]
    Log(crate::persist::PersistError),
}

impl<K, V> fmt::Debug for WriteError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(e) => f.debug_tuple("Full").field(e).finish(),
            Self::Log(e) => f.debug_tuple("Log").field(e).finish(),
        }
    }
}

/// An error of the core cache: a bad setting, a write that does not fit, or
/// a log that could not keep a write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`BuildError`].
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A write did not fit; see [`CapacityError`].
    #[error("cache is full: the entry does not fit and the policy does not evict")]
    Capacity,
    /// The log failed; see [`PersistError`](crate::persist::PersistError).
    #[error(transparent)]
    Persist(#[from] crate::persist::PersistError),
}

impl<K, V> From<WriteError<K, V>> for Error {
    fn from(e: WriteError<K, V>) -> Self {
        match e {
            WriteError::Full(_) => Self::Capacity,
            WriteError::Log(e) => Self::Persist(e),
        }
    }
}

impl<K, V> From<CapacityError<K, V>> for Error {
    fn from(_: CapacityError<K, V>) -> Self {
        Self::Capacity
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
