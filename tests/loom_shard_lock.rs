//! Model checks of the shard lock with `loom`: every interleaving of a few
//! readers and a writer on small configurations. A data race on the
//! protected value (a read overlapping a write) fails the model.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom_shard_lock
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]
// Reading and writing loom's `UnsafeCell` through its raw pointer is how
// the model sees each access: that is the check.
#![allow(unsafe_code)]

/// The `crate::sync` the lock module imports, on loom's primitives.
mod sync {
    pub(crate) use loom::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU8, Ordering};
    pub(crate) use loom::sync::Arc;

    #[repr(align(128))]
    pub(crate) struct CacheAligned<T>(pub(crate) T);

    impl<T> std::ops::Deref for CacheAligned<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    /// The fences without `membarrier`: both sides full fences, the
    /// protocol every platform without it runs.
    pub(crate) fn light_fence() {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn heavy_fence() {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn init_fences() -> bool {
        false
    }

    /// One round of waiting before a thread sleeps: enough to reach both
    /// of its paths.
    pub(crate) fn spin_wait(round: &mut u32) -> bool {
        *round += 1;
        if *round > 1 {
            return false;
        }
        loom::thread::yield_now();
        true
    }

    /// `parking_lot_core`'s sleep and wake-up on loom's mutex and condition
    /// variable: the condition is checked under the queue's lock, and the
    /// wake-up takes that lock, as `park` and `unpark_all` do. No nap: a
    /// wake-up the lock loses leaves its sleeper asleep, and the model
    /// reports the deadlock.
    pub(crate) struct Parking {
        queue: loom::sync::Mutex<()>,
        wake: loom::sync::Condvar,
    }

    impl Parking {
        pub(crate) fn new() -> Self {
            Self {
                queue: loom::sync::Mutex::new(()),
                wake: loom::sync::Condvar::new(),
            }
        }

        pub(crate) fn wait_while(&self, _key: usize, still: impl FnOnce() -> bool) {
            let queue = self.queue.lock().expect("not poisoned");
            if still() {
                drop(self.wake.wait(queue).expect("not poisoned"));
            }
        }

        pub(crate) fn wake_all(&self, _key: usize) {
            let _queue = self.queue.lock().expect("not poisoned");
            self.wake.notify_all();
        }
    }

    /// Loom's thread number (0 for the model's main thread): a slot that is
    /// the same on every replay of an execution, as loom requires.
    pub(crate) fn try_thread_slot() -> Option<usize> {
        let id = format!("{:?}", loom::thread::current().id());
        let n = id
            .trim_start_matches("ThreadId(")
            .trim_end_matches(')')
            .parse()
            .expect("loom thread ids are numbers");
        Some(n)
    }

    /// Loom's thread number plus one: unique among the model's threads.
    pub(crate) fn thread_token() -> u16 {
        try_thread_slot().map_or(0, |s| u16::try_from(s + 1).unwrap_or(0))
    }

    pub(crate) fn backoff(_spins: &mut u32) {
        loom::thread::yield_now();
    }
}

/// The registry of waits from user code under a lock: the model's threads
/// run none, so none of their waits is registered.
mod lock_waits {
    /// A wait that would close a cycle: never, here.
    pub(crate) struct Cycle;

    impl Cycle {
        pub(crate) fn panic(self) -> std::convert::Infallible {
            unreachable!("the model's threads register no waits")
        }
    }

    pub(crate) fn waiting_for(_lock: usize) -> Result<Option<()>, Cycle> {
        Ok(None)
    }
}

#[allow(dead_code, unreachable_pub)]
#[path = "../src/shard_lock.rs"]
mod shard_lock;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use shard_lock::{ReaderCounts, ShardLock};

fn lock(slots: usize) -> Arc<ShardLock<UnsafeCell<u32>>> {
    Arc::new(ShardLock::new(
        UnsafeCell::new(0),
        1,
        Arc::new(ReaderCounts::with_slots(2, slots)),
    ))
}

/// Every interleaving with up to three preemptions (the bound that keeps a
/// waiting writer's spin loop finite to explore).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn write(l: &ShardLock<UnsafeCell<u32>>) {
    let g = l.write();
    // SAFETY: the write guard is held: no other access to the cell.
    g.with_mut(|v| unsafe { *v += 1 });
}

fn read(l: &ShardLock<UnsafeCell<u32>>) -> u32 {
    let g = l.read();
    // SAFETY: the read guard is held: no write to the cell.
    g.with(|v| unsafe { *v })
}

#[test]
fn a_reader_and_a_writer_never_overlap() {
    model(|| {
        let l = lock(2);
        let w = {
            let l = l.clone();
            loom::thread::spawn(move || write(&l))
        };
        let seen = read(&l);
        w.join().unwrap();
        assert!(seen <= 1);
        assert_eq!(read(&l), 1);
    });
}

#[test]
fn two_readers_and_a_writer_never_overlap() {
    model(|| two_readers_and_a_writer(2));
}

/// A reader spawned, a writer spawned, and the model's main thread
/// reading, on a lock with `slots` rows of their own.
fn two_readers_and_a_writer(slots: usize) {
    let l = lock(slots);
    let r = {
        let l = l.clone();
        loom::thread::spawn(move || read(&l))
    };
    let w = {
        let l = l.clone();
        loom::thread::spawn(move || write(&l))
    };
    let seen = read(&l);
    assert!(seen <= 1 && r.join().unwrap() <= 1);
    w.join().unwrap();
    assert_eq!(read(&l), 1);
}

#[test]
fn readers_sharing_a_slot_and_two_writers() {
    model(|| {
        let l = lock(1);
        let ws: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                loom::thread::spawn(move || write(&l))
            })
            .collect();
        let seen = read(&l);
        for w in ws {
            w.join().unwrap();
        }
        assert!(seen <= 2);
        assert_eq!(read(&l), 2);
    });
}

#[test]
fn try_write_never_overlaps_a_reader() {
    model(|| {
        let l = lock(2);
        let w = {
            let l = l.clone();
            loom::thread::spawn(move || {
                if let Some(g) = l.try_write() {
                    // SAFETY: the write guard is held.
                    g.with_mut(|v| unsafe { *v += 1 });
                }
            })
        };
        let seen = read(&l);
        w.join().unwrap();
        assert!(seen <= 1);
    });
}

#[test]
fn a_reader_of_its_own_row_one_of_the_shared_row_and_a_writer() {
    // One row of its own (the main thread's); the spawned reader counts in
    // the shared row.
    model(|| two_readers_and_a_writer(1));
}
