//! The state every [`TieredCache`](super::TieredCache) handle and the
//! background task share: the settings, the local tier, the link to Redis
//! and the fill generations; what an invalidation message does to it.

use super::config::Config;
use super::invalidation::{self, Generations};
use super::link::Link;
use super::stats::{bump, Counters};
use crate::Cache;
use bytes::Bytes;

/// Everything the handles and the background task share.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) local: Cache<String, Bytes>,
    pub(crate) link: Link,
    pub(crate) instance_id: u64,
    pub(crate) stats: Counters,
    pub(crate) gens: Generations,
}

impl Shared {
    pub(crate) fn remote_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.cfg.prefix.len() + key.len());
        k.push_str(&self.cfg.prefix);
        k.push_str(key);
        k
    }

    /// A message on the channel: our own heartbeat proves the subscription
    /// live; another instance's invalidation drops our copy of its key.
    pub(crate) fn apply_message(&self, payload: &[u8]) {
        if let Some((sender, sent)) = invalidation::decode_heartbeat(payload) {
            if sender == self.instance_id {
                self.link.heard(sent);
            }
            return;
        }
        let Some((sender, key)) = invalidation::decode(payload) else {
            return;
        };
        if sender == self.instance_id {
            return;
        }
        self.drop_local(key);
        bump(&self.stats.received);
    }

    /// Drops the local copy of `key`, and any fill of it in flight.
    pub(crate) fn drop_local(&self, key: &str) {
        self.gens.bump(key);
        self.local.remove(key);
    }

    /// Drops every local copy, and every fill in flight.
    pub(crate) fn clear_local(&self) {
        self.gens.bump_all();
        self.local.clear();
    }

    /// Whether local entries may be served: while up, only if the
    /// invalidation channel was proven live within the bound; while down
    /// (degraded mode), unless the channel had already gone unproven past
    /// the bound when the tier went down (those entries were refused
    /// before, and going down does not make them any fresher).
    fn local_servable(&self) -> bool {
        if !self.link.health.is_up() {
            return !self.link.distrusted();
        }
        self.link.unproven_for() <= self.cfg.liveness_bound
    }

    /// The local copy of `key`, if it may be served. The channel is
    /// checked first: a heartbeat received before the read proves every
    /// invalidation published before its sending applied before the read.
    pub(crate) fn local_get(&self, key: &str) -> Option<Bytes> {
        let servable = self.local_servable();
        let v = self.local.get(key)?;
        if servable {
            Some(v)
        } else {
            bump(&self.stats.skipped);
            None
        }
    }
}
