//! How much of the capacity an entry uses.

use crate::callback::Held;
use crate::sync::Arc;

/// Gives each entry a weight; the cache keeps the sum of weights within
/// `max_capacity`. Any `Fn(&K, &V) -> u32 + Send + Sync` is one; see
/// `CacheBuilder::weigher` for the contract.
pub(crate) trait Weigher<K, V>: Send + Sync + 'static {
    /// The weight of `key` with `value`.
    fn weigh(&self, key: &K, value: &V) -> u32;
}

impl<K, V, F> Weigher<K, V> for F
where
    F: Fn(&K, &V) -> u32 + Send + Sync + 'static,
{
    fn weigh(&self, key: &K, value: &V) -> u32 {
        self(key, value)
    }
}

/// What a write knows of its entry's weight before the entry is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weight {
    /// Not weighed yet: the weigher's answer plus this much weight it
    /// cannot see in the value (see
    /// [`Cache::compute_slot`](crate::Cache::compute_slot)); 0 for most
    /// writes.
    Hidden(u64),
    /// Weighed already, what the weigher cannot see included (by a batch's
    /// plan, or kept by the entry being put back): the weigher is not asked
    /// again.
    Known(u64),
}

/// The weigher in use: every entry weighs 1, or a user's function.
pub(crate) enum Weights<K, V> {
    Unit,
    Custom(Arc<dyn Weigher<K, V>>),
}

impl<K, V> Clone for Weights<K, V> {
    fn clone(&self) -> Self {
        match self {
            Self::Unit => Self::Unit,
            Self::Custom(w) => Self::Custom(w.clone()),
        }
    }
}

impl<K: 'static, V: 'static> Weights<K, V> {
    /// The weight of `key` with `value`: 1 under unit weights, else the
    /// weigher's answer plus `hidden`, weight the weigher cannot see in the
    /// value (see [`Cache::compute_slot`](crate::Cache::compute_slot)). The
    /// weigher runs under the lock of the shard `held`.
    #[inline]
    pub(crate) fn weigh(&self, key: &K, value: &V, hidden: u64, held: Held) -> u64 {
        match self {
            Self::Unit => 1,
            Self::Custom(w) => {
                let weight = crate::callback::under_shard_lock(held, || w.weigh(key, value));
                u64::from(weight).saturating_add(hidden)
            }
        }
    }

    /// The weight of `key` with `value` as `weight` says: 1 under unit
    /// weights, a [`Weight::Known`] as it is (the weigher is not asked),
    /// else as [`weigh`](Self::weigh) gives it.
    #[inline]
    pub(crate) fn weight(&self, key: &K, value: &V, weight: Weight, held: Held) -> u64 {
        match (self, weight) {
            (Self::Unit, _) => 1,
            (Self::Custom(_), Weight::Known(w)) => w,
            (Self::Custom(_), Weight::Hidden(hidden)) => self.weigh(key, value, hidden, held),
        }
    }
}

impl<K, V> Weights<K, V> {
    /// Whether every entry weighs 1 (nothing to remember per entry).
    #[inline]
    pub(crate) fn is_unit(&self) -> bool {
        matches!(self, Self::Unit)
    }
}
