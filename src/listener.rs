//! Removal notifications.

use crate::sync::Arc;

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Its time-to-live or time-to-idle ran out.
    Expired,
    /// The policy evicted it to stay within capacity.
    Evicted,
    /// `remove`, `retain`, `invalidate_if` or `clear` took it out.
    Removed,
    /// An insert of the same key replaced its value.
    Replaced,
}

impl RemovalCause {
    /// True for the causes the cache chose itself (expiry and eviction).
    pub fn was_evicted(self) -> bool {
        matches!(self, Self::Expired | Self::Evicted)
    }
}

/// Called with each removed key, value and cause, after the shard's lock is
/// released, on the thread that caused the removal.
pub type Listener<K, V> = Arc<dyn Fn(K, V, RemovalCause) + Send + Sync + 'static>;

/// Entries removed while a shard was locked, handed out after it is unlocked.
pub(crate) type Removed<K, V> = Vec<(K, V, RemovalCause)>;
