//! Adversarial probes of the cycle check (`lock_waits.rs`): mixes of user
//! code that can never close a cycle (computes, weighers, `retain`
//! predicates, nested computes on two caches, all calling only shards of a
//! higher rank in one global order; closures that panic; caches dropped and
//! built again so shard addresses are reused) must never panic with the
//! cycle message, and real two-thread cycles, repeated on fresh caches,
//! must panic in exactly one thread. Every scenario runs under a watchdog.

use shardcache::{Cache, Decision, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[allow(dead_code)] // not every test uses every draw
#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Xorshift;
#[path = "support/watchdog.rs"]
mod watchdog;
use watchdog::{bounded, message};
#[path = "support/shard_keys.rs"]
mod shard_keys;
use shard_keys::keys_on_distinct_shards;

type C = Cache<u64, u64>;

const CYCLE: &str = "cycle";

/// What a closure panics with on purpose.
const ON_PURPOSE: &str = "on purpose";

/// A plain call of kind `kind` for `key`.
fn call(c: &C, kind: usize, key: u64) {
    match kind % 4 {
        0 => drop(c.get(&key)),
        1 => c.insert(key, key),
        2 => drop(c.compute(key, |cur| {
            (
                Decision::Put(cur.map_or(1, |v| *v.value + 1), Ttl::Keep),
                (),
            )
        })),
        _ => drop(c.remove(&key)),
    }
}

/// The two caches of a scenario and their keys on distinct shards; the
/// global rank is (cache, shard): every shard of `low` ranks below every
/// shard of `high`.
struct Pair {
    low: C,
    high: C,
    low_keys: Vec<u64>,
    high_keys: Vec<u64>,
}

const SHARDS: usize = 8;

/// A low cache whose weigher (run under a low shard's lock) reads the high
/// cache, slowly, and a high cache with a slow weigher that calls nothing.
/// Small capacities, so that writes evict across shards.
fn pair() -> Pair {
    let high: C = Cache::builder()
        .max_capacity(64)
        .shards(SHARDS)
        .weigher(|k: &u64, _: &u64| {
            if k.is_multiple_of(7) {
                std::thread::yield_now();
            }
            1 + (*k % 3) as u32
        })
        .build()
        .expect("valid");
    let high_keys = keys_on_distinct_shards(&high, SHARDS);
    let low: C = {
        let high = high.clone();
        let probe = high_keys.clone();
        Cache::builder()
            .max_capacity(64)
            .shards(SHARDS)
            .weigher(move |k: &u64, _: &u64| {
                let _ = high.get(&probe[(*k as usize) % SHARDS]);
                if k.is_multiple_of(5) {
                    std::thread::yield_now();
                }
                1
            })
            .build()
            .expect("valid")
    };
    // Only the low cache's own plain probes: its weigher reads `high`, which
    // is fine from a low shard.
    let low_keys = keys_on_distinct_shards(&low, SHARDS);
    Pair {
        low,
        high,
        low_keys,
        high_keys,
    }
}

/// One round of a worker: user code holding a shard of rank r calls only
/// shards of rank above r (in `low` then `high`); some closures panic on
/// purpose after their calls.
fn round(p: &Pair, rng: &mut Xorshift) {
    let kind = rng.index(8);
    let i = rng.index(SHARDS);
    let explode = rng.index(16) == 0;
    match kind {
        // A compute on a low shard calling higher low shards, then any
        // high shard, with a nested compute on the high cache calling a
        // higher high shard.
        0..=2 => {
            let j = i + 1 + rng.index(SHARDS - i);
            let (k1, k2, h, h2) = (rng.index(4), rng.index(4), rng.index(SHARDS), rng.index(8));
            let _ = p.low.compute(p.low_keys[i], |_| {
                std::thread::yield_now();
                if j < SHARDS {
                    call(&p.low, k1, p.low_keys[j]);
                }
                let _ = p.high.compute(p.high_keys[h], |_| {
                    let l = h + 1 + h2 % (SHARDS - h);
                    if l < SHARDS {
                        call(&p.high, k2, p.high_keys[l]);
                    }
                    if explode {
                        panic!("{ON_PURPOSE}");
                    }
                    (Decision::Put(1, Ttl::Keep), ())
                });
                (Decision::Put(2, Ttl::Keep), ())
            });
        }
        // A compute on a high shard calling higher high shards.
        3 => {
            let j = i + 1 + rng.index(SHARDS - i);
            let k1 = rng.index(4);
            let _ = p.high.compute(p.high_keys[i], |_| {
                if j < SHARDS {
                    call(&p.high, k1, p.high_keys[j]);
                }
                if explode {
                    panic!("{ON_PURPOSE}");
                }
                (Decision::Nothing, ())
            });
        }
        // A retain on the low cache whose predicate reads the high cache.
        4 => {
            let h = rng.index(SHARDS);
            p.low.retain(|k, _| {
                let _ = p.high.get(&p.high_keys[h]);
                if explode {
                    panic!("{ON_PURPOSE}");
                }
                k % 3 != 0
            });
        }
        // A retain on the high cache calling nothing.
        5 => p.high.retain(|k, _| k % 11 != 0),
        // Plain calls (the low cache's weigher reads the high cache).
        6 => call(
            &p.low,
            rng.index(4),
            p.low_keys[i] + 1000 * rng.index(4) as u64,
        ),
        _ => call(&p.high, rng.index(4), p.high_keys[i]),
    }
}

/// Runs `threads` workers for `rounds` each; every outcome must be `Ok` or
/// the on-purpose panic.
fn run_workers(p: &Arc<Pair>, threads: u64, rounds: usize, seed: u64) -> Vec<String> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut rng = Xorshift::seeded(seed * 1000 + t);
                let mut bad = Vec::new();
                for _ in 0..rounds {
                    if let Err(e) = catch_unwind(AssertUnwindSafe(|| round(&p, &mut rng))) {
                        let m = message(&*e);
                        if !m.contains(ON_PURPOSE) {
                            bad.push(m);
                        }
                    }
                }
                bad
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("outcomes are caught"))
        .collect()
}

/// Sixteen threads of computes, nested computes on two caches, weighers that
/// call the other cache, `retain` predicates, and closures that panic on
/// purpose, all in one global order: nothing but the purposeful panics.
#[test]
fn ordered_user_code_on_two_caches_never_reports_a_cycle() {
    let bad = bounded(60, || {
        let p = Arc::new(pair());
        run_workers(&p, 16, 6_000, 1)
    })
    .expect("ordered user code deadlocked");
    assert!(
        bad.is_empty(),
        "{} spurious panics: {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
}

/// The same mix on caches dropped and built again each generation (shard
/// data at reused addresses), with threads that exit after every
/// generation: no stale registration makes a later generation panic.
#[test]
fn caches_rebuilt_at_reused_addresses_never_report_a_cycle() {
    let bad = bounded(60, || {
        let mut bad = Vec::new();
        for generation in 0..12 {
            let p = Arc::new(pair());
            bad.extend(run_workers(&p, 8, 150, 100 + generation));
            drop(p);
        }
        bad
    })
    .expect("rebuilt caches deadlocked");
    assert!(
        bad.is_empty(),
        "{} spurious panics: {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
}

/// A thread whose nested closure panicked, and that then waits (from user
/// code) for a shard another thread holds in user code, that in turn waits
/// for a shard the first thread used to hold: not a cycle, no panic.
#[test]
fn a_panicked_nested_closure_leaves_no_held_shard_behind() {
    let outcome = bounded(20, || {
        let c: C = Cache::builder()
            .max_capacity(1000)
            .shards(8)
            .build()
            .expect("valid");
        let k = keys_on_distinct_shards(&c, 4);
        // Thread A: a compute on k0 whose nested compute on k1 panics.
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let _ = c.compute(k[0], |_| {
                let _ = c.compute(k[1], |_| -> (Decision<u64>, ()) { panic!("{ON_PURPOSE}") });
                (Decision::Nothing, ())
            });
        }));
        assert!(caught.is_err());
        // Thread B holds k1 (which A named in its panicked closure) and waits
        // for k2, which A holds in a compute while it waits for k3, which C
        // holds until B's wait has begun.
        let barrier = Arc::new(Barrier::new(3));
        let b = {
            let (c, k, barrier) = (c.clone(), k.clone(), barrier.clone());
            std::thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    let _ = c.compute(k[1], |_| {
                        barrier.wait();
                        std::thread::sleep(Duration::from_millis(20));
                        let _ = c.get(&k[2]);
                        (Decision::Nothing, ())
                    });
                }))
                .map_err(|p| message(&*p))
            })
        };
        let third = {
            let (c, k, barrier) = (c.clone(), k.clone(), barrier.clone());
            std::thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    let _ = c.compute(k[3], |_| {
                        barrier.wait();
                        std::thread::sleep(Duration::from_millis(80));
                        (Decision::Nothing, ())
                    });
                }))
                .map_err(|p| message(&*p))
            })
        };
        let mine = catch_unwind(AssertUnwindSafe(|| {
            let _ = c.compute(k[2], |_| {
                barrier.wait();
                let _ = c.get(&k[3]);
                (Decision::Nothing, ())
            });
        }))
        .map_err(|p| message(&*p));
        vec![
            mine,
            b.join().expect("caught"),
            third.join().expect("caught"),
        ]
    })
    .expect("deadlocked");
    assert!(outcome.iter().all(Result::is_ok), "{outcome:?}");
}

/// A real two-thread cycle, repeated on fresh caches (reused addresses) with
/// every mix of reader and writer waits: exactly one thread panics with the
/// cycle message each time, the other finishes, and the cache works on.
#[test]
fn real_two_thread_cycles_on_fresh_caches_panic_in_exactly_one() {
    let bad = bounded(60, || {
        let mut bad = Vec::new();
        for round in 0..40usize {
            let c: C = Cache::builder()
                .max_capacity(1000)
                .shards(4)
                .build()
                .expect("valid");
            let k = keys_on_distinct_shards(&c, 2);
            let barrier = Arc::new(Barrier::new(2));
            let side = |mine: u64, other: u64, kind: usize| {
                let (c, barrier) = (c.clone(), barrier.clone());
                std::thread::spawn(move || {
                    catch_unwind(AssertUnwindSafe(|| {
                        let _ = c.compute(mine, |_| {
                            barrier.wait();
                            call(&c, kind, other);
                            (Decision::Nothing, ())
                        });
                    }))
                    .map_err(|p| message(&*p))
                })
            };
            let a = side(k[0], k[1], round % 4);
            let b = side(k[1], k[0], (round / 4) % 4);
            let outcomes = [a.join().expect("caught"), b.join().expect("caught")];
            let panics: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
            if panics.len() != 1 || !panics[0].contains(CYCLE) {
                bad.push(format!("round {round}: {outcomes:?}"));
            }
            c.insert(k[0], 9);
            c.insert(k[1], 9);
            if c.get(&k[0]) != Some(9) || c.get(&k[1]) != Some(9) {
                bad.push(format!("round {round}: cache broken after the cycle"));
            }
        }
        bad
    })
    .expect("a real cycle deadlocked");
    assert!(bad.is_empty(), "{bad:?}");
}
