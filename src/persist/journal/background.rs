//! The journal's background rewrites (growth and repair) and their end
//! when the cache is dropped.
//!
//! A background rewrite holds the journal (and so the log and its file
//! lock), never the cache: it reads the cache's shards through its own
//! handle on them (see `journaling.rs`). The drop of the cache's last handle
//! calls [`Background::close`]: no rewrite starts after it, a running one
//! stops at its next chunk and discards its replacement (the log in use is
//! complete: every write went to it), and the close waits for the thread
//! to end, so the log closes, and its lock is released, before the drop
//! returns.

use super::Journal;
use crate::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

impl<K, V> Journal<K, V> {
    /// Whether the cache's last handle is being dropped: a rewrite stops
    /// at its next chunk (see [`closed_error`](Journal::closed_error)).
    pub(crate) fn closing(&self) -> bool {
        self.background.closing()
    }

    /// Ends background rewrites as the cache's last handle drops, waiting
    /// for the running one (see [`Background::close`]).
    pub(crate) fn close(&self) {
        self.background.close();
    }
}

/// The background rewrite thread, and whether the cache is closing.
#[derive(Default)]
pub(super) struct Background {
    /// Set once, by [`close`](Self::close).
    closing: AtomicBool,
    /// The last thread started; one that ended its work may still be here.
    /// Its lock orders a start against the close.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Background {
    /// Whether the cache's last handle is being dropped.
    pub(super) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Runs `work` on a thread of its own, unless the cache is closing or
    /// no thread can be started; whether it started. One runs at a time
    /// (the caller sees to it), so the handle it replaces is of a thread
    /// that has done its work.
    pub(super) fn spawn(&self, work: impl FnOnce() + Send + 'static) -> bool {
        let mut thread = self.thread.lock();
        if self.closing() {
            return false;
        }
        match std::thread::Builder::new()
            .name("shardcache-rewrite".into())
            .spawn(work)
        {
            Ok(started) => {
                *thread = Some(started);
                true
            }
            Err(_) => false,
        }
    }

    /// Stops background rewrites for good and waits for the running one to
    /// end (it stops at its next chunk, or ends its swap if its snapshot is
    /// written). Called with no lock held that the rewrite takes; on the
    /// rewrite's own thread (which cannot wait for itself) it only stops
    /// them.
    pub(super) fn close(&self) {
        let thread = {
            let mut thread = self.thread.lock();
            self.closing.store(true, Ordering::Release);
            thread.take()
        };
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                // A panic on it has no one left to reach.
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Background;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    #[test]
    fn close_waits_for_the_running_thread_and_starts_none_after() {
        let background = Background::default();
        let (go, wait) = mpsc::channel::<()>();
        let ended = Arc::new(AtomicBool::new(false));
        let done = ended.clone();
        assert!(background.spawn(move || {
            let _ = wait.recv_timeout(Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(20));
            done.store(true, Ordering::Release);
        }));
        go.send(()).expect("the thread waits");
        background.close();
        assert!(ended.load(Ordering::Acquire), "close returned before it");
        assert!(background.closing());
        assert!(!background.spawn(|| {}), "started after the close");
    }

    #[test]
    fn close_on_the_background_thread_does_not_wait_for_itself() {
        let background = Arc::new(Background::default());
        let (go, wait) = mpsc::channel::<()>();
        let (closed, told) = mpsc::channel();
        let on_it = background.clone();
        assert!(background.spawn(move || {
            let _ = wait.recv_timeout(Duration::from_secs(10));
            on_it.close();
            let _ = closed.send(());
        }));
        go.send(()).expect("the thread waits");
        told.recv_timeout(Duration::from_secs(10))
            .expect("the close on the thread itself returned");
        assert!(background.closing());
        background.close();
    }
}
