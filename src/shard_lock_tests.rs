//! Tests of the shard lock (model checks of it are in `tests/loom_shard_lock.rs`).

use super::*;
use crate::sync::{Arc, AtomicU32};

/// The shard's counter in every row, the shared one included.
fn counters<T>(l: &ShardLock<T>) -> Vec<&AtomicU32> {
    (0..=l.counts.slots)
        .map(|r| l.counts.counter(r, l.index as usize))
        .collect()
}

/// The readers the shard's counters hold, over every row.
fn readers<T>(l: &ShardLock<T>) -> u32 {
    counters(l).iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// A one-shard lock around a pair that writers keep equal, with `slots`
/// rows of their own.
fn pair_lock(slots: usize) -> Arc<ShardLock<(u64, u64)>> {
    Arc::new(ShardLock::new(
        (0, 0),
        0,
        Arc::new(ReaderCounts::with_slots(1, slots)),
    ))
}

fn lock(v: u64) -> Arc<ShardLock<u64>> {
    Arc::new(ShardLock::new(
        v,
        3,
        Arc::new(ReaderCounts::with_slots(20, 4)),
    ))
}

/// Everything a read of the lock loads, and the data's first 48 bytes, lie
/// in the lock's first line.
#[test]
#[cfg(not(loom))]
fn a_read_loads_one_line_of_the_lock() {
    assert_eq!(std::mem::offset_of!(ShardLock<[u64; 6]>, data), 16);
    assert!(std::mem::offset_of!(ShardLock<[u64; 6]>, counts) < 16);
    assert!(std::mem::align_of::<crate::sync::CacheAligned<ShardLock<u64>>>() >= 64);
}

#[test]
fn counters_of_one_slot_share_blocks_and_slots_do_not() {
    let c = ReaderCounts::with_slots(40, 3);
    assert_eq!((c.slots, c.stride), (4, 3));
    let block = |r, i| (c.counter(r, i) as *const AtomicU32 as usize) / 128;
    assert_eq!(block(0, 0), block(0, 15));
    assert_ne!(block(0, 15), block(0, 16));
    // Four rows of their own and the shared one: no 128-byte block
    // (a pair of lines) holds counters of two rows.
    for (r, q) in (0..=4).flat_map(|r| (0..=4).map(move |q| (r, q))) {
        if r != q {
            for (i, j) in (0..40).flat_map(|i| (0..40).map(move |j| (i, j))) {
                assert_ne!(block(r, i), block(q, j));
            }
        }
    }
    assert_eq!(c.row(Some(3)), 3);
    // Slots past the count, and threads without one, share the last row.
    assert_eq!(c.row(Some(4)), 4);
    assert_eq!(c.row(Some(63)), 4);
    assert_eq!(c.row(None), 4);
}

#[test]
fn a_writer_visits_its_shard_in_every_row_once() {
    let counts = Arc::new(ReaderCounts::with_slots(40, 4));
    for index in [0, 15, 16, 39] {
        let l = ShardLock::new(0u8, index, counts.clone());
        // The writer's walk sees a reader in any row, the shared one too.
        assert_eq!(counters(&l).len(), 5);
        for (row, c) in counters(&l).into_iter().enumerate() {
            c.store(1, Ordering::Relaxed);
            assert!(!l.drained(), "shard {index}, row {row}");
            c.store(0, Ordering::Relaxed);
        }
        assert!(l.drained(), "shard {index}");
        // A read and a write leave every count as they found it.
        let r = l.read();
        assert_eq!(readers(&l), 1);
        drop(r);
        *l.write() += 1;
        assert_eq!(readers(&l), 0);
        assert_eq!(l.closed.load(Ordering::Relaxed), 0);
    }
}

#[test]
fn a_writer_waits_for_a_reader_on_the_shared_row() {
    // One slot of its own: every thread but the first to claim one
    // counts in the shared row with atomic adds.
    let l = Arc::new(ShardLock::new(
        0u64,
        0,
        Arc::new(ReaderCounts::with_slots(1, 1)),
    ));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                let rounds: u64 = if cfg!(miri) { 100 } else { 10_000 };
                for _ in 0..rounds {
                    let g = l.read();
                    let seen = *g;
                    drop(g);
                    *l.write() += 1;
                    assert!(*l.read() > seen);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no lost write");
    }
    let rounds: u64 = if cfg!(miri) { 100 } else { 10_000 };
    assert_eq!(*l.read(), 3 * rounds);
    assert_eq!(readers(&l), 0);
}

#[test]
fn nested_reads_on_one_thread_count_up_and_down() {
    let l = lock(5);
    let a = l.read();
    let b = l.read();
    assert_eq!(readers(&l), 2);
    // Dropped out of order.
    drop(a);
    drop(b);
    assert_eq!(readers(&l), 0);
    assert!(l.try_write().is_some());
}

#[test]
fn readers_share_and_writers_exclude() {
    let l = lock(1);
    let a = l.read();
    let b = l.read();
    assert_eq!(*a + *b, 2);
    drop((a, b));
    *l.write() += 1;
    assert_eq!(*l.read(), 2);
}

#[test]
fn a_writer_waits_for_readers_and_readers_for_the_writer() {
    let l = lock(0);
    let r = l.read();
    let w = {
        let l = l.clone();
        std::thread::spawn(move || {
            *l.write() = 7;
        })
    };
    // The writer cannot finish while the read is held.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(*r, 0);
    drop(r);
    w.join().expect("writer");
    assert_eq!(*l.read(), 7);
}

#[test]
fn racing_readers_and_writers_see_whole_writes() {
    race(2);
}

/// With one row of its own, every other thread reads on the shared row.
#[test]
fn racing_readers_on_the_shared_row_see_whole_writes() {
    race(1);
}

/// Four threads on a lock with `slots` rows of their own, one of them
/// also writing.
fn race(slots: usize) {
    // The writer keeps both halves equal; a reader that saw a torn pair
    // would have read during a write.
    let l = pair_lock(slots);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || {
                // Fewer rounds under Miri, which runs each access checked.
                let (rounds, spins) = if cfg!(miri) { (200, 1) } else { (20_000, 20) };
                for i in 0..rounds {
                    if t == 0 && i % 4 == 0 {
                        let mut g = l.write();
                        g.0 += 1;
                        std::hint::spin_loop();
                        g.1 += 1;
                    } else {
                        // Reads that last, for a writer to run into.
                        let g = l.read();
                        let first = g.0;
                        for _ in 0..spins {
                            std::hint::spin_loop();
                        }
                        assert_eq!(first, g.1, "a read overlapped a write");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no torn read");
    }
    let writes = if cfg!(miri) { 50 } else { 5_000 };
    assert_eq!(*l.read(), (writes, writes));
}

/// Threads that find the shard closed sleep, counted in `waiting`, and the
/// writer's leaving wakes every one of them.
#[test]
fn sleepers_wake_when_the_writer_leaves() {
    let l = lock(0);
    let held = l.write();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || {
                if t % 2 == 0 {
                    *l.write() += 1;
                } else {
                    assert!(*l.read() <= 3);
                }
            })
        })
        .collect();
    // Each sleeps after its rounds of spins and yields.
    while l.waiting.load(Ordering::Relaxed) < 6 {
        std::thread::yield_now();
    }
    drop(held);
    for t in threads {
        t.join().expect("woken");
    }
    assert_eq!(*l.read(), 3);
    assert_eq!(l.waiting.load(Ordering::Relaxed), 0);
}

/// Writers racing each other (and sleeping when they lose) never overlap.
#[test]
fn racing_writers_see_whole_writes() {
    let l = pair_lock(4);
    let rounds = if cfg!(miri) { 50 } else { 20_000 };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    let mut g = l.write();
                    assert_eq!(g.0, g.1, "a write overlapped a write");
                    g.0 += 1;
                    std::hint::spin_loop();
                    g.1 += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no torn write");
    }
    assert_eq!(*l.read(), (4 * rounds, 4 * rounds));
    assert_eq!(l.waiting.load(Ordering::Relaxed), 0);
}
