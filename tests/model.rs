//! Model-based test: random operation sequences against a simple reference
//! model (a map with deadlines), with the mock clock driving TTLs.
//!
//! The cache may evict, so the model only checks what must hold whatever the
//! policy chose: a value the cache returns is the last one written for that
//! key and is not expired; removed, cleared and expired keys are never
//! returned; the size never exceeds the capacity; the listener hears a
//! value as replaced only if it was live, and as expired only if it was not.

use proptest::prelude::*;
use shardcache::{Cache, MockClock, RemovalCause};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16),
    InsertTtl(u8, u16, u16),
    Get(u8),
    Remove(u8),
    Advance(u16),
    SetTtl(u8, Option<u16>),
    Clear,
    Retain(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (any::<u8>(), any::<u16>(), 1..500u16).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        5 => any::<u8>().prop_map(Op::Get),
        1 => any::<u8>().prop_map(Op::Remove),
        1 => (0..300u16).prop_map(Op::Advance),
        1 => (any::<u8>(), proptest::option::of(1..500u16)).prop_map(|(k, t)| Op::SetTtl(k, t)),
        1 => Just(Op::Clear),
        1 => (2..7u8).prop_map(Op::Retain),
    ]
}

/// The reference: key -> (value, deadline in ms or none).
#[derive(Default)]
struct Model {
    now: u64,
    map: HashMap<u8, (u16, Option<u64>)>,
}

impl Model {
    fn live(&self, k: u8) -> Option<u16> {
        match self.map.get(&k) {
            Some(&(v, d)) if d.is_none_or(|d| self.now < d) => Some(v),
            _ => None,
        }
    }

    /// Checks the removals an operation caused against the model as it
    /// was before the operation.
    fn check_heard(&self, heard: &Mutex<Vec<(u8, u16, RemovalCause)>>) {
        for (k, v, cause) in heard.lock().expect("log").drain(..) {
            match cause {
                RemovalCause::Replaced => assert_eq!(self.live(k), Some(v), "key {k} replaced"),
                RemovalCause::Expired => assert_eq!(self.live(k), None, "key {k} expired"),
                _ => {}
            }
        }
    }
}

fn run(ops: Vec<Op>, capacity: u64, shards: usize, ttl: Option<u16>) {
    let clock = MockClock::new();
    let mut b = Cache::builder()
        .max_capacity(capacity)
        .shards(shards)
        .clock(clock.clone());
    if let Some(t) = ttl {
        b = b.time_to_live(Duration::from_millis(u64::from(t)));
    }
    let heard: Arc<Mutex<Vec<(u8, u16, RemovalCause)>>> = Arc::default();
    let h = heard.clone();
    b = b.eviction_listener(move |k, v, cause| h.lock().expect("log").push((k, v, cause)));
    let cache: Cache<u8, u16> = b.build().expect("valid config");
    let mut model = Model::default();
    for op in ops {
        let before = Model {
            now: model.now,
            map: model.map.clone(),
        };
        match op {
            Op::Insert(k, v) => {
                cache.insert(k, v);
                model
                    .map
                    .insert(k, (v, ttl.map(|t| model.now + u64::from(t))));
            }
            Op::InsertTtl(k, v, t) => {
                cache.insert_with_ttl(k, v, Duration::from_millis(u64::from(t)));
                model.map.insert(k, (v, Some(model.now + u64::from(t))));
            }
            Op::Get(k) => {
                if let Some(got) = cache.get(&k) {
                    assert_eq!(Some(got), model.live(k), "key {k}");
                }
            }
            Op::Remove(k) => {
                let got = cache.remove(&k);
                if got.is_some() {
                    assert_eq!(got, model.live(k));
                }
                model.map.remove(&k);
                assert_eq!(cache.get(&k), None);
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(ms)));
                model.now += u64::from(ms);
            }
            Op::SetTtl(k, t) => {
                let live = model.live(k).is_some();
                let applied = cache.set_ttl(&k, t.map(|t| Duration::from_millis(u64::from(t))));
                if applied {
                    assert!(live, "set_ttl applied to a dead key {k}");
                    if let Some(e) = model.map.get_mut(&k) {
                        e.1 = t.map(|t| model.now + u64::from(t));
                    }
                }
            }
            Op::Clear => {
                cache.clear();
                model.map.clear();
                assert!(cache.is_empty());
            }
            Op::Retain(m) => {
                cache.retain(|k, _| k % m != 0);
                model.map.retain(|k, _| k % m != 0);
            }
        }
        assert!(cache.weighted_size() <= capacity, "over capacity");
        assert_eq!(cache.weighted_size(), cache.len() as u64);
        before.check_heard(&heard);
    }
    // Everything the cache still holds agrees with the model.
    for (k, v) in cache.iter() {
        assert_eq!(Some(v), model.live(k), "iter key {k}");
    }
    let s = cache.stats();
    assert!(s.hits + s.misses > 0 || s.inserts + s.updates >= s.evictions);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cache_agrees_with_model(ops in proptest::collection::vec(op(), 1..400),
                               capacity in 1..64u64,
                               shards in prop_oneof![Just(1usize), Just(2), Just(4)],
                               ttl in proptest::option::of(1..400u16)) {
        run(ops, capacity, shards, ttl);
    }

    #[test]
    fn unbounded_cache_keeps_every_live_key(ops in proptest::collection::vec(op(), 1..300)) {
        // With room for all 256 keys nothing is evicted: gets must match exactly.
        let clock = MockClock::new();
        let cache: Cache<u8, u16> = Cache::builder().max_capacity(1024).clock(clock.clone()).build().expect("valid");
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Insert(k, v) => { cache.insert(k, v); model.map.insert(k, (v, None)); }
                Op::InsertTtl(k, v, t) => {
                    cache.insert_with_ttl(k, v, Duration::from_millis(u64::from(t)));
                    model.map.insert(k, (v, Some(model.now + u64::from(t))));
                }
                Op::Get(k) => prop_assert_eq!(cache.get(&k), model.live(k)),
                Op::Remove(k) => { prop_assert_eq!(cache.remove(&k), model.live(k)); model.map.remove(&k); }
                Op::Advance(ms) => { clock.advance(Duration::from_millis(u64::from(ms))); model.now += u64::from(ms); }
                Op::SetTtl(k, t) => {
                    let live = model.live(k).is_some();
                    prop_assert_eq!(cache.set_ttl(&k, t.map(|t| Duration::from_millis(u64::from(t)))), live);
                    if live { if let Some(e) = model.map.get_mut(&k) { e.1 = t.map(|t| model.now + u64::from(t)); } }
                }
                Op::Clear => { cache.clear(); model.map.clear(); }
                Op::Retain(m) => { cache.retain(|k, _| k % m != 0); model.map.retain(|k, _| k % m != 0); }
            }
        }
        for k in 0..=255u8 {
            prop_assert_eq!(cache.get(&k), model.live(k));
        }
    }
}
