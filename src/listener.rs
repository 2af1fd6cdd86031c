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
    /// A write of the same key replaced its live value (a value already
    /// past its time is reported [`Expired`](Self::Expired)).
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
///
/// A listener holds no lock of the cache while it runs, and may call any
/// method of the cache that notified it; see
/// [`CacheBuilder::eviction_listener`](crate::CacheBuilder::eviction_listener)
/// for the one case where some of them are refused.
pub type Listener<K, V> = Arc<dyn Fn(K, V, RemovalCause) + Send + Sync + 'static>;

/// One removed entry and why it left.
pub(crate) type Removal<K, V> = (K, V, RemovalCause);

/// Entries removed while a shard was locked, handed out (and dropped) after
/// it is unlocked. The first one is stored inline: a write usually removes at
/// most one entry, and this keeps the write path free of allocation.
pub(crate) struct Removed<K, V> {
    first: Option<(K, V, RemovalCause)>,
    rest: Vec<(K, V, RemovalCause)>,
}

impl<K, V> Removed<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: (K, V, RemovalCause)) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push(item);
        }
    }

    /// Whether nothing was removed.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Takes out the first removal (nearly always the only one), for a
    /// caller that handles it without a call per item.
    #[inline]
    pub(crate) fn take_first(&mut self) -> Option<Removal<K, V>> {
        self.first.take()
    }

    /// The removals after the first, in order.
    #[inline]
    pub(crate) fn into_rest(self) -> Vec<Removal<K, V>> {
        self.rest
    }

    /// The first removal's cause, if any.
    #[inline]
    pub(crate) fn first_cause(&self) -> Option<RemovalCause> {
        self.first.as_ref().map(|&(_, _, cause)| cause)
    }

    /// The causes of the removals after the first, in order.
    #[inline]
    pub(crate) fn rest_causes(&self) -> impl Iterator<Item = RemovalCause> + '_ {
        self.rest.iter().map(|&(_, _, cause)| cause)
    }

    /// Keeps only the removals for which `keep` returns true, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Removal<K, V>) -> bool) {
        let all = std::mem::replace(self, Self::new());
        all.into_iter()
            .filter(|r| keep(r))
            .for_each(|r| self.push(r));
    }

    /// Every removal, in order, borrowed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Removal<K, V>> + '_ {
        self.first.iter().chain(self.rest.iter())
    }

    pub(crate) fn extend(&mut self, items: impl IntoIterator<Item = (K, V, RemovalCause)>) {
        items.into_iter().for_each(|i| self.push(i));
    }
}

impl<K, V> IntoIterator for Removed<K, V> {
    type Item = (K, V, RemovalCause);
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<(K, V, RemovalCause)>,
        std::vec::IntoIter<(K, V, RemovalCause)>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}
