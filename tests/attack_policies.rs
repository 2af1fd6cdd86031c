#![allow(clippy::unwrap_used)]
//! Attacks with misbehaving user-written eviction policies (no victim, a
//! token that is not live, random answers, panics in every hook, slow
//! hooks), and the conservation of eviction-listener notices under many
//! threads: every value that leaves is notified exactly once, with the
//! right cause.

#[cfg(feature = "conformance")]
use shardcache::conformance;
use shardcache::{Cache, Decision, Entries, EvictionPolicy, MockClock, Policy, RemovalCause, Ttl};
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------
// A FIFO policy with fault injection.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A correct FIFO.
    None,
    /// `victim` always returns `None`.
    NeverVictim,
    /// `victim` names a token that was never inserted.
    Bogus,
    /// `on_remove` is ignored, so the queue keeps removed tokens and names
    /// them again (already-removed / same-victim-twice).
    IgnoreRemove,
    /// `victim` always names the newest token (the one just inserted).
    Newest,
    /// `victim` names a pseudo-random token below 64 (inconsistent answers).
    Random,
    /// `victim` panics on its nth call.
    PanicVictim(usize),
    /// `on_insert` panics on its nth call.
    PanicInsert(usize),
    /// `on_remove` panics on its nth call.
    PanicRemove(usize),
    /// `maintain` panics on its nth call.
    PanicMaintain(usize),
    /// `clear` panics on its nth call.
    PanicClear(usize),
    /// `victim` sleeps 2 ms.
    Slow,
}

struct Faulty {
    queue: VecDeque<u32>,
    fault: Fault,
    calls: Arc<AtomicUsize>,
    rng: u64,
}

impl Faulty {
    fn new(fault: Fault, calls: Arc<AtomicUsize>) -> Self {
        Self {
            queue: VecDeque::new(),
            fault,
            calls,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
    fn tick(&self, n: usize) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst) + 1 == n
    }
}

impl EvictionPolicy for Faulty {
    fn on_insert(&mut self, _: &mut Entries<'_>, token: u32, _: u64) {
        if let Fault::PanicInsert(n) = self.fault {
            assert!(!self.tick(n), "policy panics in on_insert");
        }
        self.queue.push_back(token);
    }
    fn on_remove(&mut self, _: &mut Entries<'_>, token: u32) {
        if let Fault::PanicRemove(n) = self.fault {
            assert!(!self.tick(n), "policy panics in on_remove");
        }
        if self.fault == Fault::IgnoreRemove {
            return;
        }
        self.queue.retain(|&t| t != token);
    }
    fn victim(&mut self, _: &mut Entries<'_>) -> Option<u32> {
        match self.fault {
            Fault::NeverVictim => None,
            Fault::Bogus => Some(1_000_000),
            Fault::Newest => self.queue.back().copied(),
            Fault::Random => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                Some((self.rng % 64) as u32)
            }
            Fault::PanicVictim(n) => {
                assert!(!self.tick(n), "policy panics in victim");
                self.queue.front().copied()
            }
            Fault::Slow => {
                std::thread::sleep(Duration::from_millis(2));
                self.queue.front().copied()
            }
            Fault::IgnoreRemove => {
                // Name the front and rotate it to the back: removed tokens
                // stay in the queue and are named again later.
                let t = self.queue.pop_front()?;
                self.queue.push_back(t);
                Some(t)
            }
            _ => self.queue.front().copied(),
        }
    }
    fn maintain(&mut self, _: &mut Entries<'_>) {
        if let Fault::PanicMaintain(n) = self.fault {
            assert!(!self.tick(n), "policy panics in maintain");
        }
    }
    fn clear(&mut self) {
        if let Fault::PanicClear(n) = self.fault {
            assert!(!self.tick(n), "policy panics in clear");
        }
        self.queue.clear();
    }
}

fn policy(fault: Fault) -> (Policy, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    (
        Policy::custom("faulty", move |_| Faulty::new(fault, c.clone())),
        calls,
    )
}

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

fn cache_with(fault: Fault, cap: u64, shards: usize) -> (Cache<u64, u64>, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let cache = Cache::builder()
        .max_capacity(cap)
        .shards(shards)
        .policy(policy(fault).0)
        .eviction_listener(move |k, v, c| l.lock().unwrap().push((k, v, c)))
        .build()
        .unwrap();
    (cache, log)
}

/// Runs `f` on another thread and fails if it does not finish in 20 s.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the cache hung")
}

/// len, weighted size, iteration and stats agree.
fn whole(cache: &Cache<u64, u64>) -> Result<(), String> {
    let items: Vec<(u64, u64)> = cache.iter().collect();
    let keys: HashSet<u64> = items.iter().map(|p| p.0).collect();
    if keys.len() != items.len() {
        return Err(format!("iteration yields a key twice: {items:?}"));
    }
    if items.len() != cache.len() {
        return Err(format!(
            "len {} but iter yields {}",
            cache.len(),
            items.len()
        ));
    }
    if cache.weighted_size() != items.len() as u64 {
        return Err(format!(
            "weighted_size {} but iter yields {}",
            cache.weighted_size(),
            items.len()
        ));
    }
    for (k, _) in &items {
        if !cache.contains_key(k) {
            return Err(format!("iter yields {k} but contains_key says no"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (A) misbehaving policies
// ---------------------------------------------------------------------------

/// Documented: "Returning `None` means nothing can be evicted now, and the
/// write that needed room is refused (as `noeviction` does)."
// A policy whose victim is always `None` gets its writes refused once the
// shard is full, as the trait's contract says ("the write that needed room
// is refused (as `noeviction` does)"). They used to be accepted, the cache
// growing past max_capacity without bound.
#[test]
fn a_policy_that_never_names_a_victim_gets_its_writes_refused() {
    let (cache, _log) = cache_with(Fault::NeverVictim, 4, 1);
    let mut accepted = 0;
    for k in 0..100 {
        if cache.try_insert(k, k).is_ok() {
            accepted += 1;
        }
    }
    whole(&cache).unwrap();
    let s = cache.stats();
    println!(
        "never-victim: accepted {accepted}, len {}, stats {s:?}",
        cache.len()
    );
    assert!(
        cache.len() as u64 <= cache.max_capacity(),
        "len {} > max_capacity {} (accepted {accepted} of 100 writes, rejections {})",
        cache.len(),
        cache.max_capacity(),
        s.rejections
    );
}

/// Documented: "A token that is not live is treated as `None`" (and
/// `None` refuses the write).
// The same for a victim that is not a live token.
#[test]
fn a_policy_that_names_a_bogus_token_gets_its_writes_refused() {
    let (cache, log) = cache_with(Fault::Bogus, 4, 1);
    for k in 0..100 {
        let _ = cache.try_insert(k, k);
    }
    whole(&cache).unwrap();
    assert!(log.lock().unwrap().is_empty(), "nothing may be evicted");
    assert!(
        cache.len() as u64 <= cache.max_capacity(),
        "len {} > max_capacity {}",
        cache.len(),
        cache.max_capacity()
    );
}

/// Same, with a weigher: weighted_size passes max_capacity.
// With a weigher: weighted_size stays within max_capacity.
#[test]
fn a_policy_that_never_names_a_victim_keeps_weight_within_capacity() {
    let (p, _) = policy(Fault::NeverVictim);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .weigher(|_, v| *v as u32)
        .policy(p)
        .build()
        .unwrap();
    for k in 0..50 {
        let _ = cache.try_insert(k, 10);
    }
    let summed: u64 = cache.iter().map(|(_, v)| v).sum();
    assert_eq!(summed, cache.weighted_size());
    assert!(
        cache.weighted_size() <= cache.max_capacity(),
        "weighted_size {} > max_capacity {}",
        cache.weighted_size(),
        cache.max_capacity()
    );
}

#[test]
fn a_policy_that_ignores_on_remove_names_dead_tokens_harmlessly() {
    let (cache, log) = cache_with(Fault::IgnoreRemove, 8, 1);
    for k in 0..2_000u64 {
        cache.insert(k % 300, k);
        if k % 7 == 0 {
            cache.remove(&(k % 300));
        }
        whole(&cache).unwrap();
    }
    conserve(&cache, &log, &all_values(0..2_000, |k| k));
}

#[test]
fn a_policy_that_names_the_entry_being_inserted() {
    let (cache, log) = cache_with(Fault::Newest, 4, 1);
    for k in 0..100u64 {
        let r = cache.try_insert(k, k + 1000);
        println!(
            "newest: try_insert({k}) -> {:?}",
            r.as_ref().map_err(|e| (e.key, e.value))
        );
        whole(&cache).unwrap();
        if k > 10 {
            break;
        }
    }
    println!(
        "newest: len {}, stats {:?}, log {:?}",
        cache.len(),
        cache.stats(),
        log.lock().unwrap()
    );
    conserve(&cache, &log, &all_values(0..12, |k| k + 1000));
}

#[test]
fn a_policy_with_random_answers_keeps_the_cache_whole() {
    let (cache, log) = cache_with(Fault::Random, 16, 1);
    let mut written = Vec::new();
    for i in 0..20_000u64 {
        let k = (i * 7919) % 97;
        match i % 5 {
            0 => {
                cache.remove(&k);
            }
            _ => {
                if cache.try_insert(k, i).is_ok() {
                    written.push(i);
                }
            }
        }
        if i % 100 == 0 {
            whole(&cache).unwrap();
        }
    }
    whole(&cache).unwrap();
    println!("random: len {}, stats {:?}", cache.len(), cache.stats());
    conserve(&cache, &log, &written.into_iter().collect());
}

/// Every value written (all distinct) is either in the cache or was
/// notified exactly once; no value is notified twice.
fn conserve(cache: &Cache<u64, u64>, log: &Log, written: &HashSet<u64>) {
    let log = log.lock().unwrap();
    let mut seen: HashMap<u64, (u64, RemovalCause)> = HashMap::new();
    for &(k, v, c) in log.iter() {
        if let Some(prev) = seen.insert(v, (k, c)) {
            panic!("value {v} notified twice: {prev:?} and {:?}", (k, c));
        }
    }
    let inside: HashMap<u64, u64> = cache.iter().map(|(k, v)| (v, k)).collect();
    for v in written {
        let n = usize::from(seen.contains_key(v)) + usize::from(inside.contains_key(v));
        assert_eq!(
            n,
            1,
            "value {v}: notified {:?}, inside {:?}",
            seen.get(v),
            inside.get(v)
        );
    }
    for v in seen.keys().chain(inside.keys()) {
        assert!(written.contains(v), "value {v} never written");
    }
}

fn all_values(r: std::ops::Range<u64>, f: impl Fn(u64) -> u64) -> HashSet<u64> {
    r.map(f).collect()
}

// ---------------------------------------------------------------------------
// Panicking hooks
// ---------------------------------------------------------------------------

/// What a run with a panicking policy saw.
#[derive(Debug, Default)]
struct PanicRun {
    panics: usize,
    problems: Vec<String>,
}

/// Drives a one-shard cache of capacity 8 whose policy panics once (the
/// nth call of one hook), catching every panic; then checks the cache.
/// `clear_every` clears every so many steps (to reach `clear`).
fn panic_run(fault: Fault, clear_every: u64) -> PanicRun {
    within(move || {
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let (cache, log) = cache_with(fault, 8, 1);
        let mut run = PanicRun::default();
        // Values whose write returned normally / panicked.
        let mut written = HashSet::new();
        let mut maybe = HashSet::new();
        for i in 1..3_000u64 {
            let k = (i * 7919) % 41;
            let r = catch_unwind(AssertUnwindSafe(|| {
                if i % clear_every == 0 {
                    cache.clear();
                } else if i % 5 == 0 {
                    cache.remove(&k);
                } else {
                    cache.insert(k, i);
                }
            }));
            let is_insert = i % clear_every != 0 && i % 5 != 0;
            match r {
                Ok(()) if is_insert => {
                    written.insert(i);
                }
                Ok(()) => {}
                Err(_) => {
                    run.panics += 1;
                    if is_insert {
                        maybe.insert(i);
                    }
                }
            }
            if let Err(e) = whole(&cache) {
                run.problems.push(format!("step {i}: {e}"));
                break;
            }
        }
        std::panic::set_hook(quiet);
        if cache.len() as u64 > cache.max_capacity() {
            run.problems.push(format!(
                "len {} > capacity {}",
                cache.len(),
                cache.max_capacity()
            ));
        }
        let s = cache.stats();
        let net = s.inserts as i64 - (s.evictions + s.expirations + s.removals) as i64;
        if net != cache.len() as i64 {
            run.problems
                .push(format!("stats net {net} != len {}: {s:?}", cache.len()));
        }
        // Conservation.
        let log = log.lock().unwrap();
        let mut notified: HashMap<u64, usize> = HashMap::new();
        for &(_, v, _) in log.iter() {
            *notified.entry(v).or_default() += 1;
        }
        let inside: HashSet<u64> = cache.iter().map(|(_, v)| v).collect();
        for (&v, &n) in &notified {
            if n > 1 {
                run.problems.push(format!("value {v} notified {n} times"));
            }
            if inside.contains(&v) {
                run.problems
                    .push(format!("value {v} notified but still inside"));
            }
        }
        let lost: Vec<u64> = written
            .iter()
            .filter(|v| !notified.contains_key(v) && !inside.contains(v))
            .copied()
            .collect();
        if !lost.is_empty() {
            run.problems.push(format!(
                "{} written values left with no notice: {:?}",
                lost.len(),
                &lost[..lost.len().min(10)]
            ));
        }
        run
    })
}

fn report(name: &str, run: &PanicRun) {
    println!(
        "{name}: panics caught {}, problems {:#?}",
        run.panics, run.problems
    );
}

#[test]
fn explore_panics_in_every_hook() {
    for (name, fault, clear_every) in [
        ("victim", Fault::PanicVictim(20), 1_000),
        ("on_insert", Fault::PanicInsert(20), 1_000),
        ("on_remove", Fault::PanicRemove(20), 1_000),
        ("maintain", Fault::PanicMaintain(3), 1_000),
        ("clear", Fault::PanicClear(1), 50),
    ] {
        let run = panic_run(fault, clear_every);
        report(name, &run);
    }
}

fn quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    catch_unwind(AssertUnwindSafe(f))
}

/// Documented: "Hooks must not panic"; but a panic must not corrupt the
/// cache (the crate's other user code leaves it whole, tests/user_code.rs).
// The policy's `clear` panicking leaves the shard as it was (it is called
// before anything else is cleared). It used to leave the table empty and
// the slab full: len 0, while iter yielded the entries.
#[test]
fn a_policy_whose_clear_panics_leaves_the_cache_whole() {
    let (cache, log) = cache_with(Fault::PanicClear(1), 8, 1);
    for k in 0..8 {
        cache.insert(k, k);
    }
    let r = quietly(|| cache.clear());
    assert!(r.is_err(), "clear panicked through the policy");
    let iter: Vec<(u64, u64)> = cache.iter().collect();
    println!(
        "after panicking clear: len {}, weighted_size {}, iter {:?}, contains_key(0) {}, get(0) {:?}, notices {}",
        cache.len(),
        cache.weighted_size(),
        iter,
        cache.contains_key(&0),
        cache.get(&0),
        log.lock().unwrap().len()
    );
    whole(&cache).unwrap();
}

// After the policy's `clear` panicked once (and then behaves), ordinary
// inserts into the same shard work (they used to panic: "token N was not in
// the table").
#[test]
fn after_a_panicking_clear_unrelated_inserts_do_not_panic() {
    let (cache, log) = cache_with(Fault::PanicClear(1), 8, 1);
    for k in 0..8 {
        cache.insert(k, k);
    }
    let _ = quietly(|| cache.clear());
    let mut panics = Vec::new();
    for k in 100..120u64 {
        if let Err(p) = quietly(|| cache.insert(k, k)) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            panics.push((k, msg));
        }
    }
    println!(
        "after panicking clear then 20 inserts: len {}, weighted_size {}, iter count {}, notices {:?}",
        cache.len(),
        cache.weighted_size(),
        cache.iter().count(),
        log.lock().unwrap()
    );
    assert!(panics.is_empty(), "unrelated inserts panicked: {panics:?}");
    whole(&cache).unwrap();
}

fn weighted_cache(fault: Fault, cap: u64) -> (Cache<u64, u64>, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let cache = Cache::builder()
        .max_capacity(cap)
        .shards(1)
        .weigher(|_, v| (*v % 100) as u32)
        .policy(policy(fault).0)
        .eviction_listener(move |k, v, c| l.lock().unwrap().push((k, v, c)))
        .build()
        .unwrap();
    (cache, log)
}

/// A value that left the cache must be notified (listener.rs / builder:
/// "Called with each removed entry and why it left").
// Known limitation, documented on `EvictionPolicy`: when `victim` panics
// after a replace, the replaced value has left the cache and its `Replaced`
// notice is lost with the panic.
#[ignore = "known limitation: a panicking policy hook loses the notices of its write"]
#[test]
fn a_replaced_value_is_notified_even_if_the_policy_panics() {
    // Weight = value % 100.
    let (cache, log) = weighted_cache(Fault::PanicVictim(1), 10);
    cache.insert(1, 103); // weight 3
    cache.insert(2, 203); // weight 3
    cache.insert(3, 303); // weight 3
    let r = quietly(|| cache.insert(1, 1_005)); // weight 5: 11 > 10, victim panics
    assert!(r.is_err());
    let inside: Vec<(u64, u64)> = cache.iter().collect();
    let notices = log.lock().unwrap().clone();
    println!("inside {inside:?}, notices {notices:?}");
    assert!(
        inside.iter().any(|&(_, v)| v == 103) || notices.iter().any(|&(_, v, _)| v == 103),
        "value 103 left the cache with no notice: inside {inside:?}, notices {notices:?}"
    );
}

// Known limitation, likewise: an insert that evicts two entries, whose
// second `victim` call panics, loses the first evicted entry's notice.
#[ignore = "known limitation: a panicking policy hook loses the notices of its write"]
#[test]
fn an_evicted_value_is_notified_even_if_a_later_victim_panics() {
    let (cache, log) = weighted_cache(Fault::PanicVictim(2), 10);
    cache.insert(1, 103);
    cache.insert(2, 203);
    cache.insert(3, 303);
    let r = quietly(|| cache.insert(4, 409)); // 18 > 10: two evictions
    assert!(r.is_err());
    let inside: Vec<(u64, u64)> = cache.iter().collect();
    let notices = log.lock().unwrap().clone();
    println!("inside {inside:?}, notices {notices:?}");
    for v in [103, 203, 303, 409] {
        assert!(
            inside.iter().any(|&(_, x)| x == v) || notices.iter().any(|&(_, x, _)| x == v),
            "value {v} left the cache with no notice: inside {inside:?}, notices {notices:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// (B) Conservation of listener notices under concurrency
// ---------------------------------------------------------------------------

/// A correct FIFO, for the conservation runs.
fn fifo() -> Policy {
    policy(Fault::None).0
}

const KEYS: u64 = 150;

/// Value for key `k` and a global sequence number: the key is recoverable.
fn val(k: u64, seq: u64) -> u64 {
    seq * 1_000 + k
}

#[derive(Default)]
struct Ledger {
    /// Values the cache accepted (stored, maybe evicted at once).
    written: Mutex<HashSet<u64>>,
    /// Values that may or may not have been stored (loads).
    maybe: Mutex<HashSet<u64>>,
    /// Values written with a TTL.
    with_ttl: Mutex<HashSet<u64>>,
}

fn conservation_run(p: Policy, seed: u64, weighted: bool) -> Vec<String> {
    let clock = MockClock::new();
    let log: Log = Arc::default();
    let l = log.clone();
    let mut b = Cache::builder()
        .max_capacity(if weighted { 200 } else { 64 })
        .shards(4)
        .policy(p)
        .clock(clock.clone())
        .eviction_listener(move |k, v, c| l.lock().unwrap().push((k, v, c)));
    if weighted {
        b = b.weigher(|_, v: &u64| 1 + (*v / 1_000 % 7) as u32);
    }
    let cache: Cache<u64, u64> = b.build().unwrap();
    let seq = Arc::new(AtomicU64::new(1));
    let ledger = Arc::new(Ledger::default());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (cache, seq, ledger, clock) =
                (cache.clone(), seq.clone(), ledger.clone(), clock.clone());
            std::thread::spawn(move || {
                let mut x = seed.wrapping_mul(31).wrapping_add(t * 0x9E37) | 1;
                let mut rnd = move |n: u64| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % n
                };
                for _ in 0..6_000 {
                    let k = rnd(KEYS);
                    let op = rnd(1_000);
                    let v = val(k, seq.fetch_add(1, Ordering::SeqCst));
                    match op {
                        0..=399 => {
                            if cache.try_insert(k, v).is_ok() {
                                ledger.written.lock().unwrap().insert(v);
                            }
                        }
                        400..=549 => {
                            let ttl = Duration::from_millis(1 + rnd(50));
                            if cache.try_insert_with_expiry(k, v, Some(ttl)).is_ok() {
                                ledger.written.lock().unwrap().insert(v);
                                ledger.with_ttl.lock().unwrap().insert(v);
                            }
                        }
                        550..=649 => {
                            cache.remove(&k);
                        }
                        650..=749 => {
                            // compute: put, remove, or set a TTL.
                            let what = rnd(3);
                            let r = cache.compute(k, |cur| match (what, cur) {
                                (0, _) => (Decision::Put(v, Ttl::Keep), true),
                                (1, Some(_)) => (Decision::Remove, false),
                                (_, Some(_)) => (
                                    Decision::SetTtl(Ttl::After(Duration::from_millis(5))),
                                    false,
                                ),
                                _ => (Decision::Nothing, false),
                            });
                            if let Ok(true) = r {
                                ledger.written.lock().unwrap().insert(v);
                                ledger.with_ttl.lock().unwrap().insert(v);
                            }
                        }
                        750..=849 => {
                            ledger.maybe.lock().unwrap().insert(v);
                            let _ = cache.get_or_insert_with(k, || v);
                        }
                        850..=899 => {
                            let _ = cache.get(&k);
                        }
                        900..=919 => cache.invalidate_if(|key, _| key % 17 == k % 17),
                        920..=939 => cache.retain(|key, _| key % 13 != k % 13),
                        940..=944 => cache.clear(),
                        945..=969 => clock.advance(Duration::from_millis(3)),
                        970..=979 => cache.purge_expired(),
                        _ => {
                            let _ = cache.set_ttl(&k, Some(Duration::from_millis(2)));
                        }
                    }
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    // `len` counts expired entries not yet reclaimed (documented): reclaim
    // them (and notify them) before comparing.
    cache.purge_expired();
    let mut problems = Vec::new();
    let written = ledger.written.lock().unwrap().clone();
    let maybe = ledger.maybe.lock().unwrap().clone();
    let with_ttl = ledger.with_ttl.lock().unwrap().clone();
    let inside: HashMap<u64, u64> = cache.iter().map(|(k, v)| (v, k)).collect();
    let log = log.lock().unwrap().clone();
    let mut notified: HashMap<u64, Vec<RemovalCause>> = HashMap::new();
    for &(k, v, c) in &log {
        if v % 1_000 != k {
            problems.push(format!(
                "notice ({k}, {v}, {c:?}) carries another key's value"
            ));
        }
        notified.entry(v).or_default().push(c);
    }
    for (v, cs) in &notified {
        if cs.len() > 1 {
            problems.push(format!("value {v} notified {} times: {cs:?}", cs.len()));
        }
        if inside.contains_key(v) {
            problems.push(format!("value {v} notified {cs:?} but still inside"));
        }
        if !written.contains(v) && !maybe.contains(v) {
            problems.push(format!("value {v} notified {cs:?} but never stored"));
        }
        if cs.contains(&RemovalCause::Expired) && !with_ttl.contains(v) && !maybe.contains(v) {
            // set_ttl may give any entry a TTL: only flag if it never had one.
        }
    }
    for v in inside.keys() {
        if !written.contains(v) && !maybe.contains(v) {
            problems.push(format!("value {v} inside but never stored"));
        }
    }
    let lost: Vec<u64> = written
        .iter()
        .filter(|v| !notified.contains_key(v) && !inside.contains_key(v))
        .copied()
        .collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} stored values left with no notice, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    if let Err(e) = whole_weighted(&cache, weighted) {
        problems.push(e);
    }
    let s = cache.stats();
    let by_cause = |c: RemovalCause| log.iter().filter(|n| n.2 == c).count() as u64;
    if s.evictions != by_cause(RemovalCause::Evicted) {
        problems.push(format!(
            "stats.evictions {} != Evicted notices {}",
            s.evictions,
            by_cause(RemovalCause::Evicted)
        ));
    }
    if s.expirations != by_cause(RemovalCause::Expired) {
        problems.push(format!(
            "stats.expirations {} != Expired notices {}",
            s.expirations,
            by_cause(RemovalCause::Expired)
        ));
    }
    if s.removals != by_cause(RemovalCause::Removed) {
        problems.push(format!(
            "stats.removals {} != Removed notices {}",
            s.removals,
            by_cause(RemovalCause::Removed)
        ));
    }
    let net = s.inserts as i64 - (s.evictions + s.expirations + s.removals) as i64;
    if net != cache.len() as i64 {
        problems.push(format!(
            "inserts - evictions - expirations - removals = {net} != len {}: {s:?}",
            cache.len()
        ));
    }
    println!(
        "conservation seed {seed} weighted {weighted}: {} notices, len {}, stats {s:?}, problems {}",
        log.len(),
        cache.len(),
        problems.len()
    );
    problems
}

fn whole_weighted(cache: &Cache<u64, u64>, weighted: bool) -> Result<(), String> {
    let items: Vec<(u64, u64)> = cache.iter().collect();
    if items.len() != cache.len() {
        return Err(format!(
            "len {} but iter yields {}",
            cache.len(),
            items.len()
        ));
    }
    let w: u64 = items
        .iter()
        .map(|&(_, v)| if weighted { 1 + v / 1_000 % 7 } else { 1 })
        .sum();
    if w != cache.weighted_size() {
        return Err(format!(
            "weighted_size {} but entries weigh {w}",
            cache.weighted_size()
        ));
    }
    if cache.weighted_size() > cache.max_capacity() {
        return Err(format!(
            "weighted_size {} > capacity",
            cache.weighted_size()
        ));
    }
    Ok(())
}

#[test]
fn notices_are_conserved_under_threads_with_a_custom_policy() {
    let mut all = Vec::new();
    for seed in 1..=6 {
        for weighted in [false, true] {
            let p = conservation_run(fifo(), seed, weighted);
            all.extend(
                p.into_iter()
                    .take(5)
                    .map(|s| format!("seed {seed} w {weighted}: {s}")),
            );
        }
    }
    assert!(all.is_empty(), "{all:#?}");
}

#[test]
fn notices_are_conserved_under_threads_with_builtin_policies() {
    let mut all = Vec::new();
    for (name, p) in [
        ("tinylfu", Policy::tiny_lfu()),
        ("lru", Policy::lru()),
        ("allkeys-lru", Policy::redis_allkeys_lru()),
    ] {
        for seed in 1..=3 {
            for weighted in [false, true] {
                let problems = conservation_run(p.clone(), seed, weighted);
                all.extend(
                    problems
                        .into_iter()
                        .take(5)
                        .map(|s| format!("{name} seed {seed} w {weighted}: {s}")),
                );
            }
        }
    }
    assert!(all.is_empty(), "{all:#?}");
}

/// Conservation with misbehaving (but not panicking) policies. The
/// capacity overrun these policies cause is reported by the tests above;
/// here only notices and len/iter/stats agreement are checked.
#[test]
fn notices_are_conserved_under_threads_with_misbehaving_policies() {
    let mut all = Vec::new();
    for fault in [
        Fault::Random,
        Fault::IgnoreRemove,
        Fault::Newest,
        Fault::NeverVictim,
        Fault::Bogus,
    ] {
        for seed in 1..=2 {
            for weighted in [false, true] {
                let problems = conservation_run(policy(fault).0, seed, weighted);
                all.extend(
                    problems
                        .into_iter()
                        .filter(|p| !p.contains("> capacity"))
                        .take(5)
                        .map(|s| format!("{fault:?} seed {seed} w {weighted}: {s}")),
                );
            }
        }
    }
    assert!(all.is_empty(), "{all:#?}");
}

#[test]
fn a_slow_policy_does_not_hang_the_cache() {
    within(|| {
        let (cache, log) = cache_with(Fault::Slow, 8, 2);
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let c = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        c.insert(t * 1_000 + i, t * 1_000 + i);
                        let _ = c.get(&i);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        whole(&cache).unwrap();
        conserve(
            &cache,
            &log,
            &(0..3u64)
                .flat_map(|t| (0..100).map(move |i| t * 1_000 + i))
                .collect(),
        );
    });
}

/// Expired entries overwritten or removed are reported `Expired`, the
/// replaced live value `Replaced` with the old value (single thread).
#[test]
fn causes_are_right_for_expired_and_replaced_values() {
    let clock = MockClock::new();
    let log: Log = Arc::default();
    let l = log.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .policy(fifo())
        .clock(clock.clone())
        .eviction_listener(move |k, v, c| l.lock().unwrap().push((k, v, c)))
        .build()
        .unwrap();
    let ttl = Some(Duration::from_millis(10));
    for k in 0..6 {
        cache.try_insert_with_expiry(k, 100 + k, ttl).unwrap();
    }
    cache.insert(10, 110);
    clock.advance(Duration::from_millis(20));
    cache.insert(0, 200); // over an expired entry
    cache
        .compute(1, |_| (Decision::Put(201, Ttl::Never), ()))
        .unwrap();
    cache.remove(&2);
    cache.retain(|k, _| *k != 3);
    cache.invalidate_if(|k, _| *k == 4);
    cache.insert(10, 210); // over a live entry
    cache
        .compute(10, |_| (Decision::Put(310, Ttl::Never), ()))
        .unwrap();
    cache.compute(10, |_| (Decision::Remove, ())).unwrap();
    cache.purge_expired();
    let got = log.lock().unwrap().clone();
    println!("causes: {got:?}");
    let cause_of = |v: u64| got.iter().find(|n| n.1 == v).map(|n| n.2);
    for v in 100..=105 {
        assert_eq!(
            cause_of(v),
            Some(RemovalCause::Expired),
            "value {v}: {got:?}"
        );
    }
    assert_eq!(cause_of(110), Some(RemovalCause::Replaced));
    assert_eq!(cause_of(210), Some(RemovalCause::Replaced));
    assert_eq!(cause_of(310), Some(RemovalCause::Removed));
    assert_eq!(got.len(), 9);
}

/// The conformance suite flags the misbehaving policies.
#[cfg(feature = "conformance")]
#[test]
fn conformance_flags_misbehaving_policies() {
    // (`Newest`, always evicting the entry just inserted, is a legal policy:
    // the contract lets `victim` name the token being written.)
    for fault in [
        Fault::NeverVictim,
        Fault::Bogus,
        Fault::IgnoreRemove,
        Fault::Random,
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let r = within(move || {
            conformance::check("faulty", move |_| Faulty::new(fault, calls.clone()))
        });
        println!("conformance {fault:?}: {r:?}");
        assert!(r.is_err(), "{fault:?} passed the conformance suite");
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let r = conformance::check("fifo", move |_| Faulty::new(Fault::None, calls.clone()));
    assert_eq!(r, Ok(()));
}
