//! Tests of the ghosts and the window share they tune.

use super::*;
use proptest::prelude::*;

fn hash(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[test]
fn a_ghost_is_found_once_with_its_segment_and_age() {
    let mut g = Ghosts::new(1000);
    g.record(hash(1), Left::Window);
    g.record(hash(2), Left::Main);
    g.record(hash(3), Left::Window);
    assert_eq!(g.population(), [2, 1]);
    // Every eviction since, its own included, moved the key back.
    assert_eq!(g.take(hash(1)), Some((Left::Window, 3)));
    assert_eq!(g.take(hash(1)), None, "taken ghosts are forgotten");
    // Main's hand steps only for main's evictions.
    assert_eq!(g.take(hash(2)), Some((Left::Main, 1)));
    assert_eq!(g.take(hash(99)), None);
    assert_eq!(g.population(), [1, 0]);
    g.clear();
    assert_eq!(g.take(hash(3)), None);
    assert_eq!(g.population(), [0, 0]);
}

#[test]
fn ghosts_are_bounded_and_overwritten() {
    let mut g = Ghosts::new(1000);
    let slots = g.slots.len();
    assert_eq!(slots, 512);
    for i in 0..100_000 {
        g.record(hash(i), if i % 3 == 0 { Left::Main } else { Left::Window });
    }
    assert_eq!(g.slots.len(), slots);
    let [w, m] = g.population();
    assert!(w + m <= slots as u64);
    // The most recent ghosts are still there; most old ones are gone.
    let recent = (99_990..100_000).filter(|&i| g.take(hash(i)).is_some());
    assert!(recent.count() >= 9);
    let old = (0..1000).filter(|&i| g.take(hash(i)).is_some()).count();
    assert!(old < 20, "{old}");
}

#[test]
fn window_ghosts_grow_the_window_and_main_ghosts_shrink_it() {
    let mut w = Window::settled(1000);
    let start = w.share();
    w.evicted(hash(1), Left::Window);
    w.on_miss(hash(1));
    let grown = w.share();
    assert!((grown - start - 0.001).abs() < 1e-6, "one entry: {grown}");
    w.evicted(hash(2), Left::Main);
    w.evicted(hash(3), Left::Window);
    // One ghost each: the step is one entry either way.
    w.on_miss(hash(2));
    assert!((w.share() - start).abs() < 1e-6);
    // A miss on a key that is no ghost moves nothing.
    w.on_miss(hash(4));
    assert!((w.share() - start).abs() < 1e-6);
}

#[test]
fn steps_scale_with_the_ratio_of_the_ghosts() {
    let mut w = Window::settled(1000);
    for i in 0..40 {
        w.evicted(hash(i), Left::Main);
    }
    for i in 100..110 {
        w.evicted(hash(i), Left::Window);
    }
    let start = w.share();
    // 40 main ghosts against 10 window ghosts: a window ghost is worth 4.
    w.on_miss(hash(100));
    assert!((w.share() - start - 0.004).abs() < 1e-6, "{}", w.share());
    // And a main ghost 9 / 40, rounded up to one entry.
    w.on_miss(hash(0));
    assert!((w.share() - start - 0.003).abs() < 1e-6, "{}", w.share());
}

#[test]
fn shards_steer_one_share_each_by_its_part() {
    let common = Arc::new(CommonShare::new(4));
    let mut a = Window::with_common(1000, Some(common.clone()));
    let mut b = Window::with_common(1000, Some(common.clone()));
    a.settle();
    b.settle();
    let start = a.share();
    // A counted ghost in one shard moves the cache's share by a quarter
    // of that shard's step (one entry in four shards of 1000)...
    a.evicted(hash(1), Left::Window);
    a.on_miss(hash(1));
    assert!((a.share() - start - 0.00025).abs() < 1e-6, "{}", a.share());
    // ...and the other shard takes it up at its next miss.
    assert!((b.share() - start).abs() < 1e-9);
    b.on_miss(hash(2));
    assert_eq!(b.share(), a.share());
    b.evicted(hash(3), Left::Main);
    b.on_miss(hash(3));
    a.on_miss(hash(4));
    assert!((a.share() - start).abs() < 1e-6, "{}", a.share());
    // A restored share and a clear reach every shard.
    a.set(0.5);
    b.on_miss(hash(5));
    assert!((b.share() - 0.5).abs() < 1e-6);
    b.clear();
    a.on_miss(hash(6));
    assert!((a.share() - INITIAL_WINDOW).abs() < 1e-6, "{}", a.share());
}

#[test]
fn the_common_share_stays_within_its_bounds() {
    let common = Arc::new(CommonShare::new(2));
    let mut w = Window::with_common(10, Some(common));
    let top = w.top();
    for i in 0..1000 {
        w.evicted(hash(i), Left::Window);
        w.on_miss(hash(i));
        assert!(w.share <= top);
    }
    assert_eq!(w.share, top);
    for i in 1000..3000 {
        w.evicted(hash(i), Left::Main);
        w.on_miss(hash(i));
    }
    assert_eq!(w.share, 0);
}

#[test]
fn steps_start_32_times_larger_and_halve_every_turnover() {
    let mut w = Window::new(1000);
    // Misses while the cache fills (nothing evicted yet) do not count.
    for i in 0..5000 {
        w.on_miss(hash(10_000_000 + i));
    }
    let step_after = |w: &mut Window, misses: u64, key: u64| {
        for i in 0..misses {
            w.on_miss(hash(20_000_000 + key * 100_000 + i));
        }
        w.evicted(hash(key), Left::Window);
        let before = w.share();
        w.on_miss(hash(key));
        ((w.share() - before) * 1000.0).round()
    };
    // The first eviction starts the count (one ghost of each kind left
    // over below keeps the ratio at one).
    assert_eq!(step_after(&mut w, 0, 1), 32.0);
    assert_eq!(step_after(&mut w, 998, 2), 16.0);
    assert_eq!(step_after(&mut w, 999, 3), 8.0);
    assert_eq!(step_after(&mut w, 2999, 4), 1.0);
    // A restored share is a measurement: ordinary steps at once.
    let mut r = Window::new(1000);
    r.set(0.5);
    r.evicted(hash(5), Left::Window);
    r.on_miss(hash(5));
    assert!((r.share() - 0.501).abs() < 1e-6, "{}", r.share());
}

/// Evicts the key `key` from `from`, lets `window_evictions` other window
/// evictions and then `main_hits` main hits go ahead of it, and misses on
/// it; returns what the miss said (a rejected candidate back in reach).
fn comes_back(
    w: &mut Window,
    key: u64,
    from: Left,
    window_evictions: u64,
    main_hits: usize,
) -> bool {
    w.evicted(hash(key), from);
    for i in 1..=window_evictions {
        w.evicted(hash(1_000_000 + i), Left::Window);
    }
    for _ in 0..main_hits {
        w.main_hit_seen();
    }
    w.on_miss(hash(key))
}

#[test]
fn a_rejected_candidate_back_within_reach_is_named_for_admission() {
    let mut w = Window::new(1000);
    assert!(
        comes_back(&mut w, 0, Left::Window, 0, 998),
        "999 ahead: an LRU cache of 1000 entries would still hold it"
    );
    assert!(!comes_back(&mut w, 1, Left::Window, 0, 999), "1000 ahead");
    assert!(!comes_back(&mut w, 2, Left::Window, 999, 0), "1000 ahead");
    assert!(
        !comes_back(&mut w, 3, Left::Main, 0, 10),
        "a key main let go was no rejected candidate"
    );
    assert!(!w.on_miss(hash(4)), "never evicted");
}

#[test]
fn a_window_ghost_counts_while_fewer_keys_than_the_cache_went_ahead() {
    let mut w = Window::new(1000);
    let start = w.share();
    // Its own eviction and 998 main keys hit since: 999 ahead of it, and a
    // window of the whole cache would still have held it.
    comes_back(&mut w, 0, Left::Window, 0, 998);
    let grown = w.share();
    assert!(grown > start);
    // One more and no cache of 1000 entries could have kept it.
    comes_back(&mut w, 1, Left::Window, 0, 999);
    assert_eq!(w.share(), grown, "1000 ahead, 1000 entries");
}

#[test]
fn a_main_ghost_counts_while_fewer_keys_than_the_cache_went_ahead() {
    let mut w = Window::new(1000);
    w.set(0.3);
    let start = w.share();
    // Window evictions do not move main's order; main keys hit do.
    comes_back(&mut w, 0, Left::Main, 5, 998);
    assert!(w.share() < start, "999 ahead, 1000 entries");
    let shrunk = w.share();
    comes_back(&mut w, 1, Left::Main, 0, 999);
    assert_eq!(w.share(), shrunk, "1000 ahead, 1000 entries");
}

#[test]
fn admission_turns_strict_while_main_ghosts_return_more_often() {
    let mut w = Window::new(1000);
    assert!(!w.strict_admission(), "no evidence: the plain comparison");
    // 30 window ghosts and 10 main ghosts; 3 of each come back: a main
    // ghost is the likelier to return.
    for i in 0..30 {
        w.evicted(hash(i), Left::Window);
    }
    for i in 100..110 {
        w.evicted(hash(i), Left::Main);
    }
    for i in [0, 1, 2, 100, 101, 102] {
        w.on_miss(hash(i));
    }
    assert!(w.strict_admission());
    // Returns per ghost still remembered: 3 main returns against 7 main
    // ghosts left, k + 3 window returns against 27 - k. Five more window
    // returns (3 × 22 = 66 against 8 × 7 = 56) leave it strict; the
    // sixth evens it (63 against 63), and the plain comparison is back.
    for i in 3..8 {
        w.on_miss(hash(i));
    }
    assert!(w.strict_admission());
    w.on_miss(hash(8));
    assert!(!w.strict_admission());
    w.clear();
    assert!(!w.strict_admission());
}

#[test]
fn ghost_returns_are_halved_at_the_table_size() {
    // 512 slots: old returns fade so that the recent ones decide.
    let mut w = Window::new(1000);
    for round in 0..4u64 {
        for i in 0..200 {
            let k = round * 1000 + i;
            w.evicted(hash(k), Left::Main);
            w.on_miss(hash(k));
        }
    }
    let [rw, rm] = w.returns;
    assert_eq!(rw, 0);
    assert!(rm < 512, "{rm}");
}

#[derive(Debug, Clone)]
enum Op {
    Evict(u8, bool),
    Miss(u8),
    MainHit,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<bool>()).prop_map(|(k, m)| Op::Evict(k, m)),
        4 => any::<u8>().prop_map(Op::Miss),
        2 => Just(Op::MainHit),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    /// Whatever the sequence of evictions, misses and main hits: the
    /// share stays within nothing and all but one entry, the ghosts fit
    /// their table, and the admission test's counts stay below their
    /// limit (so its products cannot overflow).
    #[test]
    fn the_window_keeps_its_bounds(
        capacity in 1usize..3000,
        ops in proptest::collection::vec(op(), 1..600),
    ) {
        let mut w = Window::new(capacity);
        for op in ops {
            match op {
                Op::Evict(k, main) => {
                    let from = if main { Left::Main } else { Left::Window };
                    w.evicted(hash(u64::from(k)), from);
                }
                Op::Miss(k) => {
                    w.on_miss(hash(u64::from(k)));
                }
                Op::MainHit => w.main_hit_seen(),
                Op::Clear => w.clear(),
            }
            let [pw, pm] = w.ghosts.population();
            prop_assert!(pw + pm <= w.ghosts.slots.len() as u64);
            prop_assert!(w.returns[0] + w.returns[1] < w.returns_limit);
            prop_assert!(w.share <= w.top());
            prop_assert!(w.max(capacity) >= 1);
            let _ = w.strict_admission();
        }
    }
}

#[test]
fn ages_are_exact_across_the_span() {
    let mut g = Ghosts::new(1000);
    g.record(hash(0), Left::Window);
    for _ in 0..50_000 {
        g.pass();
    }
    // Its own eviction and the 50 000 steps since.
    assert_eq!(g.take(hash(0)), Some((Left::Window, 50_001)));
    // A large shard counts in coarser units, still well inside the
    // reach a ghost is judged against.
    let mut g = Ghosts::new(1 << 20);
    g.record(hash(0), Left::Window);
    for _ in 0..5_000_000 {
        g.pass();
    }
    let (_, age) = g.take(hash(0)).expect("remembered");
    assert!(age.abs_diff(5_000_000) <= 1024, "{age}");
}

#[test]
fn the_share_stays_within_nothing_and_all_but_one_entry() {
    let mut w = Window::new(16);
    for i in 0..1000 {
        w.evicted(hash(i), Left::Window);
        w.on_miss(hash(i));
    }
    assert_eq!(w.share(), 15.0 / 16.0);
    assert_eq!(w.max(17), 15, "main keeps an entry through an eviction");
    w.set(1.0);
    assert_eq!(w.max(17), 15, "also when a saved share is restored");
    for i in 0..1000 {
        w.evicted(hash(i), Left::Main);
        w.on_miss(hash(i));
    }
    assert_eq!(w.share(), 0.0);
    assert_eq!(w.max(16), 1, "at least one entry");
    w.clear();
    assert_eq!(
        w.share(),
        (ONE as f64 * INITIAL_WINDOW) as u64 as f64 / ONE as f64
    );
}

#[test]
fn main_keeps_an_entry_through_evictions_at_every_capacity() {
    // At the top share `len × share` rounds to `len - 1` for some shard
    // sizes past 2^16 entries (5,000,000 is one): the eviction (at one
    // entry over the capacity) would then take main's last entry, and with
    // no main ghosts the window could never shrink again.
    for capacity in [2usize, 3, 16, 200, 65_535, 70_000, 1 << 20, 5_000_000] {
        let mut w = Window::new(capacity);
        w.set(1.0);
        for len in [capacity, capacity + 1, 2 * capacity + 7] {
            assert!(
                w.max(len) + 2 <= len.max(3),
                "capacity {capacity}: a window of {} in {len}",
                w.max(len)
            );
        }
        assert_eq!(w.max(1), 1);
        assert_eq!(w.max(2), 1);
    }
}
