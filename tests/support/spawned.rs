//! Futures handed to a cache's spawner, run when the test says so.

use shardcache::BoxFuture;
use std::sync::{Arc, Mutex};

/// The queue a test's spawner pushes to.
#[derive(Clone, Default)]
pub(crate) struct Spawned(Arc<Mutex<Vec<BoxFuture>>>);

/// What one [`Spawned::run_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Runs {
    /// Futures run.
    pub(crate) ran: usize,
    /// Of those, how many panicked.
    pub(crate) panicked: usize,
}

impl Spawned {
    /// Queues `job` (what the spawner does).
    pub(crate) fn push(&self, job: BoxFuture) {
        self.0.lock().expect("not poisoned").push(job);
    }

    /// Futures queued and not yet run.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    /// Runs every queued future, each on its own executor call that (like a
    /// runtime's worker) survives a panicking task.
    pub(crate) fn run_all(&self) -> Runs {
        let jobs: Vec<_> = std::mem::take(&mut *self.0.lock().expect("not poisoned"));
        let ran = jobs.len();
        let panicked = jobs
            .into_iter()
            .map(|job| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    futures::executor::block_on(job)
                }))
            })
            .filter(Result::is_err)
            .count();
        Runs { ran, panicked }
    }

    /// Runs every queued future, none of which may panic; returns how many
    /// ran.
    #[allow(dead_code)] // not every test file that shares this uses it
    pub(crate) fn run_ok(&self) -> usize {
        let runs = self.run_all();
        assert_eq!(runs.panicked, 0, "a spawned future panicked");
        runs.ran
    }
}
