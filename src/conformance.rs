//! The conformance suite every eviction policy passes, built-in or yours
//! (feature `conformance`).
//!
//! ```
//! # #[cfg(feature = "conformance")] {
//! use shardcache::{conformance, Entries, EvictionPolicy};
//! use std::collections::VecDeque;
//!
//! #[derive(Default)]
//! struct Fifo(VecDeque<u32>);
//!
//! impl EvictionPolicy for Fifo {
//!     fn on_insert(&mut self, _: &mut Entries<'_>, token: u32, _: u64) { self.0.push_back(token) }
//!     fn on_remove(&mut self, _: &mut Entries<'_>, token: u32) { self.0.retain(|&t| t != token) }
//!     fn victim(&mut self, _: &mut Entries<'_>) -> Option<u32> { self.0.front().copied() }
//!     fn clear(&mut self) { self.0.clear() }
//! }
//!
//! conformance::check("fifo", |_| Fifo::default()).expect("fifo keeps the contract");
//! # }
//! ```
//!
//! Two parts, both seeded and deterministic:
//!
//! * [`check_policy`] drives the policy alone, through the trait, over a
//!   random mix of inserts, hits, removals and evictions: every victim must
//!   be live (inserted, not yet removed), and at the end every live entry
//!   must come out as a victim exactly once (none is lost to the policy).
//! * [`check_cache`] runs a whole single-shard [`Cache`] with the policy
//!   against a reference model (a `HashMap` and a mock clock): every write
//!   is taken (a policy that may evict any entry always has a victim), the
//!   entry count never passes the capacity, the cache holds exactly the model's
//!   live entries, and every removal reaches the listener once with the
//!   right cause (`Evicted` for a live entry, `Replaced` with the old value,
//!   `Removed`, `Expired` only past the deadline).
//!
//! The suite is for policies that may evict any entry; `noeviction` and the
//! `volatile-*` policies (which evict only entries with a TTL) are checked
//! by their own tests.

use crate::policy::node::{Node, Nodes};
use crate::policy::Entries;
use crate::{Cache, EvictionPolicy, MockClock, Policy, RemovalCause};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A rule the policy broke: which check, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule, in a few words.
    pub rule: &'static str,
    /// What was seen, with the step it was seen at.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

impl std::error::Error for Violation {}

fn fail<T>(rule: &'static str, detail: String) -> Result<T, Violation> {
    Err(Violation { rule, detail })
}

/// Runs [`check_policy`] and then [`check_cache`] with
/// [`Policy::custom`]`(name, make)`.
///
/// # Errors
///
/// The first [`Violation`] found.
pub fn check<P, F>(name: &'static str, make: F) -> Result<(), Violation>
where
    P: EvictionPolicy,
    F: Fn(usize) -> P + Send + Sync + Clone + 'static,
{
    check_policy(make.clone())?;
    check_cache(Policy::custom(name, make))
}

/// A seeded xorshift: the same steps on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Entries standing alone: a slot per token, `None` when free. A token that
/// is not live reads as `dead` (only a faulty harness would ask).
struct Slots {
    slots: Vec<Option<Node>>,
    dead: Node,
}

impl Nodes for Slots {
    fn node(&self, idx: u32) -> &Node {
        match self.slots.get(idx as usize) {
            Some(Some(n)) => n,
            _ => &self.dead,
        }
    }
    fn node_mut(&mut self, idx: u32) -> &mut Node {
        match self.slots.get_mut(idx as usize) {
            Some(Some(n)) => n,
            _ => &mut self.dead,
        }
    }
    fn contains(&self, idx: u32) -> bool {
        matches!(self.slots.get(idx as usize), Some(Some(_)))
    }
    fn for_each_node(&self, f: &mut dyn FnMut(&Node)) {
        self.slots.iter().flatten().for_each(f);
    }
    fn hash_of(&self, idx: u32) -> u64 {
        u64::from(idx).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// Drives the policy alone through the trait: victims are live, and every
/// live entry can be evicted exactly once (see the [module docs](self)).
///
/// # Errors
///
/// The first [`Violation`] found.
pub fn check_policy<P: EvictionPolicy>(make: impl Fn(usize) -> P) -> Result<(), Violation> {
    for (capacity, seed) in [(1, 1), (8, 2), (100, 3), (1000, 4)] {
        policy_run(make(capacity), capacity, seed)?;
    }
    Ok(())
}

fn policy_run<P: EvictionPolicy>(mut p: P, capacity: usize, seed: u64) -> Result<(), Violation> {
    let mut slots = Slots {
        slots: Vec::new(),
        dead: Node::new(0),
    };
    let mut live: Vec<u32> = Vec::new();
    let mut rng = Rng(0x5EED ^ seed);
    for step in 0..capacity * 20 {
        match rng.below(10) {
            0..=4 => {
                let t = match slots.slots.iter().position(Option::is_none) {
                    Some(t) => t as u32,
                    None => {
                        slots.slots.push(None);
                        slots.slots.len() as u32 - 1
                    }
                };
                slots.slots[t as usize] = Some(Node::new(0));
                live.push(t);
                let hash = slots.hash_of(t);
                p.on_insert(&mut Entries::new(&mut slots), t, hash);
                while live.len() > capacity {
                    let Some(v) = p.victim(&mut Entries::new(&mut slots)) else {
                        return fail("victim", format!("None over capacity at step {step}"));
                    };
                    evict(&mut p, &mut slots, &mut live, v, step)?;
                }
                if live.len() <= capacity {
                    p.maintain(&mut Entries::new(&mut slots));
                }
            }
            5..=7 if !live.is_empty() => {
                let t = live[rng.below(live.len() as u64) as usize];
                let n = slots.node(t);
                n.record_hit(n.get());
            }
            _ if !live.is_empty() => {
                let t = live.swap_remove(rng.below(live.len() as u64) as usize);
                p.on_remove(&mut Entries::new(&mut slots), t);
                slots.slots[t as usize] = None;
            }
            _ => {}
        }
    }
    // Drain: every live entry comes out, once.
    while !live.is_empty() {
        let Some(v) = p.victim(&mut Entries::new(&mut slots)) else {
            return fail("no lost entries", format!("{} live, no victim", live.len()));
        };
        evict(&mut p, &mut slots, &mut live, v, usize::MAX)?;
    }
    p.clear();
    Ok(())
}

fn evict<P: EvictionPolicy>(
    p: &mut P,
    slots: &mut Slots,
    live: &mut Vec<u32>,
    v: u32,
    step: usize,
) -> Result<(), Violation> {
    let Some(at) = live.iter().position(|&t| t == v) else {
        return fail("victims are live", format!("token {v} at step {step}"));
    };
    live.swap_remove(at);
    p.on_remove(&mut Entries::new(slots), v);
    slots.slots[v as usize] = None;
    Ok(())
}

type Events = Arc<Mutex<Vec<(u32, u32, RemovalCause)>>>;

/// Runs a single-shard cache with `policy` against a reference model (see
/// the [module docs](self)).
///
/// # Errors
///
/// The first [`Violation`] found; a cache that cannot be built is one too.
pub fn check_cache(policy: Policy) -> Result<(), Violation> {
    for (capacity, seed) in [(1, 5), (10, 6), (200, 7)] {
        cache_run(policy.clone(), capacity, seed)?;
    }
    Ok(())
}

/// The reference: each key's value and deadline (mock ms).
type Model = HashMap<u32, (u32, Option<u64>)>;

fn cache_run(policy: Policy, capacity: u64, seed: u64) -> Result<(), Violation> {
    let clock = MockClock::new();
    let events: Events = Arc::default();
    let log = events.clone();
    let cache: Cache<u32, u32> = match Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .policy(policy)
        .clock(clock.clone())
        .eviction_listener(move |k, v, cause| {
            if let Ok(mut e) = log.lock() {
                e.push((k, v, cause));
            }
        })
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail("builds", e.to_string()),
    };
    let mut model = Model::new();
    let mut now = 0u64;
    let mut rng = Rng(0xC0FF_EE00 ^ seed);
    let keys = capacity * 4;
    for step in 0..capacity as usize * 40 {
        let k = rng.below(keys) as u32;
        let mut replaced = None;
        match rng.below(20) {
            c @ 0..=11 => {
                let ttl = (c >= 10).then(|| 1 + rng.below(50));
                let taken =
                    cache.try_insert_with_expiry(k, step as u32, ttl.map(Duration::from_millis));
                if taken.is_err() {
                    return fail(
                        "writes taken",
                        format!("key {k} refused at step {step}: the policy named no victim"),
                    );
                }
                replaced = model.insert(k, (step as u32, ttl.map(|t| now + t)));
            }
            12..=16 => {
                let _ = cache.get(&k);
            }
            17..=18 => {
                let had = cache.remove(&k).is_some();
                let live = model
                    .get(&k)
                    .is_some_and(|&(_, d)| d.is_none_or(|d| d > now));
                if had != live {
                    return fail("remove", format!("key {k}: cache {had}, model {live}"));
                }
            }
            _ => {
                let by = rng.below(20);
                now += by;
                clock.advance(Duration::from_millis(by));
            }
        }
        let drained = match events.lock() {
            Ok(mut e) => std::mem::take(&mut *e),
            Err(_) => return fail("listener", "poisoned".into()),
        };
        for (key, value, cause) in drained {
            settle(&mut model, replaced, now, k, key, value, cause, step)?;
        }
        if cache.len() as u64 > capacity {
            return fail(
                "capacity respected",
                format!("{} > {capacity} at step {step}", cache.len()),
            );
        }
        if step % 16 == 0 || capacity < 16 {
            compare(&cache, &model, now, step)?;
        }
    }
    compare(&cache, &model, now, usize::MAX)
}

/// Applies one listener event to the model, checking its cause.
#[allow(clippy::too_many_arguments)]
fn settle(
    model: &mut Model,
    replaced: Option<(u32, Option<u64>)>,
    now: u64,
    written: u32,
    key: u32,
    value: u32,
    cause: RemovalCause,
    step: usize,
) -> Result<(), Violation> {
    let expired = |d: Option<u64>| d.is_some_and(|d| d <= now);
    match cause {
        RemovalCause::Replaced | RemovalCause::Expired
            if key == written && replaced.is_some_and(|(v, _)| v == value) =>
        {
            let ok = cause == RemovalCause::Replaced || replaced.is_some_and(|(_, d)| expired(d));
            if !ok {
                return fail(
                    "listener causes",
                    format!("{cause:?} for key {key} at step {step}"),
                );
            }
            Ok(())
        }
        _ => match model.get(&key) {
            Some(&(v, d)) if v == value => {
                let ok = match cause {
                    RemovalCause::Evicted | RemovalCause::Removed => true,
                    RemovalCause::Expired => expired(d),
                    _ => false,
                };
                if !ok {
                    return fail(
                        "listener causes",
                        format!("{cause:?} for key {key} at step {step}"),
                    );
                }
                model.remove(&key);
                Ok(())
            }
            _ => fail(
                "victims are live",
                format!("{cause:?} of {key}={value}, not in the cache, at step {step}"),
            ),
        },
    }
}

/// The cache holds exactly the model's live entries.
fn compare(cache: &Cache<u32, u32>, model: &Model, now: u64, step: usize) -> Result<(), Violation> {
    let mut held: Vec<(u32, u32)> = cache.iter().collect();
    held.sort_unstable();
    let mut want: Vec<(u32, u32)> = model
        .iter()
        .filter(|(_, &(_, d))| d.is_none_or(|d| d > now))
        .map(|(&k, &(v, _))| (k, v))
        .collect();
    want.sort_unstable();
    if held != want {
        let lost: Vec<_> = want.iter().filter(|e| !held.contains(e)).take(3).collect();
        let extra: Vec<_> = held.iter().filter(|e| !want.contains(e)).take(3).collect();
        return fail(
            "no lost entries",
            format!(
                "at step {step}: missing without a listener call {lost:?}, unexpected {extra:?}"
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every built-in, at the policy level through the trait and in a cache
    /// by its own (static) path.
    #[test]
    fn every_built_in_conforms() -> Result<(), Violation> {
        for policy in crate::policy::built_ins_that_evict_any() {
            check_cache(policy)?;
        }
        let names: Vec<_> = crate::policy::built_in_states(1)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for (i, name) in names.into_iter().enumerate() {
            check_policy(|cap| crate::policy::built_in_states(cap).swap_remove(i).1).map_err(
                |v| Violation {
                    detail: format!("{name}: {}", v.detail),
                    ..v
                },
            )?;
        }
        Ok(())
    }

    /// The boxed path: each built-in wrapped as a user's policy.
    #[test]
    fn built_ins_conform_as_custom_policies() -> Result<(), Violation> {
        for i in 0..crate::policy::built_in_states(1).len() {
            check_cache(Policy::custom("built-in", move |cap| {
                crate::policy::built_in_states(cap).swap_remove(i).1
            }))?;
        }
        Ok(())
    }

    /// A policy that names a token it never saw is caught.
    #[test]
    fn a_dead_victim_is_a_violation() {
        #[derive(Default)]
        struct Liar(Vec<u32>);
        impl EvictionPolicy for Liar {
            fn on_insert(&mut self, _: &mut Entries<'_>, token: u32, _: u64) {
                self.0.push(token);
            }
            fn on_remove(&mut self, _: &mut Entries<'_>, token: u32) {
                self.0.retain(|&t| t != token);
            }
            fn victim(&mut self, _: &mut Entries<'_>) -> Option<u32> {
                Some(u32::MAX - 7)
            }
            fn clear(&mut self) {
                self.0.clear();
            }
        }
        let err = check_policy(|_| Liar::default()).err();
        assert_eq!(err.map(|v| v.rule), Some("victims are live"));
    }

    /// A policy that never names a victim gets the cache's writes refused
    /// once it is full, and the cache-level check says so.
    #[test]
    fn a_policy_that_never_evicts_gets_writes_refused() {
        struct Never;
        impl EvictionPolicy for Never {
            fn on_insert(&mut self, _: &mut Entries<'_>, _: u32, _: u64) {}
            fn on_remove(&mut self, _: &mut Entries<'_>, _: u32) {}
            fn victim(&mut self, _: &mut Entries<'_>) -> Option<u32> {
                None
            }
            fn clear(&mut self) {}
        }
        let err = check_cache(Policy::custom("never", |_| Never)).err();
        assert_eq!(err.map(|v| v.rule), Some("writes taken"));
    }
}
