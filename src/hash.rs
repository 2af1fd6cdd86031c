//! The default hasher and how a hash picks a shard.

use std::hash::{BuildHasher, Hash};

/// The default [`BuildHasher`] for [`Cache`](crate::Cache): `ahash`, randomly
/// keyed per cache.
///
/// The type is opaque so the algorithm can change without breaking callers.
///
/// ```
/// use shardcache::DefaultHashBuilder;
/// use std::hash::BuildHasher;
/// let s = DefaultHashBuilder::default();
/// assert_eq!(s.hash_one(42u64), s.hash_one(42u64));
/// ```
#[derive(Clone, Default)]
pub struct DefaultHashBuilder(ahash::RandomState);

impl std::fmt::Debug for DefaultHashBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DefaultHashBuilder")
    }
}

impl BuildHasher for DefaultHashBuilder {
    type Hasher = ahash::AHasher;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// Hashes `key` once; the result picks the shard and is reused inside it.
#[inline]
pub(crate) fn hash_of<Q: Hash + ?Sized, S: BuildHasher>(hasher: &S, key: &Q) -> u64 {
    hasher.hash_one(key)
}

/// The bit the shard index starts at.
///
/// A shard's table takes its home slot from the bottom of the hash, so
/// sharding on those bits would leave most slots of every shard unused; the
/// shard comes from the middle bits instead. Bits 40..57 stay clear of the
/// slot index for tables of up to 2^40 slots and caches of up to 2^17 shards.
/// (The table's tags mix every bit, so they do not care.)
const SHARD_SHIFT: u32 = 40;

/// The shard a hash belongs to, given `mask = shards - 1`.
#[inline]
pub(crate) fn shard_index(hash: u64, mask: usize) -> usize {
    (hash >> SHARD_SHIFT) as usize & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_index_spreads_keys() {
        let s = DefaultHashBuilder::default();
        let mut counts = [0u32; 8];
        for k in 0..80_000u64 {
            counts[shard_index(hash_of(&s, &k), 7)] += 1;
        }
        for c in counts {
            assert!(
                (9_000..11_000).contains(&c),
                "unbalanced shards: {counts:?}"
            );
        }
    }
}
