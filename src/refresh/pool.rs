//! The reload pool of a sync refresh loader: a fixed set of threads the
//! cache owns, running queued reloads.

use crate::sync::{Arc, Condvar, Mutex};
use std::collections::VecDeque;

/// Reloads queued beyond which new ones are skipped (the next read of the
/// key asks again).
const QUEUE_BOUND: usize = 4096;

pub(super) type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running queued reloads. Dropping it closes the
/// queue; each thread ends after its current job (never joined, since the
/// last handle to a cache may be dropped on one of them).
pub(super) struct Pool {
    queue: Arc<(Mutex<Queue>, Condvar)>,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Pool {
    pub(super) fn start(threads: usize) -> Self {
        let queue = Arc::new((
            Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            Condvar::new(),
        ));
        for i in 0..threads {
            let queue = queue.clone();
            // If the OS refuses a thread, the others (or none: reloads then
            // wait in the queue and are skipped when it is full) carry on.
            let _ = std::thread::Builder::new()
                .name(format!("shardcache-refresh-{i}"))
                .spawn(move || Self::run(&queue));
        }
        Self { queue }
    }

    fn run(queue: &(Mutex<Queue>, Condvar)) {
        loop {
            let job = {
                let mut q = queue.0.lock();
                loop {
                    if q.closed {
                        return;
                    }
                    if let Some(job) = q.jobs.pop_front() {
                        break job;
                    }
                    queue.1.wait(&mut q);
                }
            };
            // A panic while a reload stores its value (a weigher) or hands
            // on what the store removed (a listener) has no caller to reach:
            // the store leaves the cache as it was, and the thread goes on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }

    pub(super) fn submit(&self, job: Job) -> Result<(), Job> {
        let mut q = self.queue.0.lock();
        if q.jobs.len() >= QUEUE_BOUND || q.closed {
            return Err(job);
        }
        q.jobs.push_back(job);
        drop(q);
        self.queue.1.notify_one();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let jobs = {
            let mut q = self.queue.0.lock();
            q.closed = true;
            std::mem::take(&mut q.jobs)
        };
        self.queue.1.notify_all();
        drop(jobs);
    }
}
