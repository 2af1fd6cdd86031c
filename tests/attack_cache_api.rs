#![allow(clippy::unwrap_used)]
//! Attacks on the core `Cache` API with inputs and interleavings the other
//! tests do not use: weights at their limits, TTLs at sub-millisecond
//! phases, exact models of single-threaded runs and of reopened logs,
//! counters under concurrency, and listeners that load the key whose load
//! is landing.

use shardcache::{Cache, Decision, MockClock, Policy, RemovalCause, Ttl};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Heard<K, V> = Arc<Mutex<Vec<(K, V, RemovalCause)>>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------- weights

#[test]
fn replace_growing_keeps_the_written_value() {
    for policy in [Policy::tiny_lfu(), Policy::lru()] {
        let heard: Heard<u64, u64> = Arc::default();
        let h = heard.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(10)
            .shards(1)
            .policy(policy)
            .weigher(|_, v: &u64| *v as u32)
            .eviction_listener(move |k, v, c| h.lock().unwrap().push((k, v, c)))
            .build()
            .unwrap();
        for k in 0..10 {
            cache.insert(k, 1);
        }
        cache.insert(0, 9);
        let got = cache.get(&0);
        let ws = cache.weighted_size();
        eprintln!(
            "heard {:?} got {got:?} ws {ws} len {}",
            heard.lock().unwrap(),
            cache.len()
        );
        assert!(ws <= 10);
        assert_eq!(
            got,
            Some(9),
            "the replaced value was evicted by its own write"
        );
    }
}

#[test]
fn zero_weights_and_max_weights() {
    let cache: Cache<u64, u32> = Cache::builder()
        .max_capacity(u64::from(u32::MAX))
        .shards(1)
        .weigher(|_, v: &u32| *v)
        .build()
        .unwrap();
    cache.insert(1, u32::MAX);
    assert_eq!(cache.get(&1), Some(u32::MAX));
    assert_eq!(cache.weighted_size(), u64::from(u32::MAX));
    cache.insert(2, 0);
    assert_eq!(cache.get(&2), Some(0));
    cache.insert(3, 1);
    assert!(cache.weighted_size() <= u64::from(u32::MAX));
    // replace the max one with 0
    cache.insert(1, 0);
    assert_eq!(cache.get(&1), Some(0));
    let total: u64 = cache.iter().map(|(_, v)| u64::from(v)).sum();
    assert_eq!(total, cache.weighted_size());
}

#[test]
fn capacity_one_with_many_shards() {
    for shards in [1usize, 2, 8, 64] {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1)
            .shards(shards)
            .build()
            .unwrap();
        for k in 0..100 {
            cache.insert(k, k);
            assert!(cache.len() <= 1, "shards {shards}: len {}", cache.len());
        }
        assert!(cache.weighted_size() <= 1);
    }
}

#[test]
fn capacity_never_exceeded_under_threads_with_weights() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1000)
        .shards(4)
        .weigher(|_, v: &u64| (*v % 50) as u32)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = cache.clone();
            std::thread::spawn(move || {
                let mut x = t * 7919 + 1;
                for _ in 0..50_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = x % 300;
                    let v = x >> 20;
                    match x % 5 {
                        0 => {
                            c.remove(&k);
                        }
                        1 => {
                            let _ = c.compute(k, |cur| {
                                (Decision::Put(cur.map_or(v, |c| c.value + 1), Ttl::Keep), ())
                            });
                        }
                        _ => c.insert(k, v),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: u64 = cache.iter().map(|(_, v)| v % 50).sum();
    assert_eq!(total, cache.weighted_size());
    assert!(cache.weighted_size() <= 1000);
    assert_eq!(cache.iter().count(), cache.len());
}

// ---------------------------------------------------------------- time

#[test]
fn duration_max_and_zero_ttls() {
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, Duration::MAX);
    cache.insert_with_ttl(2, 2, Duration::ZERO);
    cache.insert_with_ttl(3, 3, Duration::from_nanos(1));
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&3), Some(3));
    assert!(cache.set_ttl(&1, Some(Duration::MAX)));
    assert!(!cache.set_ttl(&2, Some(Duration::MAX)));
    assert_eq!(cache.get(&2), None);
    clock.advance(Duration::from_secs(365 * 86_400 * 10));
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&3), None);
}

#[test]
fn ttl_reports_with_tti() {
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .time_to_idle(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(Duration::from_secs(5));
    // contains_key does not count as access
    assert!(cache.contains_key(&1));
    clock.advance(Duration::from_secs(5));
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.get(&1), None);
    cache.insert(2, 2);
    clock.advance(Duration::from_secs(9));
    assert_eq!(cache.get(&2), Some(2));
    clock.advance(Duration::from_secs(9));
    assert_eq!(cache.get(&2), Some(2));
    clock.advance(Duration::from_secs(10));
    assert_eq!(cache.get(&2), None);
}

// ---------------------------------------------------------------- model

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug)]
struct MEntry {
    v: u32,
    deadline: Option<u64>,
    last: u64,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct MStats {
    hits: u64,
    misses: u64,
    inserts: u64,
    updates: u64,
}

struct Model {
    now: u64,
    tti: Option<u64>,
    default_ttl: Option<u64>,
    map: HashMap<u64, MEntry>,
    stats: MStats,
}

fn rule(k: &u64, _v: &u32) -> Option<Duration> {
    k.is_multiple_of(7).then(|| Duration::from_millis(20))
}

impl Model {
    fn live(&self, k: u64) -> Option<MEntry> {
        let e = *self.map.get(&k)?;
        if e.deadline.is_some_and(|d| self.now >= d) {
            return None;
        }
        if self.tti.is_some_and(|t| self.now >= e.last + t) {
            return None;
        }
        Some(e)
    }
    fn write(&mut self, k: u64, v: u32, deadline: Option<u64>) {
        if self.live(k).is_some() {
            self.stats.updates += 1;
        } else {
            self.stats.inserts += 1;
        }
        self.map.insert(
            k,
            MEntry {
                v,
                deadline,
                last: self.now,
            },
        );
    }
    fn default_deadline(&self, k: u64, v: u32, use_rule: bool) -> Option<u64> {
        let r = if use_rule {
            rule(&k, &v).map(|d| d.as_millis() as u64)
        } else {
            None
        };
        r.or(self.default_ttl).map(|t| self.now + t)
    }
    fn remaining(&self, e: &MEntry) -> Option<Duration> {
        e.deadline.map(|d| ms(d - self.now))
    }
}

fn run_model(
    seed: u64,
    steps: usize,
    default_ttl: Option<u64>,
    tti: Option<u64>,
    use_rule: bool,
    shards: usize,
) {
    run_model_r(seed, steps, default_ttl, tti, use_rule, shards, None)
}

/// `refresh`: Some(stale window ms) configures refresh-ahead (reloads that
/// never land: the spawner drops them) with that serve_stale_for window (0: none).
fn run_model_r(
    seed: u64,
    steps: usize,
    default_ttl: Option<u64>,
    tti: Option<u64>,
    use_rule: bool,
    shards: usize,
    refresh: Option<u64>,
) {
    let clock = MockClock::new();
    let mut b = Cache::builder()
        .max_capacity(4096)
        .shards(shards)
        .clock(clock.clone());
    if let Some(t) = default_ttl {
        b = b.time_to_live(ms(t));
    }
    if let Some(t) = tti {
        b = b.time_to_idle(ms(t));
    }
    if use_rule {
        b = b.expire_after(rule);
    }
    if let Some(stale) = refresh {
        b = b
            .refresh_after(ms(default_ttl.unwrap() - 10))
            .refresh_loader_async(|_k: u64| async move { Ok::<u32, std::io::Error>(0) }, drop);
        if stale > 0 {
            b = b.serve_stale_for(ms(stale));
        }
    }
    let cache: Cache<u64, u32> = b.build().unwrap();
    let stale_for = refresh.unwrap_or(0);
    // A value past its TTL but within the serve-stale window.
    let stale = |m: &Model, k: u64| -> Option<u32> {
        let e = m.map.get(&k)?;
        let d = e.deadline?;
        (m.now >= d && m.now < d + stale_for).then_some(e.v)
    };
    let mut m = Model {
        now: 0,
        tti,
        default_ttl,
        map: HashMap::new(),
        stats: MStats::default(),
    };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let ctx = |i: usize, what: &str| {
        format!("seed {seed} step {i} {what} ttl {default_ttl:?} tti {tti:?} rule {use_rule} shards {shards} refresh {refresh:?}")
    };
    for i in 0..steps {
        let k = rng.below(48);
        let v = rng.below(1000) as u32;
        let op = rng.below(20);
        match op {
            0 | 1 => {
                cache.insert(k, v);
                let d = m.default_deadline(k, v, use_rule);
                m.write(k, v, d);
            }
            2 => {
                let t = rng.below(60);
                cache.insert_with_ttl(k, v, ms(t));
                m.write(k, v, Some(m.now + t));
            }
            3 => {
                cache.try_insert_with_expiry(k, v, None).unwrap();
                m.write(k, v, None);
            }
            4 | 5 => {
                let got = cache.get(&k);
                let want = m.live(k);
                let st = stale(&m, k);
                assert_eq!(
                    got,
                    want.map(|e| e.v).or(st),
                    "{}",
                    ctx(i, &format!("get {k}"))
                );
                if want.is_some() {
                    m.stats.hits += 1;
                    m.map.get_mut(&k).unwrap().last = m.now;
                } else if st.is_some() {
                    m.stats.hits += 1;
                } else {
                    m.stats.misses += 1;
                }
            }
            6 => {
                let got = cache.get_with_ttl(&k);
                let want = m.live(k).map(|e| (e.v, m.remaining(&e)));
                assert_eq!(got, want, "{}", ctx(i, &format!("get_with_ttl {k}")));
                assert_eq!(
                    cache.contains_key(&k),
                    want.is_some(),
                    "{}",
                    ctx(i, "contains")
                );
                assert_eq!(cache.ttl(&k), want.map(|w| w.1), "{}", ctx(i, "ttl"));
            }
            7 => {
                let got = cache.remove(&k);
                assert_eq!(
                    got,
                    m.live(k).map(|e| e.v),
                    "{}",
                    ctx(i, &format!("remove {k}"))
                );
                m.map.remove(&k);
            }
            8 => {
                let t = if rng.below(3) == 0 {
                    None
                } else {
                    Some(rng.below(60))
                };
                let got = cache.set_ttl(&k, t.map(ms));
                let live = m.live(k).is_some();
                assert_eq!(got, live, "{}", ctx(i, &format!("set_ttl {k} {t:?}")));
                if live {
                    let now = m.now;
                    m.map.get_mut(&k).unwrap().deadline = t.map(|t| now + t);
                }
            }
            9 | 10 => {
                let want = m.live(k);
                let choice = rng.below(8);
                let t = rng.below(60);
                let ttl = match rng.below(3) {
                    0 => Ttl::Keep,
                    1 => Ttl::Never,
                    _ => Ttl::After(ms(t)),
                };
                let now = m.now;
                let remaining = want.map(|e| m.remaining(&e));
                let r = cache.compute(k, |cur| {
                    let seen = cur.map(|c| (*c.value, c.ttl));
                    let decision = match choice {
                        0 => Decision::Nothing,
                        1..=3 => Decision::Put(v, ttl),
                        4 | 5 => Decision::SetTtl(ttl),
                        _ => Decision::Remove,
                    };
                    (decision, seen)
                });
                let seen = r.unwrap();
                assert_eq!(
                    seen,
                    want.map(|e| (e.v, remaining.unwrap())),
                    "{}",
                    ctx(i, &format!("compute sees {k}"))
                );
                let new_deadline = |old: Option<u64>| match ttl {
                    Ttl::Keep => old,
                    Ttl::Never => None,
                    Ttl::After(_) => Some(now + t),
                };
                match choice {
                    0 => {}
                    1..=3 => {
                        let d = new_deadline(want.and_then(|e| e.deadline));
                        m.write(k, v, d);
                    }
                    4 | 5 => {
                        if let Some(e) = want {
                            m.map.get_mut(&k).unwrap().deadline = new_deadline(e.deadline);
                        }
                    }
                    _ => {
                        m.map.remove(&k);
                    }
                }
            }
            11 => {
                use shardcache::entry::{CompResult, Op};
                let want = m.live(k);
                let choice = rng.below(3);
                let r = cache
                    .entry(k)
                    .and_compute_with(|cur| {
                        assert_eq!(cur.copied(), want.map(|e| e.v), "{}", ctx(i, "entry sees"));
                        match choice {
                            0 => Op::Nop,
                            1 => Op::Put(v),
                            _ => Op::Remove,
                        }
                    })
                    .unwrap();
                match (choice, want) {
                    (0, Some(e)) => {
                        assert!(matches!(r, CompResult::Unchanged(ref x) if *x.value() == e.v))
                    }
                    (0, None) | (2, None) => assert!(matches!(r, CompResult::StillNone(_))),
                    (1, Some(e)) => {
                        assert!(matches!(r, CompResult::Updated(_)));
                        m.write(k, v, e.deadline);
                    }
                    (1, None) => {
                        assert!(matches!(r, CompResult::Inserted(_)));
                        let d = m.default_deadline(k, v, use_rule);
                        m.write(k, v, d);
                    }
                    (_, Some(_)) => {
                        assert!(matches!(r, CompResult::Removed(_)));
                        m.map.remove(&k);
                    }
                    _ => unreachable!(),
                }
            }
            12 => {
                let want = m.live(k);
                let st = stale(&m, k);
                let got = cache.get_or_insert_with(k, || v);
                if want.is_none() && st.is_some() {
                    assert_eq!(Some(got), st, "{}", ctx(i, "get_or_insert_with stale"));
                    m.stats.hits += 1;
                    continue;
                }
                match want {
                    Some(e) => {
                        assert_eq!(got, e.v, "{}", ctx(i, "get_or_insert_with hit"));
                        m.stats.hits += 1;
                        m.map.get_mut(&k).unwrap().last = m.now;
                    }
                    None => {
                        assert_eq!(got, v);
                        m.stats.misses += 1;
                        let d = m.default_deadline(k, v, use_rule);
                        m.write(k, v, d);
                    }
                }
            }
            13 | 14 => {
                let by = rng.below(25);
                clock.advance(ms(by));
                m.now += by;
            }
            15 => {
                cache.purge_expired();
                if refresh.is_none() {
                    let live = m.map.keys().filter(|&&k| m.live(k).is_some()).count();
                    assert_eq!(cache.len(), live, "{}", ctx(i, "len after purge"));
                }
            }
            16 => {
                let mut got: Vec<(u64, u32)> = cache.iter().collect();
                got.sort();
                let mut want: Vec<(u64, u32)> = m
                    .map
                    .keys()
                    .filter_map(|&k| m.live(k).map(|e| (k, e.v)))
                    .collect();
                want.sort();
                assert_eq!(got, want, "{}", ctx(i, "iter"));
            }
            17 => {
                let r = rng.below(5) + 2;
                cache.retain(|k, _| k % r != 0);
                m.map.retain(|k, _| k % r != 0);
            }
            18 => {
                if rng.below(10) == 0 {
                    cache.clear();
                    m.map.clear();
                }
            }
            _ => {
                let s = cache.stats();
                let got = MStats {
                    hits: s.hits,
                    misses: s.misses,
                    inserts: s.inserts,
                    updates: s.updates,
                };
                assert_eq!(got, m.stats, "{}", ctx(i, "stats"));
            }
        }
    }
    if refresh.is_some() {
        clock.advance(Duration::from_secs(3600));
    }
    cache.purge_expired();
    let s = cache.stats();
    assert_eq!(s.evictions, 0);
    assert_eq!(
        s.inserts,
        cache.len() as u64 + s.expirations + s.removals,
        "{} {s:?}",
        ctx(steps, "conservation")
    );
}

#[test]
fn model_exact_agreement() {
    for seed in 1..=60u64 {
        for (ttl, tti, rule) in [
            (None, None, false),
            (Some(50), None, false),
            (None, Some(40), false),
            (Some(50), Some(30), true),
            (None, None, true),
        ] {
            for shards in [1, 4] {
                run_model(seed, 600, ttl, tti, rule, shards);
            }
        }
    }
}

// ---------------------------------------------------------------- persistence model

fn open_mem(
    storage: &shardcache::persist::MemStorage,
    clock: &MockClock,
    default_ttl: Option<u64>,
) -> Cache<u64, u32> {
    let mut b = Cache::builder()
        .max_capacity(4096)
        .shards(4)
        .clock(clock.clone());
    if let Some(t) = default_ttl {
        b = b.time_to_live(ms(t));
    }
    b.build_persistent(shardcache::persist::FileLog::with_storage(
        storage.clone(),
        shardcache::persist::Fsync::Always,
    ))
    .unwrap()
    .0
}

fn run_persist_model(seed: u64, steps: usize, default_ttl: Option<u64>) {
    let storage = shardcache::persist::MemStorage::new();
    let clock = MockClock::new();
    let mut cache = open_mem(&storage, &clock, default_ttl);
    let mut m = Model {
        now: 0,
        tti: None,
        default_ttl,
        map: HashMap::new(),
        stats: MStats::default(),
    };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let check = |cache: &Cache<u64, u32>, m: &Model, what: &str| {
        let mut got: Vec<(u64, u32, Option<Duration>)> = cache
            .iter()
            .map(|(k, v)| (k, v, cache.ttl(&k).unwrap()))
            .collect();
        got.sort();
        let mut want: Vec<(u64, u32, Option<Duration>)> = m
            .map
            .keys()
            .filter_map(|&k| m.live(k).map(|e| (k, e.v, m.remaining(&e))))
            .collect();
        want.sort();
        assert_eq!(got, want, "seed {seed} ttl {default_ttl:?}: {what}");
    };
    for i in 0..steps {
        let k = rng.below(40);
        let v = rng.below(1000) as u32;
        match rng.below(14) {
            0 | 1 => {
                cache.insert(k, v);
                let d = m.default_deadline(k, v, false);
                m.write(k, v, d);
            }
            2 | 3 => {
                let t = rng.below(5000) + 1;
                cache.insert_with_ttl(k, v, ms(t));
                m.write(k, v, Some(m.now + t));
            }
            4 => {
                cache.try_insert_with_expiry(k, v, None).unwrap();
                m.write(k, v, None);
            }
            5 => {
                assert_eq!(cache.remove(&k), m.live(k).map(|e| e.v));
                m.map.remove(&k);
            }
            6 => {
                let t = if rng.below(3) == 0 {
                    None
                } else {
                    Some(rng.below(5000) + 1)
                };
                let live = m.live(k).is_some();
                assert_eq!(cache.set_ttl(&k, t.map(ms)), live);
                if live {
                    let now = m.now;
                    m.map.get_mut(&k).unwrap().deadline = t.map(|t| now + t);
                }
            }
            7 => {
                let want = m.live(k);
                let t = rng.below(5000) + 1;
                let choice = rng.below(4);
                cache
                    .compute(k, |_| {
                        let d = match choice {
                            0 => Decision::Put(v, Ttl::Keep),
                            1 => Decision::Put(v, Ttl::After(ms(t))),
                            2 => Decision::SetTtl(Ttl::After(ms(t))),
                            _ => Decision::SetTtl(Ttl::Never),
                        };
                        (d, ())
                    })
                    .unwrap();
                let now = m.now;
                match choice {
                    0 => m.write(k, v, want.and_then(|e| e.deadline)),
                    1 => m.write(k, v, Some(now + t)),
                    2 => {
                        if want.is_some() {
                            m.map.get_mut(&k).unwrap().deadline = Some(now + t);
                        }
                    }
                    _ => {
                        if want.is_some() {
                            m.map.get_mut(&k).unwrap().deadline = None;
                        }
                    }
                }
            }
            8 | 9 => {
                let by = rng.below(700);
                clock.advance(ms(by));
                m.now += by;
            }
            10 => {
                let r = rng.below(5) + 2;
                cache.invalidate_if(|k, _| k % r == 0);
                m.map.retain(|k, _| k % r != 0);
            }
            11 => {
                if rng.below(4) == 0 {
                    cache.rewrite_log().unwrap();
                }
            }
            12 => {
                if rng.below(8) == 0 {
                    cache.clear();
                    m.map.clear();
                }
            }
            _ => {
                check(&cache, &m, &format!("step {i} before reopen"));
                drop(cache);
                cache = open_mem(&storage, &clock, default_ttl);
                check(&cache, &m, &format!("step {i} after reopen"));
            }
        }
    }
}

#[test]
fn persistence_model_agrees_across_reopens() {
    for seed in 1..=25u64 {
        for ttl in [None, Some(3000)] {
            run_persist_model(seed, 300, ttl);
        }
    }
}

#[test]
fn model_exact_agreement_with_refresh_windows() {
    for seed in 1..=60u64 {
        for (ttl, rule, stale) in [
            (50, false, 0),
            (50, true, 0),
            (50, false, 30),
            (40, true, 40),
        ] {
            for shards in [1, 4] {
                run_model_r(seed, 600, Some(ttl), None, rule, shards, Some(stale));
            }
        }
    }
}

// ---------------------------------------------------------------- sub-ms

// A deadline counts from the exact time of the write, rounded up to the
// millisecond: an entry written 0.9 ms into a millisecond with a 1 ms TTL
// lives at least 1 ms (it used to be gone 0.1 ms later), and `ttl()` never
// says more than it has left.
#[test]
fn a_ttl_written_mid_millisecond_never_ends_early() {
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    clock.advance(Duration::from_micros(900));
    cache.insert_with_ttl(1, 1, ms(1));
    cache.insert_with_ttl(2, 2, ms(5));
    assert_eq!(cache.ttl(&1), Some(Some(ms(1))));
    clock.advance(Duration::from_micros(100));
    let after_100us = cache.get(&1);
    clock.advance(Duration::from_micros(4000));
    let after_4100us = cache.get(&2);
    assert_eq!(
        (after_100us, after_4100us),
        (Some(1), Some(2)),
        "entries expired after 0.1 ms of a 1 ms TTL / 4.1 ms of a 5 ms TTL"
    );
}

// Likewise an idle time counts from the exact time of the last access.
#[test]
fn an_idle_time_from_a_mid_millisecond_access_never_ends_early() {
    let clock = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .time_to_idle(ms(2))
        .clock(clock.clone())
        .build()
        .unwrap();
    clock.advance(Duration::from_micros(900));
    cache.insert(1, 1);
    cache.insert(2, 2);
    clock.advance(Duration::from_micros(1_900)); // 2.8 ms: 1.9 ms idle
    assert_eq!(cache.get(&1), Some(1), "idle 1.9 ms of 2");
    clock.advance(Duration::from_micros(1_900)); // read at 2.8, now 4.7
    assert_eq!(cache.get(&1), Some(1), "idle 1.9 ms of 2 since the read");
    assert_eq!(cache.get(&2), None, "idle 3.8 ms of 2");
    clock.advance(Duration::from_micros(2_400)); // 2.4 ms after the read
    assert_eq!(cache.get(&1), None, "idle 2.4 ms of 2");
}

// ---------------------------------------------------------------- concurrency conservation

#[test]
fn counters_conserve_entries_under_mixed_concurrency() {
    for round in 0..6u64 {
        let clock = MockClock::new();
        let evicted = Arc::new(AtomicU64::new(0));
        let expired = Arc::new(AtomicU64::new(0));
        let removed = Arc::new(AtomicU64::new(0));
        let replaced = Arc::new(AtomicU64::new(0));
        let (e1, e2, e3, e4) = (
            evicted.clone(),
            expired.clone(),
            removed.clone(),
            replaced.clone(),
        );
        let mut b = Cache::builder()
            .max_capacity(if round % 2 == 0 { 64 } else { 500 })
            .shards(if round < 3 { 4 } else { 1 })
            .clock(clock.clone())
            .eviction_listener(move |_k: u64, _v: u64, c| {
                match c {
                    RemovalCause::Evicted => &e1,
                    RemovalCause::Expired => &e2,
                    RemovalCause::Removed => &e3,
                    _ => &e4,
                }
                .fetch_add(1, Ordering::SeqCst);
            });
        if round % 3 == 1 {
            b = b.weigher(|_, v: &u64| (*v % 4) as u32);
        }
        if round % 3 == 2 {
            b = b.time_to_idle(ms(30));
        }
        let cache: Cache<u64, u64> = b.build().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let clock = clock.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    clock.advance(ms(1));
                    std::thread::yield_now();
                }
            })
        };
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = cache.clone();
                std::thread::spawn(move || {
                    let mut r = Rng(t * 7919 + round * 31 + 1);
                    for _ in 0..20_000 {
                        let k = r.below(200);
                        let v = r.below(100);
                        match r.below(12) {
                            0 => {
                                c.remove(&k);
                            }
                            1 => {
                                let _ = c.compute(k, |cur| match cur {
                                    Some(c) if *c.value % 3 == 0 => (Decision::Remove, ()),
                                    Some(_) => (Decision::Put(v, Ttl::After(ms(20))), ()),
                                    None => (Decision::Put(v, Ttl::Keep), ()),
                                });
                            }
                            2 => {
                                c.get_or_insert_with(k, || v);
                            }
                            3 => c.insert_with_ttl(k, v, ms(r.below(40))),
                            4 => {
                                c.set_ttl(&k, Some(ms(r.below(40))));
                            }
                            5 => {
                                if r.below(200) == 0 {
                                    c.clear();
                                } else if r.below(50) == 0 {
                                    c.retain(|k, _| k % 5 != 0);
                                }
                            }
                            6 => {
                                let _ = c.entry(k).or_insert_with(|| v);
                            }
                            7 => {
                                let _ = c.try_get_or_insert_with(k, || {
                                    if v.is_multiple_of(2) {
                                        Ok(v)
                                    } else {
                                        Err(())
                                    }
                                });
                            }
                            _ => {
                                c.get(&k);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        ticker.join().unwrap();
        clock.advance(Duration::from_secs(3600));
        cache.purge_expired();
        let s = cache.stats();
        let len = cache.len() as u64;
        // Entries without a deadline are still there (unless TTI).
        let heard = (
            evicted.load(Ordering::SeqCst),
            expired.load(Ordering::SeqCst),
            removed.load(Ordering::SeqCst),
            replaced.load(Ordering::SeqCst),
        );
        eprintln!("round {round}: {s:?} len {len} heard {heard:?}");
        assert_eq!(
            (s.evictions, s.expirations, s.removals, s.updates),
            (heard.0, heard.1, heard.2, heard.3),
            "round {round}: stats vs listener"
        );
        assert_eq!(
            s.inserts,
            len + s.evictions + s.expirations + s.removals,
            "round {round}: conservation"
        );
        assert_eq!(cache.iter().count() as u64, len);
        assert!(cache.weighted_size() <= cache.max_capacity());
    }
}

// ---------------------------------------------------------------- refresh with an inline spawner

#[test]
fn refresh_with_an_inline_spawner_lands_the_reload() {
    let clock = MockClock::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let l = loads.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .time_to_live(ms(100))
        .refresh_after(ms(60))
        .refresh_loader_async(
            move |k: u64| {
                l.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<u64, std::io::Error>(k + 1000) }
            },
            futures::executor::block_on,
        )
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(ms(70));
    assert_eq!(cache.get(&1), Some(1));
    eprintln!(
        "loads {} value {:?} ttl {:?}",
        loads.load(Ordering::SeqCst),
        cache.get(&1),
        cache.ttl(&1)
    );
    assert_eq!(cache.get(&1), Some(1001));
    assert_eq!(cache.ttl(&1), Some(Some(ms(100))));
}

// ---------------------------------------------------------------- listener re-entering a load

/// Runs `f` on a thread, failing if it takes longer than 10 s.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> std::thread::Result<R> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("hung for 10 s")
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

// An eviction listener may call any method of the same cache, loads
// included (`CacheBuilder::eviction_listener`). A load's leader hands what
// its store removed to the listener only once the load has landed: a
// listener that loads the key whose load is landing (here the loaded value,
// given a zero TTL by `expire_after`, is reclaimed at once as expired, and
// the listener warms the key again) used to wait on that load and panic as
// "a loader asked the cache for the key it is loading".
#[test]
fn a_listener_may_load_the_key_of_the_landing_load_expired() {
    let r = within(|| {
        let slot: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::default();
        let s2 = slot.clone();
        let heard: Heard<u64, u64> = Arc::default();
        let h = heard.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .shards(1)
            // a "negative" result (0) is not worth keeping
            .expire_after(|_k, v: &u64| (*v == 0).then_some(Duration::ZERO))
            .eviction_listener(move |k, v, cause| {
                h.lock().unwrap().push((k, v, cause));
                if cause == RemovalCause::Expired && v == 0 {
                    let c = s2.lock().unwrap().clone().unwrap();
                    c.get_or_insert_with(k, || 7);
                }
            })
            .build()
            .unwrap();
        *slot.lock().unwrap() = Some(cache.clone());
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.get_or_insert_with(1, || 0)
        }));
        let text = out.as_ref().err().map(|p| panic_text(&**p));
        let after = cache.get(&1);
        *slot.lock().unwrap() = None;
        let log = heard.lock().unwrap().clone();
        (text, after, log)
    })
    .unwrap();
    eprintln!("{r:?}");
    assert_eq!(
        r.0, None,
        "get_or_insert_with panicked out of the listener's load"
    );
    assert_eq!(r.1, Some(7));
}

// The same, with the loaded entry evicted at once by TinyLFU's admission (a
// full cache holding a hotter key): a listener that refills evicted keys
// with `get_or_insert_with`.
#[test]
fn a_listener_may_load_the_key_of_the_landing_load_evicted() {
    let r = within(|| {
        let slot: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::default();
        let s2 = slot.clone();
        let heard: Heard<u64, u64> = Arc::default();
        let h = heard.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1)
            .shards(1)
            .eviction_listener(move |k, v, cause| {
                h.lock().unwrap().push((k, v, cause));
                if cause == RemovalCause::Evicted && k == 2 {
                    let c = s2.lock().unwrap().clone().unwrap();
                    // refill from the source; the key may well be evicted again
                    let _ = c.get_or_insert_with(k, || 20);
                }
            })
            .build()
            .unwrap();
        *slot.lock().unwrap() = Some(cache.clone());
        cache.insert(1, 1);
        for _ in 0..20 {
            cache.get(&1);
        }
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.get_or_insert_with(2, || 2)
        }));
        let text = out.as_ref().err().map(|p| panic_text(&**p));
        *slot.lock().unwrap() = None;
        let log = heard.lock().unwrap().clone();
        (text, log)
    })
    .unwrap();
    eprintln!("{r:?}");
    assert_eq!(
        r.0, None,
        "get_or_insert_with panicked out of the listener's load"
    );
}

// `Entry::is_fresh` says this call's `init` produced the value (as moka's
// does), whether or not the cache kept it: here it was too heavy.
#[test]
fn is_fresh_means_produced_here_even_when_not_kept() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10)
        .shards(1)
        .weigher(|_, v: &u64| *v as u32)
        .build()
        .unwrap();
    let e = cache.entry(1).or_insert_with(|| 50);
    assert!(e.is_fresh());
    assert_eq!(e.into_value(), 50);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.stats().rejections, 1);
    let e = cache.entry(2).or_insert_with(|| 5);
    assert!(e.is_fresh());
    assert!(!cache.entry(2).or_insert_with(|| 6).is_fresh());
}

// The async form: the listener's `get_or_insert_with`, run while the async
// leader's load was still registered, used to wait forever for a load only
// its own thread could land.
#[test]
fn a_listener_may_load_the_key_of_the_landing_async_load() {
    let r = within(|| {
        let slot: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::default();
        let s2 = slot.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .shards(1)
            .expire_after(|_k, v: &u64| (*v == 0).then_some(Duration::ZERO))
            .eviction_listener(move |k, v, cause| {
                if cause == RemovalCause::Expired && v == 0 {
                    let c = s2.lock().unwrap().clone().unwrap();
                    c.get_or_insert_with(k, || 7);
                }
            })
            .build()
            .unwrap();
        *slot.lock().unwrap() = Some(cache.clone());
        let v = futures::executor::block_on(cache.get_or_insert_with_async(1, async { 0 }));
        let after = cache.get(&1);
        *slot.lock().unwrap() = None;
        (v, after)
    });
    let r = r.map_err(|p| panic_text(&*p));
    eprintln!("{r:?}");
    assert_eq!(r, Ok((0, Some(7))));
}

// The same for a load spawned onto an executor (`get_or_insert_with_spawned`):
// the spawned task stores the value and lands the load, then hands the
// store's removals to the listener, which loads the key again.
#[test]
fn a_listener_may_load_the_key_of_the_landing_spawned_load() {
    let r = within(|| {
        let slot: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::default();
        let s2 = slot.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .shards(1)
            .expire_after(|_k, v: &u64| (*v == 0).then_some(Duration::ZERO))
            .eviction_listener(move |k, v, cause| {
                if cause == RemovalCause::Expired && v == 0 {
                    let c = s2.lock().unwrap().clone().unwrap();
                    c.get_or_insert_with(k, || 7);
                }
            })
            .build()
            .unwrap();
        *slot.lock().unwrap() = Some(cache.clone());
        // The spawner runs the load on a thread of its own.
        let v = futures::executor::block_on(cache.get_or_insert_with_spawned(
            1,
            || async { 0 },
            |f| {
                std::thread::spawn(move || futures::executor::block_on(f));
            },
        ));
        // The listener's load runs after the spawned load has landed.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while cache.get(&1).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(ms(1));
        }
        let after = cache.get(&1);
        *slot.lock().unwrap() = None;
        (v, after)
    });
    let r = r.map_err(|p| panic_text(&*p));
    assert_eq!(r, Ok((0, Some(7))));
}
