//! The built-in policies implement [`EvictionPolicy`], so that they can be
//! driven through the trait like a user's (the conformance suite does; the
//! cache itself calls them through `PolicyState`, statically).
//!
//! Adapters only: each hook hands the built-in its generic node view.

use super::clock::Clock;
use super::custom::{Entries, EvictionPolicy};
use super::sampled::Sampled;
use super::tinylfu::TinyLfu;

impl EvictionPolicy for Clock {
    fn on_insert(&mut self, entries: &mut Entries<'_>, token: u32, _hash: u64) {
        Clock::on_insert(self, entries.nodes(), token);
    }
    fn on_remove(&mut self, entries: &mut Entries<'_>, token: u32) {
        Clock::on_remove(self, entries.nodes(), token);
    }
    fn victim(&mut self, entries: &mut Entries<'_>) -> Option<u32> {
        Clock::victim(self, entries.nodes())
    }
    fn clear(&mut self) {
        Clock::clear(self);
    }
}

impl EvictionPolicy for Sampled {
    fn on_insert(&mut self, entries: &mut Entries<'_>, token: u32, _hash: u64) {
        Sampled::on_insert(self, entries.nodes(), token);
    }
    fn on_remove(&mut self, entries: &mut Entries<'_>, token: u32) {
        Sampled::on_remove(self, entries.nodes(), token);
    }
    fn victim(&mut self, entries: &mut Entries<'_>) -> Option<u32> {
        Sampled::victim(self, entries.nodes())
    }
    fn clear(&mut self) {
        Sampled::clear(self);
    }
}

/// W-TinyLFU (its window tunes itself).
impl EvictionPolicy for TinyLfu {
    fn on_insert(&mut self, entries: &mut Entries<'_>, token: u32, hash: u64) {
        TinyLfu::on_insert(self, entries.nodes(), token, hash);
        self.count_insert(entries.nodes());
    }
    fn on_remove(&mut self, entries: &mut Entries<'_>, token: u32) {
        TinyLfu::on_remove(self, entries.nodes(), token);
    }
    fn victim(&mut self, entries: &mut Entries<'_>) -> Option<u32> {
        TinyLfu::victim(self, entries.nodes())
    }
    fn maintain(&mut self, entries: &mut Entries<'_>) {
        TinyLfu::maintain(self, entries.nodes());
    }
    fn clear(&mut self) {
        TinyLfu::clear(self);
    }
}

/// Each built-in's state for a shard of `capacity`, by name, to drive
/// through the trait (the conformance tests).
#[cfg(test)]
pub(crate) fn built_in_states(capacity: usize) -> Vec<(&'static str, Box<dyn EvictionPolicy>)> {
    use super::RedisPolicy;
    let mut out: Vec<(&'static str, Box<dyn EvictionPolicy>)> = vec![
        ("tinylfu", Box::new(TinyLfu::new(capacity))),
        ("lru", Box::new(Clock::new())),
    ];
    for kind in [
        RedisPolicy::AllKeysLru,
        RedisPolicy::AllKeysLfu,
        RedisPolicy::AllKeysRandom,
    ] {
        out.push((kind.name(), Box::new(Sampled::new(kind, 5))));
    }
    out
}

/// The built-ins that may evict any entry, as users pick them.
#[cfg(test)]
pub(crate) fn built_ins_that_evict_any() -> Vec<super::Policy> {
    use super::{Policy, RedisPolicy};
    vec![
        Policy::tiny_lfu(),
        Policy::lru(),
        Policy::redis(RedisPolicy::AllKeysLru),
        Policy::redis(RedisPolicy::AllKeysLfu),
        Policy::redis(RedisPolicy::AllKeysRandom),
    ]
}
