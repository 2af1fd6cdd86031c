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

    /// Whether a local entry may be served: while up, only if the
    /// invalidation channel was proven live within the bound; while down,
    /// always (degraded mode).
    pub(crate) fn local_servable(&self) -> bool {
        if !self.link.health.is_up() {
            return true;
        }
        if self.link.unproven_for() <= self.cfg.liveness_bound {
            return true;
        }
        bump(&self.stats.skipped);
        false
    }

    /// The local copy of `key`, if it may be served.
    pub(crate) fn local_get(&self, key: &str) -> Option<Bytes> {
        let v = self.local.get(key)?;
        self.local_servable().then_some(v)
    }
}
