//! Which thread waits for which shard lock from user code the cache runs
//! under another shard's lock, process-wide, so that a wait that would close
//! a cycle (threads each holding a shard in such code and calling the cache
//! for a shard the next one holds) panics instead of leaving every thread
//! in the cycle waiting forever. A call that reaches the shard its own
//! thread holds is refused by the lock itself (see `shard_lock.rs`).
//!
//! A shard is named by the address of its data. User code run under a
//! shard's write lock names that shard on its thread while it runs
//! (`callback::under_shard_lock`); code nested in it (a `compute` closure
//! calling another cache's `compute`) adds the shard it runs under. Only a
//! thread running such code registers, and only on the lock's slow path,
//! once it found the shard closed: the shard it waits for and the shards
//! its code holds, under one lock. A writer stays registered until it has
//! closed the shard itself, a reader until it sees the shard open (then
//! it tries again, and registers again if a writer got in first). Before
//! registering, the thread walks: from the shard it waits for to the
//! registered waiter that holds it, to the shard that waiter waits for,
//! and so on. Reaching a shard it holds itself means its wait closes a
//! cycle, and it panics instead of waiting. A shard no registered waiter
//! holds (its holder is running, or holds it outside user code) ends the
//! walk: no cycle. Walks and registrations are serialised, and in a
//! deadlock each thread's last registration lasts for good, so the last
//! thread to register finds the cycle.
//!
//! No cycle is reported that is not one: every step of the walk is true
//! while the walk runs.
//!
//! - A registered waiter holds the shards it registered: it names them
//!   from user code it is still running, under write guards that live
//!   until that code returns, and that code cannot return before its wait
//!   ends and the registration is taken off.
//! - A registered waiter has not got the shard it waits for whenever the
//!   walk follows it there: the walk goes on only if another registered
//!   waiter, or the walking thread, holds that shard in user code, and a
//!   shard held under a write guard is closed to every other reader and
//!   writer. (A writer registered until it closed the shard may have just
//!   closed it; a reader that got in before a writer closed the shard
//!   leaves, and has taken its registration off, before that writer's
//!   guard exists.)
//! - A writer that closed a shard but still waits for its readers to leave
//!   holds it in no user code yet, so the walk does not stop there; readers
//!   run no user code the cache marks, and always leave.
//!
//! So each thread on the walk holds a shard in user code and waits, with no
//! way out, for a shard the next one holds, and the last waits for one the
//! walking thread holds: its own wait would never end either. Waits through
//! other locks (a single-flight load, whose cycles `flight_waits.rs`
//! checks) end the walk, so a cycle that runs through one is not found.

use crate::sync::Mutex;

/// What a thread whose wait would close a cycle is told.
const CYCLE: &str = "shardcache: a call into the cache from code the cache runs under a \
shard's lock (a `compute` closure, a `retain` predicate, a weigher, an expiry rule) would \
wait for a shard held by another thread whose own such code waits, directly or through \
others, for a shard this thread holds: a cycle of waits, in which every thread would wait \
forever";

/// A registered wait: the shard a thread waits for and the shards its
/// user code holds meanwhile.
struct Wait {
    id: u64,
    wants: usize,
    holds: Vec<usize>,
}

/// The registered waits, and the next registration's id.
struct Waits {
    next: u64,
    waits: Vec<Wait>,
}

static WAITS: Mutex<Waits> = Mutex::new(Waits {
    next: 0,
    waits: Vec::new(),
});

/// This thread's registered wait; dropping it takes the registration off.
pub(crate) struct Waiting {
    id: u64,
}

/// Registers this thread as waiting for the shard `lock` (its data's
/// address) if it runs user code under a shard's lock; `None` (and nothing
/// registered) otherwise.
///
/// # Panics
///
/// If the wait would close a cycle of such waits back to this thread.
pub(crate) fn waiting_for(lock: usize) -> Option<Waiting> {
    let holds = crate::callback::held();
    if holds.is_empty() {
        return None;
    }
    let mut waits = WAITS.lock();
    let mut wanted = lock;
    // Each step moves to another registered waiter: a chain longer than
    // their number has come back on itself without this thread.
    for _ in 0..=waits.waits.len() {
        if holds.contains(&wanted) {
            drop(waits);
            panic!("{CYCLE}");
        }
        let Some(holder) = waits.waits.iter().find(|w| w.holds.contains(&wanted)) else {
            break;
        };
        wanted = holder.wants;
    }
    let id = waits.next;
    waits.next += 1;
    waits.waits.push(Wait {
        id,
        wants: lock,
        holds,
    });
    Some(Waiting { id })
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waits = WAITS.lock();
        if let Some(i) = waits.waits.iter().position(|w| w.id == self.id) {
            waits.waits.swap_remove(i);
        }
    }
}
