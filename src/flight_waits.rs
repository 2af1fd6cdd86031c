//! Which thread waits for which load: the blocking waits on single-flight
//! loads, process-wide, so that a wait that would close a cycle (loaders on
//! several threads, each asking for a key another of them is loading) is
//! refused instead of leaving every thread in the cycle waiting forever.
//!
//! Each blocked waiter is registered with the leader cell of the flight it
//! waits for; a flight's leader cell names the thread running its blocking
//! loader, set before the loader runs and cleared when the flight lands. A
//! thread about to wait follows the chain: the flight's leader, the flight
//! that leader waits for, its leader, and so on; reaching itself means the
//! wait closes a cycle. The registration and the walk happen under one
//! lock, and a leader is named before its loader can wait for anything, so
//! of the threads that close a cycle the last one to wait finds it.
//! Loads led by async tasks name no thread, and are not followed.
//!
//! A log's rollback registers the same way: its leader cell names the
//! thread applying undo records (whose listener may wait for a load), and
//! a thread about to wait for the rollback follows it.

use crate::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// The thread running a flight's blocking loader (or a log's rollback),
/// while it runs.
pub(crate) type Leader = Arc<Mutex<Option<ThreadId>>>;

/// The blocked waiters and the leader cells of the flights they wait for
/// (a thread waits for one flight at a time).
static WAITS: Mutex<Vec<(ThreadId, Leader)>> = Mutex::new(Vec::new());

/// This thread's registered wait; dropping it takes the registration off.
pub(crate) struct Waiting {
    me: ThreadId,
}

impl Waiting {
    /// Registers this thread as waiting for the flight whose leader cell is
    /// `leader`; `None` (and nothing registered) if that wait closes a
    /// cycle of waits back to this thread.
    pub(crate) fn register(leader: &Leader) -> Option<Self> {
        let me = std::thread::current().id();
        let mut waits = WAITS.lock();
        let mut next = *leader.lock();
        // Each step moves to another registered waiter: a chain longer
        // than their number has come back on itself without this thread.
        for _ in 0..=waits.len() {
            let Some(thread) = next else { break };
            if thread == me {
                return None;
            }
            next = waits
                .iter()
                .find(|(waiter, _)| *waiter == thread)
                .and_then(|(_, l)| *l.lock());
        }
        waits.push((me, leader.clone()));
        Some(Self { me })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waits = WAITS.lock();
        if let Some(i) = waits.iter().position(|(waiter, _)| *waiter == self.me) {
            waits.swap_remove(i);
        }
    }
}
