//! What a [`Cache::compute`](crate::Cache::compute) closure sees and
//! decides: [`Current`], [`Decision`] and [`Ttl`]. The adapters and the
//! `KvStore` speak in these too; the method itself belongs to the cache.

use std::time::Duration;

/// The live entry a [`Cache::compute`](crate::Cache::compute) closure sees.
#[derive(Debug)]
pub struct Current<'a, V> {
    /// The current value.
    pub value: &'a V,
    /// The remaining time to live; `None` if it never expires.
    pub ttl: Option<Duration>,
}

/// A time to live to set with a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Keep the entry's current deadline (none for a new entry): Redis's `KEEPTTL`.
    Keep,
    /// Never expire.
    Never,
    /// Expire this long from now.
    After(Duration),
}

/// What [`Cache::compute`](crate::Cache::compute) does with the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<V> {
    /// Change nothing.
    Nothing,
    /// Store this value with this time to live.
    Put(V, Ttl),
    /// Keep the value; change the time to live (ignored when there is no entry).
    SetTtl(Ttl),
    /// Remove the entry.
    Remove,
}
