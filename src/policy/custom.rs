//! The public eviction trait, [`EvictionPolicy`], and the view of a shard's
//! entries it works on, [`Entries`].
//!
//! Owns the contract every policy keeps, built-in or user-written. The
//! built-ins implement the trait in `builtin.rs`; the shard calls them
//! through a private enum (one `match` per hook, no virtual call on the
//! write path) and a user's policy through a `Box<dyn EvictionPolicy>`.
//! Calls only the node types of `node.rs`.

use super::node::{meta, Nodes};
use std::fmt;

/// An eviction strategy's state for one shard.
///
/// The cache builds one value per shard (see [`Policy::custom`](crate::Policy::custom)) and calls
/// its hooks with that shard's write lock held, so a policy is
/// single-threaded and needs no locks of its own. Entries are named by
/// *tokens*: small integers (`u32`) that stay the same while an entry is
/// resident and may be reused after it leaves. A policy keeps whatever it
/// needs per token (a queue, a list threaded through a `Vec` indexed by
/// token, a bit set) and reads the rest through [`Entries`].
///
/// # The contract
///
/// | hook | when the shard calls it |
/// |------|-------------------------|
/// | [`on_insert`](Self::on_insert) | a new entry got `token`; if that put the shard over capacity, `victim` is asked next (and may name this very token, which is how a policy refuses admission) |
/// | [`on_remove`](Self::on_remove) | `token` leaves for any reason: evicted (after [`victim`](Self::victim) named it), expired, removed, cleared one by one |
/// | [`victim`](Self::victim) | the shard is over capacity and must evict one entry |
/// | [`maintain`](Self::maintain) | after an insert that needed no eviction (optional) |
/// | [`clear`](Self::clear) | every entry was dropped at once; no `on_remove` follows |
///
/// * Every hook runs under the shard's **write lock**. Reads never call the
///   policy: a hit adds to the entry's hit counter (see
///   [`Entries::take_hits`]), which the policy reads when it next looks.
/// * A replaced value keeps its token: no `on_remove`/`on_insert` pair, one
///   more hit instead.
/// * [`victim`](Self::victim) must name a **live** token, one passed to
///   `on_insert` and not yet to `on_remove`. It must not unlink it: the shard
///   removes the entry and then calls `on_remove` with it. Returning `None`
///   means nothing can be evicted now, and the write that needed room is
///   refused (as `noeviction` does). The shard may ask again at once if the
///   token named is the one being written. A token that is not live is
///   treated as `None`, so a faulty policy cannot remove the wrong entry or
///   crash the cache, but the conformance suite reports it.
/// * Hooks must not panic and must do bounded work: they run inside a lock
///   every other writer of the shard waits for. A hook that panics fails
///   the write it ran for, and the panic reaches that write's caller; the
///   cache stays whole, but what that write had already evicted or
///   replaced is gone without a notice to the eviction listener.
///
/// The conformance suite (`shardcache::conformance`, feature `conformance`)
/// checks these rules and a model of the whole cache against any policy.
pub trait EvictionPolicy: Send + Sync + 'static {
    /// A new entry holds `token`; `hash` is its key's hash (the same value
    /// [`Entries::hash`] recomputes).
    fn on_insert(&mut self, entries: &mut Entries<'_>, token: u32, hash: u64);

    /// `token` is leaving (after `victim` named it, or for any other reason).
    fn on_remove(&mut self, entries: &mut Entries<'_>, token: u32);

    /// The live token to evict next, or `None` if nothing may be evicted.
    fn victim(&mut self, entries: &mut Entries<'_>) -> Option<u32>;

    /// Work to do after an insert that needed no eviction. Does nothing by
    /// default.
    fn maintain(&mut self, entries: &mut Entries<'_>) {
        let _ = entries;
    }

    /// Every entry was dropped at once: forget them all.
    fn clear(&mut self);
}

/// What a policy can see of its shard's entries: per token, the hits since
/// it last looked and the key's hash.
pub struct Entries<'a> {
    nodes: &'a mut dyn Nodes,
}

impl<'a> Entries<'a> {
    pub(crate) fn new(nodes: &'a mut dyn Nodes) -> Self {
        Self { nodes }
    }

    /// The nodes themselves, for the built-ins.
    pub(crate) fn nodes(&mut self) -> &mut dyn Nodes {
        self.nodes
    }

    /// Whether `token` holds an entry now.
    pub fn is_live(&self, token: u32) -> bool {
        self.nodes.contains(token)
    }

    /// Hits on `token` since the policy last took them (saturating at 15),
    /// and clears the count. 0 for a token that is not live.
    pub fn take_hits(&mut self, token: u32) -> u8 {
        if !self.is_live(token) {
            return 0;
        }
        self.nodes.node(token).take_hits() as u8
    }

    /// Hits on `token` since the policy last took them, leaving the count.
    pub fn hits(&self, token: u32) -> u8 {
        if !self.is_live(token) {
            return 0;
        }
        meta::hits(self.nodes.node(token).get()) as u8
    }

    /// The hash of `token`'s key (recomputed), or `None` if it is not live.
    pub fn hash(&self, token: u32) -> Option<u64> {
        self.is_live(token).then(|| self.nodes.hash_of(token))
    }
}

impl fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entries").finish_non_exhaustive()
    }
}

/// A boxed policy is a policy: it forwards every hook.
impl EvictionPolicy for Box<dyn EvictionPolicy> {
    fn on_insert(&mut self, entries: &mut Entries<'_>, token: u32, hash: u64) {
        (**self).on_insert(entries, token, hash);
    }
    fn on_remove(&mut self, entries: &mut Entries<'_>, token: u32) {
        (**self).on_remove(entries, token);
    }
    fn victim(&mut self, entries: &mut Entries<'_>) -> Option<u32> {
        (**self).victim(entries)
    }
    fn maintain(&mut self, entries: &mut Entries<'_>) {
        (**self).maintain(entries);
    }
    fn clear(&mut self) {
        (**self).clear();
    }
}

// The shard's calls into a user's policy: out of line and cold, so that the
// built-ins' `match` arms stay small enough to inline into the write path.

#[cold]
#[inline(never)]
pub(super) fn on_insert(p: &mut dyn EvictionPolicy, nodes: &mut dyn Nodes, idx: u32, hash: u64) {
    p.on_insert(&mut Entries::new(nodes), idx, hash);
}

#[cold]
#[inline(never)]
pub(super) fn on_remove(p: &mut dyn EvictionPolicy, nodes: &mut dyn Nodes, idx: u32) {
    p.on_remove(&mut Entries::new(nodes), idx);
}

#[cold]
#[inline(never)]
pub(super) fn maintain(p: &mut dyn EvictionPolicy, nodes: &mut dyn Nodes) {
    p.maintain(&mut Entries::new(nodes));
}

/// A victim that is not live is no victim (see the trait's contract).
#[cold]
#[inline(never)]
pub(super) fn victim(p: &mut dyn EvictionPolicy, nodes: &mut dyn Nodes) -> Option<u32> {
    p.victim(&mut Entries::new(nodes))
        .filter(|&v| nodes.contains(v))
}
