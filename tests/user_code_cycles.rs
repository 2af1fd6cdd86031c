//! Threads whose user code under a shard's lock (a `compute` closure) calls
//! the cache for a key on another shard. When such calls close a cycle
//! (each thread waiting for a shard the next one holds), the thread that
//! closes it panics with the cache's message and the others finish; when
//! they do not, nobody panics and every call finishes. Every scenario runs
//! under a watchdog, so a deadlock fails the test instead of hanging it.

use shardcache::{Cache, Decision, Ttl};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

#[path = "support/watchdog.rs"]
mod watchdog;
use watchdog::{bounded, message};
#[path = "support/shard_keys.rs"]
mod shard_keys;
use shard_keys::keys_on_distinct_shards;

type C = Cache<u64, u64>;

/// What the cycle panic's message says.
const CYCLE: &str = "cycle";

/// A cache of `shards` shards.
fn cache(shards: usize) -> C {
    Cache::builder()
        .max_capacity(10_000)
        .shards(shards)
        .build()
        .expect("valid")
}

/// A call into the cache made from a closure.
#[derive(Clone, Copy, Debug)]
enum Inner {
    Get,
    Insert,
    Compute,
    Remove,
}

const INNERS: [Inner; 4] = [Inner::Get, Inner::Insert, Inner::Compute, Inner::Remove];

fn call(c: &C, inner: Inner, key: u64) {
    match inner {
        Inner::Get => {
            let _ = c.get(&key);
        }
        Inner::Insert => c.insert(key, 1),
        Inner::Compute => {
            let _ = c.compute(key, |cur| {
                (
                    Decision::Put(cur.map_or(1, |v| *v.value + 1), Ttl::Keep),
                    (),
                )
            });
        }
        Inner::Remove => drop(c.remove(&key)),
    }
}

/// Threads `i` of `keys.len()`, each holding `keys[i]`'s shard in a
/// `compute` closure that waits at a barrier (so that all hold theirs) and
/// then makes `inner` for `keys[(i + 1) % n]`: a ring of waits. Each
/// thread's outcome: `Ok` or its panic's message.
fn ring(c: &C, keys: &[u64], inner: Inner) -> Vec<Result<(), String>> {
    let n = keys.len();
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (c, barrier) = (c.clone(), barrier.clone());
            let (mine, next) = (keys[i], keys[(i + 1) % n]);
            std::thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    let _ = c.compute(mine, |_| {
                        barrier.wait();
                        call(&c, inner, next);
                        (Decision::Nothing, ())
                    });
                }))
                .map_err(|p| message(&*p))
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("the outcome is caught"))
        .collect()
}

/// Exactly one thread of a ring panics, with the cycle message; the others
/// finish, and the cache works on.
fn check_ring(n: usize, inner: Inner) {
    let c = cache((2 * n).next_power_of_two());
    let keys = keys_on_distinct_shards(&c, n);
    let outcomes = {
        let (c, keys) = (c.clone(), keys.clone());
        bounded(20, move || ring(&c, &keys, inner))
            .unwrap_or_else(|()| panic!("a ring of {n} with {inner:?} deadlocked"))
    };
    let panics: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(panics.len(), 1, "{inner:?} in a ring of {n}: {outcomes:?}");
    assert!(panics[0].contains(CYCLE), "{inner:?}: {}", panics[0]);
    for &k in &keys {
        c.insert(k, 7);
        assert_eq!(c.get(&k), Some(7));
    }
}

#[test]
fn two_threads_calling_each_others_shard_panic_in_one() {
    for inner in INNERS {
        check_ring(2, inner);
    }
}

#[test]
fn three_threads_in_a_ring_panic_in_one() {
    for inner in INNERS {
        check_ring(3, inner);
    }
}

/// A cycle through a second cache: thread A holds a shard of `c` and, in
/// a closure of `d`'s `compute`, a shard of `d`, then calls `c` for the
/// shard B holds; B's closure calls `d` for the shard A holds.
#[test]
fn a_cycle_through_nested_computes_on_two_caches_panics_in_one() {
    let (c, d) = (cache(4), cache(4));
    let (a, b) = {
        let k = keys_on_distinct_shards(&c, 2);
        (k[0], k[1])
    };
    let x = 5;
    let outcomes = bounded(20, move || {
        let barrier = Arc::new(Barrier::new(2));
        let t = {
            let (c, d, barrier) = (c.clone(), d.clone(), barrier.clone());
            std::thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    let _ = c.compute(a, |_| {
                        let _ = d.compute(x, |_| {
                            barrier.wait();
                            let _ = c.get(&b);
                            (Decision::Nothing, ())
                        });
                        (Decision::Nothing, ())
                    });
                }))
                .map_err(|p| message(&*p))
            })
        };
        let mine = catch_unwind(AssertUnwindSafe(|| {
            let _ = c.compute(b, |_| {
                barrier.wait();
                d.insert(x, 1);
                (Decision::Nothing, ())
            });
        }))
        .map_err(|p| message(&*p));
        vec![mine, t.join().expect("the outcome is caught")]
    })
    .expect("nested computes deadlocked");
    let panics: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(panics.len(), 1, "{outcomes:?}");
    assert!(panics[0].contains(CYCLE), "{}", panics[0]);
}

/// Runs `first` and `second` on two threads at once; their outcomes, `Ok`
/// or a panic's message, under the watchdog.
fn both(
    first: impl FnOnce() + Send + 'static,
    second: impl FnOnce() + Send + 'static,
) -> Vec<Result<(), String>> {
    bounded(20, move || {
        let run = |f: Box<dyn FnOnce() + Send>| {
            std::thread::spawn(move || catch_unwind(AssertUnwindSafe(f)).map_err(|p| message(&*p)))
        };
        let (a, b) = (run(Box::new(first)), run(Box::new(second)));
        vec![a.join().expect("caught"), b.join().expect("caught")]
    })
    .expect("the two threads deadlocked")
}

/// Exactly one of two outcomes is the cycle panic.
fn one_cycle_panic(outcomes: &[Result<(), String>]) {
    let panics: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(panics.len(), 1, "{outcomes:?}");
    assert!(panics[0].contains(CYCLE), "{}", panics[0]);
}

/// What a weigher or a predicate arranged by a test calls: once it sees
/// `mine` (its thread holds `mine`'s shard), it meets the other thread at
/// the barrier, lets it take `other`'s shard, meets it again, and then gets
/// `other` (only the first time). The other thread takes its shard only
/// then: a `retain` may still have to pass that shard before it reaches
/// `mine`'s.
struct Hook {
    cache: C,
    mine: u64,
    other: u64,
    barrier: Barrier,
    fired: AtomicBool,
}

impl Hook {
    fn fire(hook: &OnceLock<Self>, key: u64) {
        let first = |h: &&Self| h.mine == key && !h.fired.swap(true, Ordering::Relaxed);
        if let Some(h) = hook.get().filter(first) {
            h.barrier.wait();
            h.barrier.wait();
            let _ = h.cache.get(&h.other);
        }
    }
}

/// Thread B's side of a cycle with a `Hook`: a `compute` closure on the
/// hook's `other` that calls the cache for its `mine`.
fn other_side(hook: &Arc<OnceLock<Hook>>) -> impl FnOnce() + Send + 'static {
    let hook = hook.clone();
    move || {
        let h = hook.get().expect("set");
        h.barrier.wait();
        let _ = h.cache.compute(h.other, |_| {
            h.barrier.wait();
            let _ = h.cache.get(&h.mine);
            (Decision::Nothing, ())
        });
    }
}

/// A cycle through a weigher: thread A's insert runs the weigher under its
/// key's shard, and the weigher calls the cache for the shard B holds in a
/// `compute` closure that calls it for A's.
#[test]
fn a_cycle_through_a_weigher_panics_in_one() {
    let hook: Arc<OnceLock<Hook>> = Arc::default();
    let c: C = {
        let hook = hook.clone();
        Cache::builder()
            .max_capacity(10_000)
            .shards(4)
            .weigher(move |k, _| {
                Hook::fire(&hook, *k);
                1
            })
            .build()
            .expect("valid")
    };
    let keys = keys_on_distinct_shards(&c, 2);
    let _ = hook.set(Hook {
        cache: c.clone(),
        mine: keys[0],
        other: keys[1],
        barrier: Barrier::new(2),
        fired: AtomicBool::new(false),
    });
    let outcomes = both(move || c.insert(keys[0], 1), other_side(&hook));
    one_cycle_panic(&outcomes);
}

/// A cycle through a `retain` predicate, which runs under each shard's lock
/// in turn.
#[test]
fn a_cycle_through_a_retain_predicate_panics_in_one() {
    let hook: Arc<OnceLock<Hook>> = Arc::default();
    let c = cache(4);
    let keys = keys_on_distinct_shards(&c, 2);
    c.insert(keys[0], 1);
    let _ = hook.set(Hook {
        cache: c.clone(),
        mine: keys[0],
        other: keys[1],
        barrier: Barrier::new(2),
        fired: AtomicBool::new(false),
    });
    let first = {
        let hook = hook.clone();
        move || {
            c.retain(|k, _| {
                Hook::fire(&hook, *k);
                true
            });
        }
    };
    let outcomes = both(first, other_side(&hook));
    one_cycle_panic(&outcomes);
}

/// A chain of waits that does not close: thread A's closure waits for the
/// shard B holds, B's closure waits for the shard C holds, and C's closure
/// sleeps and returns. Nobody panics.
#[test]
fn a_chain_of_waits_that_does_not_close_finishes() {
    for inner in INNERS {
        let c = cache(8);
        let keys = keys_on_distinct_shards(&c, 3);
        let outcomes = {
            let c = c.clone();
            bounded(20, move || {
                let barrier = Arc::new(Barrier::new(3));
                let threads: Vec<_> = (0..3)
                    .map(|i| {
                        let (c, barrier, keys) = (c.clone(), barrier.clone(), keys.clone());
                        std::thread::spawn(move || {
                            catch_unwind(AssertUnwindSafe(|| {
                                let _ = c.compute(keys[i], |_| {
                                    barrier.wait();
                                    if i + 1 < keys.len() {
                                        call(&c, inner, keys[i + 1]);
                                    } else {
                                        std::thread::sleep(Duration::from_millis(200));
                                    }
                                    (Decision::Nothing, ())
                                });
                            }))
                            .map_err(|p| message(&*p))
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("the outcome is caught"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|()| panic!("a chain with {inner:?} deadlocked"))
        };
        assert!(
            outcomes.iter().all(Result::is_ok),
            "{inner:?}: {outcomes:?}"
        );
    }
}

/// Many threads whose `compute` closures call other shards, always of a
/// higher rank than the one they hold (so the waits never close a cycle),
/// nesting computes, beside threads reading and writing every shard from
/// plain calls. Nobody panics and every call finishes.
#[test]
fn computes_calling_other_shards_without_a_cycle_never_panic() {
    const SHARDS: usize = 8;
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 10_000;
    let c = cache(SHARDS);
    let keys = keys_on_distinct_shards(&c, SHARDS);
    let outcomes = bounded(120, move || {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (c, keys) = (c.clone(), keys.clone());
                std::thread::spawn(move || {
                    // A small xorshift: each thread its own sequence.
                    let mut s = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let mut next = move |n: usize| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        (s % n as u64) as usize
                    };
                    catch_unwind(AssertUnwindSafe(|| {
                        for _ in 0..ROUNDS {
                            let i = next(SHARDS);
                            if t % 4 == 3 {
                                // Plain calls, from no user code.
                                call(&c, INNERS[next(4)], keys[i]);
                                continue;
                            }
                            let j = i + 1 + next(SHARDS - i);
                            let (inner, deeper) = (INNERS[next(4)], next(SHARDS));
                            let _ = c.compute(keys[i], |_| {
                                if j < SHARDS {
                                    call(&c, inner, keys[j]);
                                    let l = j + 1 + deeper % (SHARDS - j);
                                    if l < SHARDS {
                                        let _ = c.compute(keys[j], |_| {
                                            call(&c, inner, keys[l]);
                                            (Decision::Nothing, ())
                                        });
                                    }
                                }
                                (Decision::Nothing, ())
                            });
                        }
                    }))
                    .map_err(|p| message(&*p))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("the outcome is caught"))
            .collect::<Vec<_>>()
    })
    .expect("computes calling other shards deadlocked");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
}
